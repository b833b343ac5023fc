"""Scripted experts: deterministic, vectorized functions of the full world state.

Every expert is a *memoryless* map state -> action, so it can be asked at any state (DAgger asks
it at states a learner reached) and the same situation always gets the same action. Motions are
straight lines at full speed toward a waypoint (`_toward`), which is what a policy cloning them
from 64x64 images learns most easily. Every decision depends only on what the image and the
proprioceptive state show (object, gripper and place positions; gripper closed / holding).

- reach: move to the point where the gripper's rim touches the target; gripper open.
- pick_place: approach the target (closing on the last approach step) at a side clear of other
  objects, carry it until its centre is over the bowl's centre, open. Holding a wrong object ->
  open first. Approach and carry steer around objects in the way (`_detour`), so the gripper
  does not shove a neighbour against the target or knock a sorted object out of its bowl.
- push: gripper open throughout. In the frame of the object (u along the push direction toward the
  zone, v across it): lined up behind it -> push through, re-centring the contact as it goes;
  otherwise head for the point just behind it, going around the object (`_detour`, as pick_place
  goes around obstacles) with `PUSH_PASS_CLEARANCE` to spare. Its decisions (which way round,
  detour or straight, line up or push) never send nearby states in opposite directions except
  right in front of the object: moving the object by a pixel turns the move by more than 90
  degrees in ~1% of the states near it (7% for version 2; tests/test_world_experts.py), so a
  cloned policy whose estimate of the object is off by a pixel still gets nearly the right move.
  (Version 2 switched between "step sideways", "back up" and "line up" regions; along the
  "line up" boundary beside the object the two choices point in opposite directions, and cloned
  policies there shoved the object sideways instead of going around it.)
- sort: the pick_place expert on the first pair that is not yet in its bowl.
"""

from __future__ import annotations

import numpy as np

from nanovla.world.dynamics import GRASP_GAP, MAX_SPEED, clip_planar
from nanovla.world.scene import GRIPPER_RADIUS, GRIPPER_RANGE, ZONE_RECTS, SceneState
from nanovla.world.tasks import in_bowl

EXPERT_VERSION = 4
"""bumped whenever recorded demonstrations change (an expert's behaviour, or the noise stream DART
executes: version 4 draws it from `World.perturb`): cached demonstrations key on it"""
RELEASE_DISTANCE = 0.03
"""open the gripper once the carried object's centre is this close to the bowl's centre"""
SORT_FIRST_RELEASE = RELEASE_DISTANCE
"""the same for sort's first object: how far off its bowl's centre the first pair may be left
when the second half begins"""
PUSH_STANDOFF = 0.015
"""extra clearance kept behind an object before a push"""
PUSH_PASS_CLEARANCE = 0.04
"""extra clearance kept beside an object while going around it to get behind it"""
DETOUR_CLEARANCE = 0.02
"""clearance kept when steering around an object in the way"""
GRASP_TURNS = (0, 30, -30, 60, -60, 90, -90, 120, -120, 150, -150, 180)
"""approach angles tried, in order, relative to the side of the object facing the gripper"""


def _toward(gripper: np.ndarray, waypoint: np.ndarray) -> np.ndarray:
    """(N, 2) planar command reaching `waypoint` at full speed (exactly on the last step)."""
    return clip_planar((waypoint - gripper) / MAX_SPEED)


