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
(colour, shade) -> (permuted colour, same shade) -> RGB. The 25 (red, green) pairs are distinct
too, so a 64 KiB table keyed on them finds the candidate pixels and their blue channel confirms
them: ~0.7 ms for a batch of 64 frames of 64x64 (`swap_images`). Frames are stored as PNG (lossless), so the lookup meets
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


NUM_SLOTS = SHADES.shape[0] * SHADES.shape[1]
"""palette slots, colour-major: slot = colour * 5 + shade"""
_SLOT_RGB = SHADES.reshape(NUM_SLOTS, 3)  # (25, 3) uint8, the RGB of each slot
SLOT_COLOR = np.arange(NUM_SLOTS) // SHADES.shape[1]  # (25,) colour of each slot
SLOT_SHADE = np.arange(NUM_SLOTS) % SHADES.shape[1]  # (25,) shade of each slot


def red_green_table(slot_rgb: np.ndarray) -> np.ndarray:
    """(65536,) uint8: R * 256 + G -> the slot with that red and green, len(slot_rgb) for none.
    Needs the slots' (R, G) pairs distinct (the blue channel then only confirms a hit)."""
    keys = slot_rgb[:, 0].astype(np.int64) * 256 + slot_rgb[:, 1]
    if len(set(keys.tolist())) != len(keys):
        raise ValueError("palette colours share a (red, green) pair; the swap cannot key on it")
    table = np.full(1 << 16, len(slot_rgb), dtype=np.uint8)
    table[keys] = np.arange(len(slot_rgb))
    return table


_RG_TABLE = red_green_table(_SLOT_RGB)  # 64 KiB: stays in cache, unlike a 2**24 RGB table
_WORDS = {word: i for i, word in enumerate(COLORS)} | {w: i for i, w in enumerate(COLORS_KO)}
_PATTERN = re.compile(r"\b(" + "|".join(map(re.escape, _WORDS)) + r")\b")


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
    new tensor (the input, which may be a view of the loader's frames, is never written).

    numpy on the CPU, single-threaded: a 64 KiB table keyed on (R, G) names the candidate slot
    of each pixel of the swapped frames, the blue channel of the few candidates (the ~8 % of
    pixels that are objects or bowls) confirms it, and only confirmed pixels are written. 0.7 ms
    for a batch of 64 at p = 0.5, against 2.3 ms for a torch version with a 2**24 RGB table and
    8 ms for that one at 2 intra-op threads beside a busy core (OpenMP). Frames on another
    device make a round trip to the CPU."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"swap_images needs uint8 (B, 3, H, W), got {images.dtype} {images.shape}")
    if perms.shape != (images.shape[0], NUM_COLORS):
        raise InputError(f"swap_images needs perms (B, {NUM_COLORS}), got {tuple(perms.shape)}")
    if images.device.type != "cpu":
        return swap_images(images.cpu(), perms.cpu()).to(images.device)
    frames, perm = images.contiguous().numpy(), perms.numpy()
    out = frames.copy()
    rows = np.flatnonzero((perm != np.arange(NUM_COLORS)).any(axis=1))  # (S,) frames to swap
    if rows.size == 0:
        return torch.from_numpy(out)
    pixels = frames.shape[2] * frames.shape[3]
    picked = frames[rows].reshape(rows.size, 3, pixels)  # (S, 3, HW)
    red_green = (picked[:, 0].astype(np.uint16) << 8) | picked[:, 1]  # (S, HW)
    candidate = np.take(_RG_TABLE, red_green).reshape(-1)  # (S*HW,) slot or NUM_SLOTS
    where = np.flatnonzero(candidate < NUM_SLOTS)  # positions in (S, HW)
    slot = np.take(candidate, where)
    row = where // pixels  # index into rows
    blue = np.take(picked.reshape(-1), where + row * (2 * pixels) + 2 * pixels)  # (P,)
    hit = blue == np.take(_SLOT_RGB[:, 2], slot)
    where, slot, row = where[hit], slot[hit], row[hit]
    # per swapped frame, the RGB each slot becomes: (S * 25, 3)
    new_rgb = SHADES[perm[rows][:, SLOT_COLOR], SLOT_SHADE].reshape(-1, 3)
    source = row * NUM_SLOTS + slot
    target = rows[row] * (3 * pixels) + (where - row * pixels)  # channel 0 in out.reshape(-1)
    flat = out.reshape(-1)
    for channel in range(3):
        flat[target + channel * pixels] = np.take(new_rgb[:, channel], source)
    return torch.from_numpy(out)


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
