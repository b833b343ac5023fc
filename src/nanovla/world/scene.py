"""Scene vocabulary, the batched scene state, and seeded scene sampling.

The table is the unit square seen from above: x grows to the right, y grows *down* (image rows),
so "the top left corner" is near (0, 0). Every scene holds up to `MAX_OBJECTS` movable objects
(boxes and balls in five colors and three sizes), `NUM_BOWLS` colored bowls and `NUM_ZONES` marked
zones picked from the eight named border regions in `ZONES`.

Scenes are sampled so that no two objects share kind + color + size; the instruction module can
then always build an unambiguous referring expression.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from nanovla.errors import InputError

KINDS: tuple[str, ...] = ("box", "ball")
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple")
SIZES: tuple[str, ...] = ("small", "medium", "large")
SIZE_RADII = np.array([0.035, 0.05, 0.065])
"""object radius per size (ball radius; a box has the same area as the disc of this radius)"""
GRIPPER_RADIUS = 0.04
BOWL_RADIUS = 0.09
MAX_OBJECTS = 5
MIN_OBJECTS = 3
NUM_BOWLS = 2
NUM_ZONES = 2
GRIPPER_RANGE = (-0.06, 1.06)
"""the gripper centre may leave the table a little so it can get behind an object at a wall"""

ZONES: tuple[str, ...] = (
    "the top left corner",
    "the top right corner",
    "the bottom left corner",
    "the bottom right corner",
    "the left edge",
    "the right edge",
    "the top edge",
    "the bottom edge",
)
ZONE_RECTS = np.array(
    [
        [0.00, 0.00, 0.28, 0.28],
        [0.72, 0.00, 1.00, 0.28],
        [0.00, 0.72, 0.28, 1.00],
        [0.72, 0.72, 1.00, 1.00],
        [0.00, 0.36, 0.20, 0.64],
        [0.80, 0.36, 1.00, 0.64],
        [0.36, 0.00, 0.64, 0.20],
        [0.36, 0.80, 0.64, 1.00],
    ]
)
"""(x0, y0, x1, y1) of each zone in table coordinates"""

# Every (kind, color, size) triple; a combo index is kind * 15 + color * 3 + size.
COMBOS = np.array(
    [(k, c, s) for k in range(len(KINDS)) for c in range(len(COLORS)) for s in range(len(SIZES))]
)
HELDOUT_COMBOS: tuple[tuple[str, str], ...] = (("ball", "green"), ("box", "purple"))
"""(kind, color) pairs that never appear as a *target* with targets="train" (compositional tests)"""
TARGET_SPLITS: tuple[str, ...] = ("all", "train", "heldout")


@dataclass
class SceneState:
    """The full batched world state (N envs). Experts and success checks read it; the policy
    only sees the rendered image, the instruction and the proprioceptive state."""

    gripper: np.ndarray  # (N, 2) gripper centre
    closed: np.ndarray  # (N,) bool, gripper closed
    held: np.ndarray  # (N,) int64, slot of the held object or -1
    held_offset: np.ndarray  # (N, 2) held object position minus gripper position
    obj_pos: np.ndarray  # (N, M, 2)
    obj_kind: np.ndarray  # (N, M) int64 index into KINDS
    obj_color: np.ndarray  # (N, M) int64 index into COLORS
    obj_size: np.ndarray  # (N, M) int64 index into SIZES
    obj_active: np.ndarray  # (N, M) bool, slot holds an object in this scene
    obj_grasped: np.ndarray  # (N, M) bool, the object has been grasped this episode
    bowl_pos: np.ndarray  # (N, B, 2)
    bowl_color: np.ndarray  # (N, B) int64 index into COLORS
    zone_id: np.ndarray  # (N, Z) int64 index into ZONES
    family: np.ndarray  # (N,) int64 index into TASK_FAMILIES
    target_obj: np.ndarray  # (N, 2) int64 object slots to act on (-1 unused)
    target_place: np.ndarray  # (N, 2) int64 bowl slot (pick_place, sort) or zone slot (push)
    episode_step: np.ndarray  # (N,) int64 steps taken in the current episode

    def to_dict(self) -> dict[str, np.ndarray]:
        """A copy of every array, keyed by field name."""
        return {f.name: getattr(self, f.name).copy() for f in fields(self)}

    @classmethod
    def from_dict(cls, arrays: dict[str, np.ndarray], num_envs: int) -> SceneState:
        """Copies `arrays` into a new state, checking keys and the env dimension."""
        names = [f.name for f in fields(cls)]
        missing = [name for name in names if name not in arrays]
        if missing:
            raise InputError(f"state: missing keys {missing}; expected keys {names}")
        values = {}
        for name in names:
            value = np.array(arrays[name], copy=True)
            if value.shape[:1] != (num_envs,):
                raise InputError(
                    f"state[{name!r}]: leading dimension {value.shape[:1]} != num_envs {num_envs}"
                )
            values[name] = value
        return cls(**values)

    def take(self, index: np.ndarray) -> SceneState:
        """A new state holding copies of the envs at `index` (an index array or bool mask)."""
        return SceneState(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def assign(self, index: np.ndarray, other: SceneState) -> None:
        """Writes `other` (len(index) envs) into the envs at `index`."""
        for f in fields(self):
            getattr(self, f.name)[index] = getattr(other, f.name)

    def radii(self) -> np.ndarray:
        """(N, M) object radii."""
        return SIZE_RADII[self.obj_size]


def allowed_target_combos(targets: str) -> np.ndarray:
    """(30,) bool mask of the combos that may be a task target under split `targets`."""
    if targets not in TARGET_SPLITS:
        raise InputError(f"targets: unknown split {targets!r}; choose one of {TARGET_SPLITS}")
    heldout = np.zeros(len(COMBOS), dtype=bool)
    for kind, color in HELDOUT_COMBOS:
        heldout |= (COMBOS[:, 0] == KINDS.index(kind)) & (COMBOS[:, 1] == COLORS.index(color))
    if targets == "all":
        return np.ones(len(COMBOS), dtype=bool)
    return ~heldout if targets == "train" else heldout


def _place_items(
    rng: np.random.Generator,
    low: float,
    high: float,
    radius: np.ndarray,
    others: list[tuple[np.ndarray, np.ndarray]],
    zone_rects: np.ndarray,
    candidates: int = 16,
) -> np.ndarray:
    """Rejection-samples one position per env, vectorized over envs and candidates.

    radius: (N,) clearance radius of the new item; others: (positions (N, P, 2), required centre
    distances (N, P)) of items already placed; zone_rects: (N, Z, 4) rectangles to keep out of.
    Returns (N, 2). The first valid candidate wins; if none is valid the one with the largest
    clearance is used (with these table densities that practically never happens).
    """
    n = radius.shape[0]
    cand = rng.uniform(low, high, size=(n, candidates, 2))  # (N, K, 2)
    slack = np.full((n, candidates), np.inf)
    for pos, need in others:
        dist = np.linalg.norm(cand[:, :, None, :] - pos[:, None, :, :], axis=-1)  # (N, K, P)
        slack = np.minimum(slack, (dist - need[:, None, :]).min(axis=-1, initial=np.inf))
    # Distance from the candidate disc to each zone rectangle (0 inside).
    r = radius[:, None, None]
    x0, y0, x1, y1 = (zone_rects[:, None, :, i] for i in range(4))  # (N, 1, Z)
    cx, cy = cand[..., 0:1], cand[..., 1:2]  # (N, K, 1)
    dx = np.maximum(np.maximum(x0 - cx, cx - x1), 0.0)
    dy = np.maximum(np.maximum(y0 - cy, cy - y1), 0.0)
    zone_gap = (np.hypot(dx, dy) - r).min(axis=-1, initial=np.inf)  # (N, K)
    slack = np.minimum(slack, zone_gap)
    valid = slack > 0
    best = np.where(valid.any(axis=1), valid.argmax(axis=1), slack.argmax(axis=1))
    return cand[np.arange(n), best]


def _sample_attributes(
    rng: np.random.Generator, n: int, target_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (kind, color, size) combos per scene, (N, M, 3), and the active mask (N, M).

    Slots 0 and 1 (the possible targets) are drawn from the combos allowed as targets; slot 1
    is drawn that way even when only slot 0 is a target, which is harmless.
    """
    rows = np.arange(n)
    keys = rng.random((n, len(COMBOS))) + 2.0 * ~target_mask[None, :]
    target_combos = np.argsort(keys, axis=1)[:, :2]  # (N, 2)
    keys = rng.random((n, len(COMBOS)))
    keys[rows[:, None], target_combos] = np.inf
    other_combos = np.argsort(keys, axis=1)[:, : MAX_OBJECTS - 2]
    combo = COMBOS[np.concatenate([target_combos, other_combos], axis=1)]  # (N, M, 3)
    num_objects = rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1, size=n)
    active = np.arange(MAX_OBJECTS)[None, :] < num_objects[:, None]
    return combo, active


