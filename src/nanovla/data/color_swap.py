"""Colour-swap augmentation: recolour a frame's objects and bowls by one permutation of the
world's five colours, and rename the colours of its instruction by the same permutation.

Why. The default demonstrations never hold a green ball or a purple box as the target
(`--targets train`, world/scene.HELDOUT_COMBOS), so the evaluation's `combos` split asks for
combinations the policy never acted on. Trained on the demonstrations as recorded, the policy
reads the kind and drops the colour it never saw on that kind (combos 0.41-0.55 over seeds
0-2, README). The swap turns "put the red ball in the blue bowl" with a red ball at (x, y) into
"put the green ball in the yellow bowl" with a green ball at (x, y): the same actions are
right, and every colour now meets every kind. This is semantic data augmentation in the manner
of ROSIE (Yu et al. 2023, https://arxiv.org/abs/2302.11550: new objects painted into
demonstrations, instructions relabelled) and of GECA (Andreas 2020,
https://arxiv.org/abs/1904.09545: synthetic examples that recombine fragments seen in the same
contexts). What it assumes, and states: that the colour words name the palette colours below.
The recorded episodes, their actions and subgoals are untouched and still never show a
green-ball target; but the policy now trains on recoloured frames that do, so with the swap
on, `combos` measures generalization from synthesized combinations, not composition from the
recorded ones alone (`--color-swap 0` measures that).

Exact, not approximate: the renderer (world/render.py) paints every object pixel with one of
3 shades of its colour (`PALETTE`: base, dark rim, highlight) and every bowl pixel with one of 2
(`BOWL_PALETTE`: rim, floor); the 25 RGB values are distinct from one another and from the
table, zones and gripper (a test checks). So a swap is a lookup per pixel: the RGB value ->
(colour, shade) -> (permuted colour, same shade) -> RGB. On a batch this is one gather from a
table of 2**24 slots (16 MiB, built on first use) and three small gathers: ~2 ms for a batch
of 64 frames of 64x64 on one core. Frames are stored as PNG (lossless), so the lookup meets
exactly the values the renderer wrote.

Text: each English colour word (scene.COLORS) and Korean one (instructions.COLORS_KO) is a
whole word in every template; one regex renames them all at once, so "red ... blue" with red
<-> blue becomes "blue ... red", never "blue ... blue".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from nanovla.errors import InputError
from nanovla.world.instructions import COLORS_KO
from nanovla.world.render import BOWL_PALETTE, PALETTE
from nanovla.world.scene import COLORS

NUM_COLORS = len(COLORS)
SHADES = np.concatenate([PALETTE, BOWL_PALETTE], axis=1)  # (colour, shade 0..4, rgb) uint8
"""per colour: object base, object rim, object highlight, bowl rim, bowl floor"""


def rgb_keys(rgb: np.ndarray | torch.Tensor, axis: int = -1) -> np.ndarray | torch.Tensor:
    """RGB values with the 3 channels on `axis` -> one int R * 65536 + G * 256 + B per pixel
    (that axis removed)."""
    if isinstance(rgb, torch.Tensor):
        r, g, b = rgb.to(torch.int32).unbind(axis)
    else:
        r, g, b = np.moveaxis(rgb.astype(np.int32), axis, 0)
    return (r << 16) | (g << 8) | b


NUM_SLOTS = SHADES.shape[0] * SHADES.shape[1]
"""palette slots, colour-major: slot = colour * 5 + shade"""
SLOT_COLOR = torch.arange(NUM_SLOTS) // SHADES.shape[1]  # (25,) colour of each slot
SLOT_SHADE = torch.arange(NUM_SLOTS) % SHADES.shape[1]  # (25,) shade of each slot
SHADE_RGB = torch.from_numpy(SHADES)  # (5, 5, 3) uint8
_WORDS = {word: i for i, word in enumerate(COLORS)} | {w: i for i, w in enumerate(COLORS_KO)}
_PATTERN = re.compile(r"\b(" + "|".join(map(re.escape, _WORDS)) + r")\b")
_SLOT_TABLES: dict[torch.device, torch.Tensor] = {}


def _slot_table(device: torch.device) -> torch.Tensor:
    """(2**24,) uint8: RGB key -> its palette slot, NUM_SLOTS for any other colour (16 MiB,
    built once per device: one gather per pixel)."""
    if device not in _SLOT_TABLES:
        table = torch.full((1 << 24,), NUM_SLOTS, dtype=torch.uint8)
        keys = torch.from_numpy(rgb_keys(SHADES.reshape(-1, 3))).long()  # (25,) colour-major
        table[keys] = torch.arange(NUM_SLOTS, dtype=torch.uint8)
        _SLOT_TABLES[device] = table.to(device)
    return _SLOT_TABLES[device]


def draw_permutations(
    count: int, probability: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(count, 5) colour permutations: row i is a uniform random permutation with probability
    `probability`, else the identity. perm[i, c] = the colour that colour c becomes."""
    if not 0.0 <= probability <= 1.0:
        raise InputError(f"color swap probability must be in [0, 1], got {probability}")
    swap = torch.rand(count, generator=generator) < probability  # (count,)
    shuffled = torch.rand(count, NUM_COLORS, generator=generator).argsort(dim=1)  # (count, 5)
    identity = torch.arange(NUM_COLORS).expand(count, NUM_COLORS)
    return torch.where(swap[:, None], shuffled, identity)


