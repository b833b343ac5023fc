"""Batched planar kinematics of the tabletop: gripper motion, grasping and contact resolution.

One step, for all envs at once (no per-env Python):

1. ``grip <= 0`` opens the gripper and releases whatever it held.
2. The gripper moves by ``action[:2] * MAX_SPEED``; the planar command is clipped to the unit
   disc so no direction is faster than another, and the motion is shortened where a held object
   would leave the table. A held object keeps its grasp offset, so it moves with the gripper.
3. ``grip > 0`` closes the gripper; a closed gripper that holds nothing grasps the touching object
   with the smallest surface gap (closing early and then touching an object also grasps it).
4. Contacts are resolved by a few Jacobi relaxation sweeps: the gripper and the held object push
   every other object out along the contact normal; two free objects each move half the overlap;
   everything is clamped to the table.

The gripper moves at most ``MAX_SPEED = 0.05`` per step and the thinnest pair of bodies is 0.07
across, so nothing can tunnel through anything in one step.
"""

from __future__ import annotations

import numpy as np

from nanovla.world.scene import GRIPPER_RADIUS, GRIPPER_RANGE, SceneState

MAX_SPEED = 0.05
"""gripper displacement per step at full command"""
GRASP_GAP = 0.012
"""an object whose surface is within this distance of the gripper's counts as touching"""
RELAX_ITERS = 4
"""contact relaxation sweeps per step"""


def clip_planar(actions: np.ndarray) -> np.ndarray:
    """(N, 2) planar commands clipped to the unit disc."""
    norm = np.linalg.norm(actions, axis=-1, keepdims=True)
    return actions / np.maximum(norm, 1.0)


def surface_gap(state: SceneState) -> np.ndarray:
    """(N, M) distance between the gripper's rim and each object's rim (inf for empty slots)."""
    dist = np.linalg.norm(state.obj_pos - state.gripper[:, None, :], axis=-1)
    gap = dist - state.radii() - GRIPPER_RADIUS
    return np.where(state.obj_active, gap, np.inf)


def _move_gripper(state: SceneState, delta: np.ndarray) -> None:
    """Moves the gripper (and a held object) by delta (N, 2), keeping both within bounds."""
    rows = np.arange(state.gripper.shape[0])
    holding = state.held >= 0
    slot = np.maximum(state.held, 0)
    held_pos = state.obj_pos[rows, slot]  # (N, 2)
    held_r = state.radii()[rows, slot][:, None]  # (N, 1)
    # A held object must stay on the table: delta in [r - pos, 1 - r - pos] (never forced).
    low = np.where(holding[:, None], held_r - held_pos, -np.inf)
    high = np.where(holding[:, None], 1 - held_r - held_pos, np.inf)
    delta = np.clip(delta, np.minimum(low, 0.0), np.maximum(high, 0.0))
    # The gripper itself stays in GRIPPER_RANGE; compute the realized motion after clipping.
    target = np.clip(state.gripper + delta, *GRIPPER_RANGE)
    moved = target - state.gripper
    state.gripper = target
    state.obj_pos[rows[holding], slot[holding]] += moved[holding]


def _grasp(state: SceneState, close: np.ndarray) -> None:
    """Closing grippers that hold nothing grasp the touching object with the smallest gap."""
    gap = surface_gap(state)  # (N, M)
    nearest = gap.argmin(axis=1)
    rows = np.arange(gap.shape[0])
    grab = close & (state.held < 0) & (gap[rows, nearest] <= GRASP_GAP)
    state.held = np.where(grab, nearest, state.held)
    state.held_offset = np.where(
        grab[:, None], state.obj_pos[rows, nearest] - state.gripper, state.held_offset
    )
    state.obj_grasped[rows[grab], nearest[grab]] = True


def _push_out(pos: np.ndarray, pusher: np.ndarray, need: np.ndarray, mask: np.ndarray) -> None:
    """Moves objects pos (N, M, 2) out of an immovable disc at pusher (N, 2) in place.

    need: (N, M) required centre distance; mask: (N, M) objects that may be moved.
    """
    diff = pos - pusher[:, None, :]  # (N, M, 2)
    dist = np.linalg.norm(diff, axis=-1)  # (N, M)
    normal = np.where(dist[..., None] > 1e-9, diff / np.maximum(dist, 1e-9)[..., None], [1.0, 0])
    depth = np.where(mask, np.maximum(need - dist, 0.0), 0.0)
    pos += normal * depth[..., None]


def _relax_pairs(pos: np.ndarray, radii: np.ndarray, mobile: np.ndarray) -> None:
    """One Jacobi sweep separating overlapping objects pairwise, in place.

    mobile: (N, M) float, 1 for free objects, 0 for the held one and empty slots (an empty slot
    never touches anything because its radius is treated as -inf by the caller's mask).
    """
    diff = pos[:, :, None, :] - pos[:, None, :, :]  # (N, M, M, 2)
    dist = np.linalg.norm(diff, axis=-1)  # (N, M, M)
    m = pos.shape[1]
    overlap = radii[:, :, None] + radii[:, None, :] - dist
    overlap[:, np.arange(m), np.arange(m)] = 0.0
    overlap = np.maximum(overlap, 0.0)
    both = mobile[:, :, None] + mobile[:, None, :]
    share = np.where(both > 0, mobile[:, :, None] / np.maximum(both, 1e-9), 0.0)
    normal = diff / np.maximum(dist, 1e-9)[..., None]
    pos += (normal * (overlap * share)[..., None]).sum(axis=2)


def resolve_contacts(state: SceneState) -> None:
    """Pushes objects out of the gripper, the held object and each other (in place)."""
    rows = np.arange(state.gripper.shape[0])
    radii = np.where(state.obj_active, state.radii(), -1.0)  # empty slots never overlap
    holding = state.held >= 0
    free = state.obj_active.copy()
    free[rows[holding], state.held[holding]] = False
    held_pos = state.obj_pos[rows, np.maximum(state.held, 0)]
    held_r = radii[rows, np.maximum(state.held, 0)]
    low, high = radii[..., None], 1.0 - radii[..., None]
    for _ in range(RELAX_ITERS):
        _push_out(state.obj_pos, state.gripper, radii + GRIPPER_RADIUS, free)
        _push_out(state.obj_pos, held_pos, radii + held_r[:, None], free & holding[:, None])
        _relax_pairs(state.obj_pos, radii, free.astype(np.float64))
        clamped = np.clip(state.obj_pos, low, high)
        state.obj_pos = np.where(free[..., None], clamped, state.obj_pos)


def step_dynamics(state: SceneState, actions: np.ndarray) -> None:
    """Advances every env by one step in place. actions: (N, 3) in [-1, 1] (dx, dy, grip)."""
    close = actions[:, 2] > 0
    state.held = np.where(close, state.held, -1)
    state.closed = close
    _move_gripper(state, clip_planar(actions[:, :2]) * MAX_SPEED)
    _grasp(state, close)
    resolve_contacts(state)
    state.episode_step += 1
