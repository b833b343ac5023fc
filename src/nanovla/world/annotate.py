"""Per-frame annotations beside the image: detection boxes with classes, and scene captions in
English and Korean (for the detection, segmentation and captioning labs)."""

from __future__ import annotations

import numpy as np

from nanovla.world.instructions import (
    BOWL_KO,
    COLORS_KO,
    KINDS_KO,
    SIZES_KO,
    ZONES_KO,
    particle,
)
from nanovla.world.scene import (
    BOWL_RADIUS,
    COLORS,
    GRIPPER_RADIUS,
    KINDS,
    SIZES,
    ZONES,
    SceneState,
)

DETECTION_CLASSES: tuple[str, ...] = (
    "small_box",
    "medium_box",
    "large_box",
    "ball",
    "bowl",
    "gripper",
)
"""detection class names; balls of every size share one class, boxes are split by size"""


def box_arrays(state: SceneState, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, K, 4) float32 as pixel (x0, y0, x1, y1) and classes (N, K) int64 (-1 = absent)
    for K = objects + bowls + gripper, in instance-id order (mask id = index + 1)."""
    n = state.gripper.shape[0]
    half = np.where(state.obj_kind == 0, state.radii() * np.sqrt(np.pi) / 2, state.radii())
    obj_class = np.where(state.obj_kind == 0, state.obj_size, 3)
    obj_class = np.where(state.obj_active, obj_class, -1)
    centres = np.concatenate([state.obj_pos, state.bowl_pos, state.gripper[:, None]], axis=1)
    halves = np.concatenate(
        [half, np.full(state.bowl_pos.shape[:2], BOWL_RADIUS), np.full((n, 1), GRIPPER_RADIUS)],
        axis=1,
    )
    classes = np.concatenate(
        [obj_class, np.full(state.bowl_pos.shape[:2], 4), np.full((n, 1), 5)], axis=1
    )
    low = np.clip((centres - halves[..., None]) * image_size, 0, image_size)
    high = np.clip((centres + halves[..., None]) * image_size, 0, image_size)
    boxes = np.concatenate([low, high], axis=-1).astype(np.float32)  # (N, K, 4)
    return boxes, classes.astype(np.int64)


def box_lists(boxes: np.ndarray, classes: np.ndarray) -> list[list[tuple]]:
    """Per env, (class_name, x0, y0, x1, y1) for every present instance."""
    return [
        [
            (DETECTION_CLASSES[c], *(float(v) for v in box))
            for box, c in zip(env_boxes, env_classes, strict=True)
            if c >= 0
        ]
        for env_boxes, env_classes in zip(boxes, classes, strict=True)
    ]


def _join_en(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def caption_en(state: SceneState, env: int) -> str:
    """An English description of env `env`'s current frame."""
    objects = [
        f"a {SIZES[s]} {COLORS[c]} {KINDS[k]}"
        for k, c, s, on in zip(
            state.obj_kind[env], state.obj_color[env], state.obj_size[env], state.obj_active[env]
        )
        if on
    ]
    bowls = [f"a {COLORS[c]} bowl" for c in state.bowl_color[env]]
    zones = [ZONES[z] for z in state.zone_id[env]]
    held = int(state.held[env])
    if held >= 0:
        obj = state.obj_kind[env, held], state.obj_color[env, held], state.obj_size[env, held]
        gripper = f"The gripper holds the {SIZES[obj[2]]} {COLORS[obj[1]]} {KINDS[obj[0]]}."
    else:
        gripper = f"The gripper is {'closed' if state.closed[env] else 'open'}."
    return (
        f"A table with {_join_en(objects + bowls)}, and marked zones at {_join_en(zones)}. "
        + gripper
    )


def caption_ko(state: SceneState, env: int) -> str:
    """A Korean description of env `env`'s current frame."""
    objects = [
        f"{SIZES_KO[s]} {COLORS_KO[c]} {KINDS_KO[k]}"
        for k, c, s, on in zip(
            state.obj_kind[env], state.obj_color[env], state.obj_size[env], state.obj_active[env]
        )
        if on
    ]
    things = objects + [f"{COLORS_KO[c]} {BOWL_KO}" for c in state.bowl_color[env]]
    listed = ", ".join(things)
    first, second = (ZONES_KO[z] for z in state.zone_id[env])
    held = int(state.held[env])
    if held >= 0:
        name = objects[int(state.obj_active[env, :held].sum())]
        gripper = f"그리퍼가 {name}{particle(name, '를')} 잡고 있다."
    else:
        gripper = f"그리퍼는 {'닫혀' if state.closed[env] else '열려'} 있다."
    return (
        f"테이블 위에 {listed}{particle(listed, '가')} 있고, {first}{particle(first, '와')} "
        f"{second}에 구역이 표시되어 있다. {gripper}"
    )