def swap_images(images: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """uint8 frames (B, 3, H, W) recoloured by perms (B, 5); other pixels unchanged. Returns a
    new tensor (the input, which may be a view of the loader's frames, is never written)."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"swap_images needs uint8 (B, 3, H, W), got {images.dtype} {images.shape}")
    if perms.shape != (images.shape[0], NUM_COLORS):
        raise InputError(f"swap_images needs perms (B, {NUM_COLORS}), got {tuple(perms.shape)}")
    out = images.clone()
    moved = (perms != torch.arange(NUM_COLORS, device=perms.device)).any(dim=1)  # (B,)
    if not bool(moved.any()):
        return out
    rows = moved.nonzero().squeeze(1)  # (S,)
    picked = images.index_select(0, rows)  # (S, 3, H, W) uint8
    slot = _slot_table(picked.device)[rgb_keys(picked, axis=1)]  # (S, H, W) uint8
    hit = slot < NUM_SLOTS  # (S, H, W): a palette pixel
    # per swapped row, the RGB each palette slot becomes, plus a spare for "not one": (S, 3, 26)
    new_color = perms.index_select(0, rows)[:, SLOT_COLOR.to(perms.device)]  # (S, 25)
    table = SHADE_RGB.to(picked.device)[new_color, SLOT_SHADE.to(picked.device)].transpose(1, 2)
    table = torch.cat([table, torch.zeros_like(table[..., :1])], dim=2)
    index = slot.flatten(1).long()  # (S, H*W)
    recoloured = torch.stack(
        [table[:, c].gather(1, index).view_as(slot) for c in range(3)], dim=1
    )  # (S, 3, H, W) uint8
    out[rows] = torch.where(hit[:, None], recoloured, picked)
    return out


def swap_text(text: str, perm: Sequence[int]) -> str:
    """`text` with every colour word c (English or Korean) renamed to colour perm[c], in the
    same language."""

    def rename(match: re.Match[str]) -> str:
        word = match.group(0)
        names = COLORS if word in COLORS else COLORS_KO
        return names[int(perm[_WORDS[word]])]

    return _PATTERN.sub(rename, text)


def swap_texts(texts: Sequence[str], perms: torch.Tensor) -> list[str]:
    """`swap_text` per row; identity rows are returned as they are."""
    identity = list(range(NUM_COLORS))
    out = []
    for text, perm in zip(texts, perms.tolist(), strict=True):
        out.append(text if perm == identity else swap_text(text, perm))
    return out
