"""Task families, their success checks and step limits.

=========== ================================================================ ==========
family      success (checked after every step)                               step limit
=========== ================================================================ ==========
reach       the gripper touches the target object (rim gap <= GRASP_GAP)     30
push        the target's centre lies inside the target zone and the target   60
            was never grasped during the episode ("without grasping")
pick_place  the target's centre lies inside the target bowl and it is not    60
            held (it has been released)
sort        both targets lie in their own bowls, neither held                120
=========== ================================================================ ==========

The limits are about twice the scripted experts' longest episodes over 200 seeded scenes (reach
16, push 38, pick_place 30, sort 54 steps; see tests/test_world_experts.py): room for a slower
learned policy, while short enough to keep training and evaluation rollouts cheap.
"""

from __future__ import annotations

import numpy as np

from nanovla.errors import InputError
from nanovla.world.dynamics import GRASP_GAP, surface_gap
from nanovla.world.scene import BOWL_RADIUS, ZONE_RECTS, SceneState

TASK_FAMILIES: tuple[str, ...] = ("reach", "push", "pick_place", "sort")
MAX_STEPS: dict[str, int] = {"reach": 30, "push": 60, "pick_place": 60, "sort": 120}
SUITE: tuple[str, ...] = TASK_FAMILIES
"""the families that `make_world("suite")` mixes"""


def parse_tasks(tasks: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Normalizes a family name, "suite", or a list of family names into a tuple of families."""
    names = [tasks] if isinstance(tasks, str) else list(tasks)
    if names == ["suite"]:
        return SUITE
    allowed = (*TASK_FAMILIES, "suite")
    bad = [name for name in names if name not in TASK_FAMILIES]
    if not names or bad:
        raise InputError(
            f"tasks: unknown task {bad[0] if bad else tasks!r}; choose one of {allowed} "
            "or a list of family names"
        )
    return tuple(dict.fromkeys(names))


def _target_values(state: SceneState, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, object slot, object position (N, 2)) of target k (slot 0 where unused)."""
    rows = np.arange(state.family.shape[0])
    slot = np.maximum(state.target_obj[:, k], 0)
    return rows, slot, state.obj_pos[rows, slot]


def in_bowl(state: SceneState, k: int) -> np.ndarray:
    """(N,) target k's centre is inside its bowl and the object is not held."""
    rows, slot, pos = _target_values(state, k)
    bowl = state.bowl_pos[rows, np.maximum(state.target_place[:, k], 0)]
    inside = np.linalg.norm(pos - bowl, axis=-1) <= BOWL_RADIUS
    return inside & (state.held != slot) & (state.target_obj[:, k] >= 0)


def in_zone(state: SceneState) -> np.ndarray:
    """(N,) target 0's centre is inside its target zone."""
    rows, _, pos = _target_values(state, 0)
    rect = ZONE_RECTS[state.zone_id[rows, state.target_place[:, 0]]]  # (N, 4)
    return (
        (pos[:, 0] >= rect[:, 0])
        & (pos[:, 0] <= rect[:, 2])
        & (pos[:, 1] >= rect[:, 1])
        & (pos[:, 1] <= rect[:, 3])
    )


def success(state: SceneState) -> np.ndarray:
    """(N,) bool: each env's task is solved in the current state."""
    rows, slot, _ = _target_values(state, 0)
    reach = surface_gap(state)[rows, slot] <= GRASP_GAP
    push = in_zone(state) & ~state.obj_grasped[rows, slot]
    pick_place = in_bowl(state, 0)
    sort = pick_place & in_bowl(state, 1)
    return np.choose(state.family, [reach, push, pick_place, sort])


def distance_to_go(state: SceneState) -> np.ndarray:
    """(N,) a rough distance (table units) still to cover before success, for shaping.

    reach: the rim gap to the target. push: the target's distance to its zone's centre.
    pick_place: the gripper's rim gap to the target (unless holding it) plus the target's
    distance to its bowl. sort: the same summed over both pairs, except pairs already done.
    `World.step` reports its decrease as `info["shaped_reward"]`, a potential-based shaping
    term (Ng et al., 1999): it leaves the optimal policy of the success reward unchanged.
    """
    rows, slot, pos = _target_values(state, 0)
    gap = np.maximum(surface_gap(state), 0.0)  # (N, M)
    rect = ZONE_RECTS[state.zone_id[rows, np.maximum(state.target_place[:, 0], 0)]]
    push = np.linalg.norm(pos - (rect[:, :2] + rect[:, 2:]) / 2, axis=-1)
    carry = []
    for k in range(2):
        _, slot_k, pos_k = _target_values(state, k)
        bowl = state.bowl_pos[rows, np.maximum(state.target_place[:, k], 0)]
        to_go = np.linalg.norm(pos_k - bowl, axis=-1)
        to_go = to_go + np.where(state.held == slot_k, 0.0, gap[rows, slot_k])
        carry.append(np.where(in_bowl(state, k), 0.0, to_go))
    reach = gap[rows, slot]
    return np.choose(state.family, [reach, push, carry[0], carry[0] + carry[1]])


def step_limits(state: SceneState) -> np.ndarray:
    """(N,) the step limit of each env's family."""
    limits = np.array([MAX_STEPS[name] for name in TASK_FAMILIES])
    return limits[state.family]


def goal_positions(state: SceneState) -> np.ndarray:
    """(N, 4) float32 (object x, y, place x, y) of each env's current subgoal, table units.

    reach: the target twice; push: the target and its zone's centre; pick_place: the target and
    its bowl; sort: the first pair not yet in its bowl. Privileged information: policies never
    see it, but demonstrations record it (`observation.environment_state`) as an auxiliary
    training target that teaches a policy *where* the instruction points.
    """
    rows = np.arange(state.family.shape[0])
    k = np.where((state.family == TASK_FAMILIES.index("sort")) & in_bowl(state, 0), 1, 0)
    slot = np.maximum(state.target_obj[rows, k], 0)
    obj = state.obj_pos[rows, slot]  # (N, 2)
    place_slot = np.maximum(state.target_place[rows, k], 0)
    bowl = state.bowl_pos[rows, place_slot]  # (N, 2)
    rect = ZONE_RECTS[state.zone_id[rows, place_slot]]  # (N, 4)
    zone = (rect[:, :2] + rect[:, 2:]) / 2
    family = state.family[:, None]
    place = np.where(family == TASK_FAMILIES.index("reach"), obj, bowl)
    place = np.where(family == TASK_FAMILIES.index("push"), zone, place)
    return np.concatenate([obj, place], axis=1).astype(np.float32)