def _target(state: SceneState, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(object slot (N,), position (N, 2), radius (N,)) of target k (slot 0 where unused)."""
    rows = np.arange(state.gripper.shape[0])
    slot = np.maximum(state.target_obj[:, k], 0)
    return slot, state.obj_pos[rows, slot], state.radii()[rows, slot]


def _contact_point(gripper: np.ndarray, pos: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """(N, 2) gripper position touching the object at pos on the side facing the gripper."""
    diff = gripper - pos
    dist = np.linalg.norm(diff, axis=-1, keepdims=True)
    unit = np.where(dist > 1e-9, diff / np.maximum(dist, 1e-9), [0.0, -1.0])
    return pos + unit * (radius + GRIPPER_RADIUS)[:, None]


def _others(state: SceneState, slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions (N, M, 2), radii (N, M)) of the objects other than `slot` and the held one;
    excluded slots get radius -1 so they never block anything."""
    columns = np.arange(state.obj_pos.shape[1])[None, :]
    other = state.obj_active & (columns != slot[:, None]) & (columns != state.held[:, None])
    return state.obj_pos, np.where(other, state.radii(), -1.0)


def _grasp_point(
    state: SceneState, slot: np.ndarray, pos: np.ndarray, radius: np.ndarray
) -> np.ndarray:
    """(N, 2) where to stand to grasp the object: on the side facing the gripper, turned by
    the smallest multiple of 30 degrees that keeps the gripper clear of every other object (so
    closing there grasps the intended object, not a neighbour)."""
    bearing = np.arctan2(*(state.gripper - pos)[:, ::-1].T)  # (N,)
    turns = np.radians(GRASP_TURNS)  # (K,)
    angle = bearing[:, None] + turns[None, :]
    reach = (radius + GRIPPER_RADIUS)[:, None, None]
    cand = pos[:, None, :] + reach * np.stack([np.cos(angle), np.sin(angle)], -1)  # (N, K, 2)
    obj, obj_r = _others(state, slot)
    dist = np.linalg.norm(cand[:, :, None, :] - obj[:, None, :, :], axis=-1)  # (N, K, M)
    clear = (dist - obj_r[:, None, :] - GRIPPER_RADIUS).min(-1) > 2 * GRASP_GAP
    clear &= (cand >= GRIPPER_RANGE[0]).all(-1) & (cand <= GRIPPER_RANGE[1]).all(-1)
    pick = np.where(clear.any(1), clear.argmax(1), 0)
    return cand[np.arange(len(pick)), pick]


def _detour(
    start: np.ndarray,
    goal: np.ndarray,
    body: np.ndarray | float,
    obj: np.ndarray,
    obj_r: np.ndarray,
    goal_slack: np.ndarray | float = 1e-3,
) -> np.ndarray:
    """(N, 2) the next waypoint for a disc of radius `body` going from `start` to `goal`: the
    goal itself if the straight path is clear, else a point beside the first object (positions
    obj (N, M, 2), radii obj_r (N, M); radius <= 0 = ignore) whose disc the path would cut.
    Objects whose nearest point on the path lies within `goal_slack` of the goal are ignored."""
    seg = goal - start
    length = np.linalg.norm(seg, axis=-1, keepdims=True)  # (N, 1)
    unit = seg / np.maximum(length, 1e-9)
    rel = obj - start[:, None, :]  # (N, M, 2)
    along = (rel * unit[:, None, :]).sum(-1)  # (N, M)
    closest = start[:, None, :] + unit[:, None, :] * np.clip(along, 0, length)[..., None]
    offset = closest - obj
    dist = np.linalg.norm(offset, axis=-1)
    need = obj_r + np.reshape(body, (-1, 1))
    slack = np.reshape(goal_slack, (-1, 1))
    blocking = (obj_r > 0) & (along > 0) & (along < length - slack) & (dist < need - 1e-3)
    first = np.where(blocking, along, np.inf).argmin(axis=1)
    rows = np.arange(len(first))
    side = np.stack([-unit[:, 1], unit[:, 0]], -1)  # fall back to the path's left side
    away = offset[rows, first]
    away_len = np.linalg.norm(away, axis=-1, keepdims=True)
    away = np.where(away_len > 1e-6, away / np.maximum(away_len, 1e-9), side)
    around = obj[rows, first] + away * (need[rows, first] + DETOUR_CLEARANCE)[:, None]
    return np.where(blocking.any(1)[:, None], around, goal)


def reach_expert(state: SceneState) -> np.ndarray:
    """(N, 3) actions: straight to the target's rim with the gripper open."""
    _, pos, radius = _target(state, 0)
    move = _toward(state.gripper, _contact_point(state.gripper, pos, radius))
    return np.concatenate([move, -np.ones((len(move), 1))], axis=1)


def _approach(
    state: SceneState, slot: np.ndarray, pos: np.ndarray, radius: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) moves and (N,) grips: around anything in the way to a clear grasp point, closing
    on the step that arrives there."""
    stand = _grasp_point(state, slot, pos, radius)
    obj, obj_r = _others(state, slot)
    obj = np.concatenate([obj, pos[:, None]], axis=1)  # the target itself is in the way too
    obj_r = np.concatenate([obj_r, radius[:, None]], axis=1)
    move = _toward(state.gripper, _detour(state.gripper, stand, GRIPPER_RADIUS, obj, obj_r))
    arriving = np.linalg.norm(stand - state.gripper, axis=-1) <= MAX_SPEED
    return move, np.where(arriving, 1.0, -1.0)


def _carry(
    state: SceneState,
    slot: np.ndarray,
    pos: np.ndarray,
    radius: np.ndarray,
    bowl: np.ndarray,
    release: float | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) moves and (N,) grips: the held object's centre, steered (with its holder) around
    other objects such as one already sorted into its bowl, to the bowl's centre (N, 2); then
    open. Objects right next to the bowl's centre may be nudged."""
    obj, obj_r = _others(state, slot)
    slack = obj_r.max(1) + radius
    via = _detour(pos, bowl, radius, obj, obj_r, goal_slack=slack) - state.held_offset
    via = _detour(state.gripper, via, GRIPPER_RADIUS, obj, obj_r, goal_slack=slack)
    arrived = np.linalg.norm(pos - bowl, axis=-1) <= release
    return _toward(state.gripper, via), np.where(arrived, -1.0, 1.0)


def pick_place_expert(
    state: SceneState, k: int | np.ndarray = 0, release: float | np.ndarray = RELEASE_DISTANCE
) -> np.ndarray:
    """(N, 3) actions moving target k (a scalar or (N,) per env) into its bowl, let go within
    `release` of its centre. Holding a wrong object -> open first. (Each branch is computed
    only if some env is in it.)"""
    rows = np.arange(state.gripper.shape[0])
    k = np.broadcast_to(np.asarray(k), rows.shape)
    slot = np.maximum(state.target_obj[rows, k], 0)
    pos = state.obj_pos[rows, slot]
    radius = state.radii()[rows, slot]
    bowl = state.bowl_pos[rows, np.maximum(state.target_place[rows, k], 0)]
    actions = np.zeros((len(rows), 3))
    actions[:, 2] = -1.0  # holding a wrong object: stand still and open
    empty, holding_target = state.held < 0, state.held == slot
    if empty.any():
        move, grip = _approach(state, slot, pos, radius)
        actions[empty] = np.column_stack([move, grip])[empty]
    if holding_target.any():
        move, grip = _carry(state, slot, pos, radius, bowl, release)
        actions[holding_target] = np.column_stack([move, grip])[holding_target]
    return actions


def _push_goal(state: SceneState, radius: np.ndarray) -> np.ndarray:
    """(N, 2) where to push the target: its zone's centre, kept reachable on the table."""
    rows = np.arange(state.gripper.shape[0])
    rect = ZONE_RECTS[state.zone_id[rows, np.maximum(state.target_place[:, 0], 0)]]
    centre = (rect[:, :2] + rect[:, 2:]) / 2
    return np.clip(centre, radius[:, None], 1 - radius[:, None])


def push_expert(state: SceneState) -> np.ndarray:
    """(N, 3) actions pushing target 0 into its zone without ever closing the gripper."""
    _, pos, radius = _target(state, 0)
    goal = _push_goal(state, radius)
    axis = goal - pos
    axis = axis / np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-9)  # (N, 2)
    across = np.stack([-axis[:, 1], axis[:, 0]], axis=1)
    rel = state.gripper - pos
    u = (rel * axis).sum(-1)  # along the push direction (negative = behind)
    v = (rel * across).sum(-1)
    touch = radius + GRIPPER_RADIUS
    standoff = touch + PUSH_STANDOFF
    aligned = (u <= -0.7 * standoff) & (np.abs(v) <= 0.4 * touch)
    # Not lined up: head for the point behind the object, going around it (as pick_place goes
    # around obstacles) with PUSH_PASS_CLEARANCE to spare; near that point the object is ignored.
    line_up = pos - axis * standoff[:, None]
    keep_out = (radius + PUSH_PASS_CLEARANCE)[:, None]
    slack = standoff + PUSH_PASS_CLEARANCE
    waypoint = _detour(state.gripper, line_up, GRIPPER_RADIUS, pos[:, None], keep_out, slack)
    push = pos - axis * (touch - MAX_SPEED)[:, None]
    waypoint = np.where(aligned[:, None], push, waypoint)
    move = _toward(state.gripper, waypoint)
    return np.concatenate([move, -np.ones((len(move), 1))], axis=1)


def sort_expert(state: SceneState) -> np.ndarray:
    """(N, 3) actions: pick_place on the first target not yet in its bowl."""
    first_done = in_bowl(state, 0)
    release = np.where(first_done, RELEASE_DISTANCE, SORT_FIRST_RELEASE)
    return pick_place_expert(state, np.where(first_done, 1, 0), release)


EXPERTS = (reach_expert, push_expert, pick_place_expert, sort_expert)
"""indexed like TASK_FAMILIES"""


def expert_action(state: SceneState) -> np.ndarray:
    """(N, 3) float32 expert actions in [-1, 1] for every env's own task family."""
    actions = np.zeros((state.gripper.shape[0], 3))
    for family, expert in enumerate(EXPERTS):
        envs = np.flatnonzero(state.family == family)
        if len(envs) == len(actions):
            actions = expert(state)
        elif len(envs):
            actions[envs] = expert(state.take(envs))
    return np.clip(actions, -1.0, 1.0).astype(np.float32)
