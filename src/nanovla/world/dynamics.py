"""Batched planar kinematics of the tabletop: gripper motion, grasping and contact resolution.

One step, for all envs at once (no per-env Python):

1. ``grip <= 0`` opens the gripper and releases whatever it held.
2. The gripper moves by ``action[:2] * MAX_SPEED``; the planar command is clipped to the unit
   disc so no direction is faster than another, and the motion is shortened where a held object
   would leave the table. A held object keeps its grasp offset, so it moves with the gripper.
3. ``grip > 0`` closes the gripper; a closed gripper that holds nothing grasps the touching object
   with the smallest surface gap (closing early and then touching an object also grasps it).
4. Contacts are resolved by a few Jacobi relaxation sweeps (only in envs where something
   overlaps): the gripper and the held object push every other object out along the contact
   normal; two free objects each move half the overlap; free objects are clamped to the table.
5. Where an object could not make way (pinned at a wall), the gripper is pushed back instead.

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
RELAX_ITERS = 6
"""at most this many contact relaxation sweeps per step (they stop once nothing overlaps)"""


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


def _overlaps(pos: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise overlap depths (N, K, K) (0 on the diagonal and where apart) and unit normals
    (N, K, K, 2) pointing from body j to body i, for bodies pos (N, K, 2) of radii (N, K)."""
    diff = pos[:, :, None, :] - pos[:, None, :, :]  # (N, K, K, 2)
    dist = np.sqrt((diff * diff).sum(-1))  # (N, K, K)
    overlap = radii[:, :, None] + radii[:, None, :] - dist
    k = pos.shape[1]
    overlap[:, np.arange(k), np.arange(k)] = 0.0
    # Coincident centres separate along +x (any fixed direction keeps it deterministic).
    normal = np.where(dist[..., None] > 1e-9, diff / np.maximum(dist, 1e-9)[..., None], [1.0, 0])
    return np.maximum(overlap, 0.0), normal


def _relax(pos: np.ndarray, radii: np.ndarray, mobile: np.ndarray) -> np.ndarray:
    """Jacobi relaxation of overlapping discs; returns new positions (N, K, 2).

    mobile: (N, K) 1.0 for bodies that may move, 0.0 for fixed ones. A mobile body touching a
    fixed one takes the whole correction; two mobile bodies split it. Mobile bodies are clamped
    to the table after every sweep.
    """
    low, high = radii[..., None], 1.0 - radii[..., None]
    both = mobile[:, :, None] + mobile[:, None, :]
    share = np.where(both > 0, mobile[:, :, None] / np.maximum(both, 1e-9), 0.0)  # (N, K, K)
    for _ in range(RELAX_ITERS):
        overlap, normal = _overlaps(pos, radii)
        if not overlap.any():
            break
        pos = pos + (normal * (overlap * share)[..., None]).sum(axis=2)
        pos = np.where(mobile[..., None] > 0, np.clip(pos, low, high), pos)
    return pos


def resolve_contacts(state: SceneState) -> None:
    """Pushes free objects out of the gripper, the held object and each other (in place).

    The gripper and the held object are fixed bodies (the gripper goes where it is commanded);
    only envs with at least one overlap are relaxed, so quiet steps cost one overlap test.
    """
    n = state.gripper.shape[0]
    rows = np.arange(n)
    free = state.obj_active.copy()
    holding = state.held >= 0
    free[rows[holding], state.held[holding]] = False
    pos = np.concatenate([state.obj_pos, state.gripper[:, None]], axis=1)  # (N, M + 1, 2)
    radii = np.concatenate(
        [np.where(state.obj_active, state.radii(), -1.0), np.full((n, 1), GRIPPER_RADIUS)], 1
    )
    mobile = np.concatenate([free, np.zeros((n, 1), dtype=bool)], axis=1).astype(np.float64)
    overlap, _ = _overlaps(pos, radii)
    envs = np.flatnonzero((overlap * (mobile[:, :, None] + mobile[:, None, :])).any(axis=(1, 2)))
    if len(envs):
        relaxed = _relax(pos[envs], radii[envs], mobile[envs])
        state.obj_pos[envs] = relaxed[:, :-1]
        _gripper_yields(state, envs, radii[envs, :-1], free[envs])


def _gripper_yields(
    state: SceneState, envs: np.ndarray, radii: np.ndarray, free: np.ndarray
) -> None:
    """Where a free object could not get out of the gripper's way (pinned at a wall or between
    other objects), the gripper (with what it holds) is pushed back instead. radii, free: (E, M)
    for the envs `envs`."""
    diff = state.gripper[envs, None, :] - state.obj_pos[envs]  # (E, M, 2)
    dist = np.sqrt((diff * diff).sum(-1))
    depth = np.where(free, np.maximum(radii + GRIPPER_RADIUS - dist, 0.0), 0.0)  # (E, M)
    if not depth.any():
        return
    normal = diff / np.maximum(dist, 1e-9)[..., None]
    shift = (normal * depth[..., None]).sum(axis=1)  # (E, 2)
    state.gripper[envs] += shift
    holding = state.held[envs] >= 0
    state.obj_pos[envs[holding], state.held[envs[holding]]] += shift[holding]


def step_dynamics(state: SceneState, actions: np.ndarray) -> None:
    """Advances every env by one step in place. actions: (N, 3) in [-1, 1] (dx, dy, grip)."""
    close = actions[:, 2] > 0
    state.held = np.where(close, state.held, -1)
    state.closed = close
    _move_gripper(state, clip_planar(actions[:, :2]) * MAX_SPEED)
    _grasp(state, close)
    resolve_contacts(state)
    state.episode_step += 1