def _sample_layout(
    rng: np.random.Generator, radii: np.ndarray, active: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Zones (N, Z), bowls (N, B, 2), objects (N, M, 2) and gripper (N, 2), placed in that
    order, each clear of what is already there (objects also clear of the drawn zones and
    0.15 from the walls, so every task starts unsolved and a push can get behind its object)."""
    n = radii.shape[0]
    zone_id = np.argsort(rng.random((n, len(ZONES))), axis=1)[:, :NUM_ZONES]
    rects = ZONE_RECTS[zone_id]  # (N, Z, 4)
    bowl_pos = np.zeros((n, NUM_BOWLS, 2))
    for b in range(NUM_BOWLS):
        others = [(bowl_pos[:, :b], np.full((n, b), 2 * BOWL_RADIUS + 0.08))]
        bowl_pos[:, b] = _place_items(rng, 0.2, 0.8, np.full(n, BOWL_RADIUS + 0.03), others, rects)
    obj_pos = np.full((n, MAX_OBJECTS, 2), -1.0)
    for m in range(MAX_OBJECTS):
        others = [
            (bowl_pos, radii[:, m : m + 1] + BOWL_RADIUS + 0.03),
            (obj_pos[:, :m], radii[:, :m] + radii[:, m : m + 1] + 0.06),
        ]
        pos = _place_items(rng, 0.15, 0.85, radii[:, m] + 0.02, others, rects)
        obj_pos[:, m] = np.where(active[:, m : m + 1], pos, -1.0)
    need = np.where(active, radii + GRIPPER_RADIUS + 0.1, -10.0)  # empty slots impose nothing
    no_zones = np.zeros((n, 0, 4))
    gripper = _place_items(rng, 0.1, 0.9, np.zeros(n), [(obj_pos, need)], no_zones)
    return zone_id, bowl_pos, obj_pos, gripper


def sample_scenes(
    rng: np.random.Generator, family: np.ndarray, target_mask: np.ndarray
) -> SceneState:
    """Samples len(family) fresh scenes for the given task families (indices into TASK_FAMILIES,
    order reach, push, pick_place, sort). target_mask: (30,) combos allowed as targets.

    Targets are object slot 0 (and 1 for sort); slot order is invisible to the policy.
    """
    n = family.shape[0]
    combo, active = _sample_attributes(rng, n, target_mask)
    zone_id, bowl_pos, obj_pos, gripper = _sample_layout(rng, SIZE_RADII[combo[..., 2]], active)
    bowl_color = np.argsort(rng.random((n, len(COLORS))), axis=1)[:, :NUM_BOWLS]
    two = family == 3  # sort moves two objects
    target_obj = np.stack([np.zeros(n, dtype=np.int64), np.where(two, 1, -1)], 1)
    first_place = rng.integers(0, NUM_BOWLS, size=n)  # a bowl slot, or a zone slot for push
    target_place = np.stack([first_place, np.where(two, 1 - first_place, -1)], 1)
    return SceneState(
        gripper=gripper,
        closed=np.zeros(n, dtype=bool),
        held=np.full(n, -1, dtype=np.int64),
        held_offset=np.zeros((n, 2)),
        obj_pos=obj_pos,
        obj_kind=combo[..., 0].astype(np.int64),
        obj_color=combo[..., 1].astype(np.int64),
        obj_size=combo[..., 2].astype(np.int64),
        obj_active=active,
        obj_grasped=np.zeros((n, MAX_OBJECTS), dtype=bool),
        bowl_pos=bowl_pos,
        bowl_color=bowl_color.astype(np.int64),
        zone_id=zone_id.astype(np.int64),
        family=family.astype(np.int64),
        target_obj=target_obj,
        target_place=target_place.astype(np.int64),
        episode_step=np.zeros(n, dtype=np.int64),
    )
