"""Batched sprite renderer: RGB frames and instance masks for all envs at once.

Speed comes from two ideas (rendering runs at ~10^5 64x64 frames/s on one core):

- the static layer (table, zones, bowls) is drawn once per episode into a per-env cache at reset;
  each frame starts as a copy of it;
- movable things are *stamped*: every (kind, size, sub-pixel phase) sprite is precomputed as a list
  of pixel offsets with a shade per pixel, padded to a common length; one fancy-indexed assignment
  writes a whole object slot for every env (out-of-image pixels go to one spare "trash" pixel).

Objects are drawn with 4x4 sub-pixel phases, so small motions are visible even at 64x64. A box is
a square with a dark 1-pixel rim; a ball is a disc with a light highlight; a bowl is a colored ring
around a pale floor; the gripper is a dark ring when open and a dark disc when closed.
"""

from __future__ import annotations

import numpy as np

from nanovla.world.scene import (
    BOWL_RADIUS,
    GRIPPER_RADIUS,
    MAX_OBJECTS,
    NUM_BOWLS,
    SIZE_RADII,
    ZONE_RECTS,
    SceneState,
)

PHASES = 4
"""sub-pixel positions per axis for which sprites are precomputed"""
TABLE_RGB = np.array([222, 214, 198], dtype=np.uint8)
ZONE_RGB = np.array([184, 196, 212], dtype=np.uint8)
ZONE_RIM_RGB = np.array([110, 122, 142], dtype=np.uint8)
GRIPPER_RGB = np.array([28, 28, 32], dtype=np.uint8)
COLOR_RGB = np.array(
    [[214, 38, 38], [30, 158, 60], [38, 88, 226], [246, 202, 16], [146, 60, 196]], dtype=np.float64
)
"""red, green, blue, yellow, purple (indexed like scene.COLORS)"""
# (color, shade, rgb): shade 0 = base, 1 = dark rim, 2 = highlight
PALETTE = np.stack(
    [COLOR_RGB, COLOR_RGB * 0.5, COLOR_RGB + (255 - COLOR_RGB) * 0.65], axis=1
).astype(np.uint8)
BOWL_PALETTE = np.stack([COLOR_RGB * 0.85, COLOR_RGB * 0.3 + TABLE_RGB * 0.7], axis=1).astype(
    np.uint8
)  # (color, shade: rim / floor, rgb)
GRIPPER_ID = MAX_OBJECTS + NUM_BOWLS + 1
"""instance id of the gripper in masks; objects are slot + 1, bowls MAX_OBJECTS + 1 + slot"""


def _sprite(shape: str, radius_px: float, phase_y: int, phase_x: int) -> tuple[list, list]:
    """Pixel offsets (dy, dx) and shades of one sprite at one sub-pixel phase."""
    extent = int(np.ceil(radius_px)) + 1
    grid = np.arange(-extent, extent + 1)
    dy, dx = np.meshgrid(grid, grid, indexing="ij")
    ry = dy + 0.5 - (phase_y + 0.5) / PHASES  # pixel centre relative to the sprite centre
    rx = dx + 0.5 - (phase_x + 0.5) / PHASES
    dist = np.hypot(ry, rx)
    shade = np.zeros_like(dist, dtype=np.int64)
    if shape == "box":
        half = radius_px * np.sqrt(np.pi) / 2  # same area as the disc
        cheb = np.maximum(np.abs(ry), np.abs(rx))
        inside = cheb <= half
        shade[cheb > half - 1.0] = 1
    elif shape == "ball":
        inside = dist <= radius_px
        glint = np.hypot(ry + 0.35 * radius_px, rx + 0.35 * radius_px)
        light = (glint <= 0.3 * radius_px) | (glint == glint[inside].min())
        shade[light] = 2
    elif shape == "ring":
        inside = (dist <= radius_px) & (dist > radius_px - max(1.0, 0.3 * radius_px))
    elif shape == "disc":
        inside = dist <= radius_px
    else:  # bowl: ring (shade 0) around a pale floor (shade 1)
        inside = dist <= radius_px
        shade[dist <= radius_px - max(1.2, 0.22 * radius_px)] = 1
    return np.stack([dy[inside], dx[inside]], 1).tolist(), shade[inside].tolist()


