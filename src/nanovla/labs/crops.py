"""Object crops from world renders, labelled by their attributes (for `lab transfer`).

Each rendered scene holds 3-5 objects; every active object gives one square crop centred on it,
with whatever neighbours, bowls, zones or the gripper happen to fall inside (so the classifier
must look at the centre). A crop's label combines any of the attributes kind (box, ball), color
(five) and size (three), e.g. "kind+size" gives 6 classes "box/small" ... "ball/large".
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from nanovla.errors import InputError
from nanovla.world import COLORS, KINDS, SIZES, make_world

ATTRIBUTES: dict[str, tuple[str, ...]] = {"kind": KINDS, "color": COLORS, "size": SIZES}
"""attribute name -> its values, in the world's index order"""


def parse_colors(argument: str, spec: str) -> tuple[str, ...]:
    """ "red+green" -> ("red", "green"); raises ValueError naming `--argument` otherwise."""
    names = tuple(name.strip() for name in spec.split("+"))
    if any(name not in COLORS for name in names) or len(set(names)) != len(names):
        raise InputError(
            f"--{argument}: {spec!r} must be distinct colors from {', '.join(COLORS)} joined "
            "with '+', e.g. 'red+green+blue'"
        )
    return names


def parse_attributes(argument: str, spec: str) -> tuple[str, ...]:
    """ "kind+size" -> ("kind", "size"); raises ValueError naming `--argument` otherwise."""
    names = tuple(name.strip() for name in spec.split("+"))
    unknown = [name for name in names if name not in ATTRIBUTES]
    if unknown or len(set(names)) != len(names) or not names:
        raise InputError(
            f"--{argument}: {spec!r} must be distinct attributes from {', '.join(ATTRIBUTES)} "
            "joined with '+', e.g. 'kind+size' or 'color'"
        )
    return names


def _values(name: str, colors: tuple[str, ...]) -> tuple[str, ...]:
    return colors if name == "color" else ATTRIBUTES[name]


def class_names(attributes: tuple[str, ...], colors: tuple[str, ...] = COLORS) -> list[str]:
    """Names of the classes that `attributes` define over objects of `colors`, in label order
    ("box/small", ...)."""
    values = [_values(name, colors) for name in attributes]
    return ["/".join(combo) for combo in itertools.product(*values)]


def render_crops(
    scenes: int,
    seed: int,
    image_size: int,
    crop: int,
    jitter: int = 0,
    colors: tuple[str, ...] = COLORS,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Renders `scenes` fresh scenes and cuts a `crop` x `crop` window around every object,
    its centre moved by a random offset of up to `jitter` px in x and y (as from an imprecise
    detector), so a classifier must find the object rather than read the centre pixels.

    Only objects of `colors` are kept. Returns images (M, 3, crop, crop) float32 in [0, 1] and
    per-crop attribute indices {"kind", "color", "size"}: (M,) int64 each, indexing the world's
    KINDS, COLORS and SIZES. The same seed gives the same crops.
    """
    world = make_world("pick_place", num_envs=scenes, image_size=image_size, seed=seed)
    frames = torch.from_numpy(world.render()).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, S, S)
    state = world.state
    wanted = np.isin(state.obj_color, [COLORS.index(color) for color in colors])
    env, slot = np.nonzero(state.obj_active & wanted)  # (M,) each
    offsets = np.random.default_rng(seed).integers(-jitter, jitter + 1, size=(len(env), 2))
    centres = np.round(state.obj_pos[env, slot] * image_size) + offsets
    centres = np.clip(centres, 0, image_size - 1)
    half = crop // 2
    padded = torch.nn.functional.pad(frames, (half,) * 4, mode="replicate")  # edge = table
    x0 = torch.from_numpy(centres[:, 0].astype(np.int64))  # (M,) left edge in padded coords
    y0 = torch.from_numpy(centres[:, 1].astype(np.int64))
    window = torch.arange(crop)
    rows = (y0[:, None] + window)[:, :, None]  # (M, crop, 1)
    columns = (x0[:, None] + window)[:, None, :]  # (M, 1, crop)
    pixels = padded.permute(0, 2, 3, 1)[torch.from_numpy(env)[:, None, None], rows, columns]
    images = pixels.permute(0, 3, 1, 2).contiguous()  # (M, 3, crop, crop)
    attributes = {
        "kind": torch.from_numpy(state.obj_kind[env, slot]),
        "color": torch.from_numpy(state.obj_color[env, slot]),
        "size": torch.from_numpy(state.obj_size[env, slot]),
    }
    return images, attributes


def labels_for(
    attributes: dict[str, Tensor], names: tuple[str, ...], colors: tuple[str, ...] = COLORS
) -> Tensor:
    """Mixed-radix class index (M,) int64 of the attributes `names`, matching `class_names`
    (a color counts by its position in `colors`; crops must all be of `colors`)."""
    color_rank = torch.full((len(COLORS),), -1, dtype=torch.int64)
    color_rank[[COLORS.index(color) for color in colors]] = torch.arange(len(colors))
    label = torch.zeros_like(attributes[names[0]])
    for name in names:
        value = color_rank[attributes[name]] if name == "color" else attributes[name]
        label = label * len(_values(name, colors)) + value
    return label


def few_shot_indices(
    labels: Tensor, num_classes: int, shots: int, generator: torch.Generator
) -> Tensor:
    """Indices of `shots` random examples of every class (ValueError if a class has fewer)."""
    picked = []
    for label in range(num_classes):
        members = torch.nonzero(labels == label).flatten()
        if len(members) < shots:
            raise InputError(
                f"--shots: class {label} has only {len(members)} crops in the labelled pool, "
                f"fewer than {shots}; lower --shots or raise --target-scenes"
            )
        picked.append(members[torch.randperm(len(members), generator=generator)[:shots]])
    return torch.cat(picked)