def _bank(specs: list[tuple[str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (S, P, P, L, 2) and shades (S, P, P, L) for sprites `specs` (padded with repeats
    of their first pixel, which rewrite the same value)."""
    sprites = [
        [[_sprite(shape, r, py, px) for px in range(PHASES)] for py in range(PHASES)]
        for shape, r in specs
    ]
    length = max(len(s[0]) for per_shape in sprites for row in per_shape for s in row)
    offsets = np.zeros((len(specs), PHASES, PHASES, length, 2), dtype=np.int64)
    shades = np.zeros((len(specs), PHASES, PHASES, length), dtype=np.int64)
    for s, per_shape in enumerate(sprites):
        for py, row in enumerate(per_shape):
            for px, (offs, shade) in enumerate(row):
                pad = length - len(offs)
                offsets[s, py, px] = offs + [offs[0]] * pad
                shades[s, py, px] = shade + [shade[0]] * pad
    return offsets, shades


class Renderer:
    """Draws SceneStates at a fixed square image size. Sprites are built once, in __init__."""

    def __init__(self, image_size: int) -> None:
        self.size = image_size
        radii = SIZE_RADII * image_size
        # Object sprite id = kind * 3 + size (kinds: box, ball).
        self.objects = _bank([("box", r) for r in radii] + [("ball", r) for r in radii])
        self.gripper = _bank(
            [("ring", GRIPPER_RADIUS * image_size), ("disc", GRIPPER_RADIUS * image_size)]
        )
        self.bowl = _bank([("bowl", BOWL_RADIUS * image_size)])
        centres = (np.arange(image_size) + 0.5) / image_size
        rects = ZONE_RECTS[:, :, None, None]
        inside = (
            (centres[None, None, :] >= rects[:, 0])
            & (centres[None, None, :] <= rects[:, 2])
            & (centres[None, :, None] >= rects[:, 1])
            & (centres[None, :, None] <= rects[:, 3])
        )  # (Zones, H, W)
        rim = inside.copy()
        rim[:, 1:-1, 1:-1] &= ~(
            inside[:, :-2, 1:-1] & inside[:, 2:, 1:-1] & inside[:, 1:-1, :-2] & inside[:, 1:-1, 2:]
        )
        self.zone_fill, self.zone_rim = inside, rim

    def _indices(self, bank, sprite: np.ndarray, pos: np.ndarray, visible: np.ndarray):
        """Flat pixel indices (N, L) and shades (N, L) of one sprite per env (trash = N*H*W)."""
        offsets, shades = bank
        size = self.size
        n = pos.shape[0]
        centre = pos * size  # (N, 2) continuous pixel coordinates (x, y)
        base = np.floor(centre).astype(np.int64)
        phase = np.clip(((centre - base) * PHASES).astype(np.int64), 0, PHASES - 1)
        offs = offsets[sprite, phase[:, 1], phase[:, 0]]  # (N, L, 2) as (dy, dx)
        rows = base[:, 1:2] + offs[..., 0]
        cols = base[:, 0:1] + offs[..., 1]
        inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size) & visible[:, None]
        flat = (np.arange(n) * size * size)[:, None] + rows * size + cols
        return np.where(inside, flat, n * size * size), shades[sprite, phase[:, 1], phase[:, 0]]

    def _layers(self, state: SceneState):
        """Yields (bank, sprite ids, positions, visible, palette (N, shades, 3), instance id)."""
        n = state.gripper.shape[0]
        for m in range(MAX_OBJECTS):
            sprite = state.obj_kind[:, m] * 3 + state.obj_size[:, m]
            yield (
                self.objects, sprite, state.obj_pos[:, m], state.obj_active[:, m],
                PALETTE[state.obj_color[:, m]], m + 1,
            )  # fmt: skip
        gripper_palette = np.broadcast_to(GRIPPER_RGB, (n, 1, 3))
        sprite = state.closed.astype(np.int64)
        yield self.gripper, sprite, state.gripper, np.ones(n, bool), gripper_palette, GRIPPER_ID

    def static(self, state: SceneState) -> tuple[np.ndarray, np.ndarray]:
        """The per-episode static layer: RGB (N, H, W, 3) uint8 and instance ids (N, H, W) int16."""
        n, size = state.gripper.shape[0], self.size
        rgb = np.empty((n * size * size + 1, 3), dtype=np.uint8)
        ids = np.zeros(n * size * size + 1, dtype=np.int16)
        image = rgb[:-1].reshape(n, size, size, 3)
        image[:] = TABLE_RGB
        for z in range(state.zone_id.shape[1]):
            image[self.zone_fill[state.zone_id[:, z]]] = ZONE_RGB
            image[self.zone_rim[state.zone_id[:, z]]] = ZONE_RIM_RGB
        for b in range(state.bowl_pos.shape[1]):
            sprite = np.zeros(n, dtype=np.int64)
            flat, shade = self._indices(self.bowl, sprite, state.bowl_pos[:, b], np.ones(n, bool))
            rgb[flat.ravel()] = BOWL_PALETTE[state.bowl_color[:, b, None], shade].reshape(-1, 3)
            ids[flat.ravel()] = MAX_OBJECTS + 1 + b
        return image, ids[:-1].reshape(n, size, size)

    def rgb(self, state: SceneState, static: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 frames: `static` (N, H, W, 3) plus objects and gripper."""
        n, size = static.shape[0], self.size
        flat_rgb = np.empty((n * size * size + 1, 3), dtype=np.uint8)
        flat_rgb[:-1] = static.reshape(-1, 3)
        for bank, sprite, pos, visible, palette, _ in self._layers(state):
            flat, shade = self._indices(bank, sprite, pos, visible)
            flat_rgb[flat.ravel()] = palette[np.arange(n)[:, None], shade].reshape(-1, 3)
        return flat_rgb[:-1].reshape(n, size, size, 3)

    def masks(self, state: SceneState, static_ids: np.ndarray) -> np.ndarray:
        """(N, H, W) int16 instance ids: 0 table, objects slot + 1, bowls, gripper GRIPPER_ID."""
        n, size = static_ids.shape[0], self.size
        flat_ids = np.empty(n * size * size + 1, dtype=np.int16)
        flat_ids[:-1] = static_ids.reshape(-1)
        for bank, sprite, pos, visible, _, instance in self._layers(state):
            flat, _ = self._indices(bank, sprite, pos, visible)
            flat_ids[flat.ravel()] = instance
        return flat_ids[:-1].reshape(n, size, size)
