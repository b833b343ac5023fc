"""The grid abstraction of the tabletop that maximum-entropy IRL (`maxent_irl`) works on.

A discrete, deterministic MDP of reach / push with an enumerable state space, the world's
experts' trajectories mapped into it, and its plans executed back in the continuous world.
Read top to bottom:

1. `build_mdp`: a discrete MDP of the task. The table is cut into 11 x 11 cells whose lines run
   along every zone edge (`ZONE_EDGES`, 0.08-0.1 wide), so "the object's cell is inside its zone"
   is exactly the world's push check (`grid_edges("uniform", n)` gives n equal cells instead);
   the gripper lives on that grid plus a ring of cells just off the table (the world lets it
   leave the table a little), the target object on the grid. Reach: state = (gripper
   cell, target cell). Push: state = (target zone, gripper cell, object cell). Nine actions: stay
   and the eight compass moves, one cell each. Transitions are deterministic and follow the
   world's kinematics (`world/dynamics.py`): the gripper is clipped to its range; in push,
   moving into the object's cell pushes it one cell the same way, a push into a wall is blocked,
   and a diagonal move that would cut the object's corner is blocked (in the world it would
   shove the object sideways). Reach's target never moves.
2. State features (named, `mdp.feature_names`): distances between cell centres in table units
   and indicators; `maxent_irl`'s rewards are functions of them.
3. `expert_demonstrations`: the world's scripted expert (`World.expert_action`) rolled out in the
   continuous world; each step's scene is mapped to its abstract state (`abstract_states`),
   repeats are dropped (the gripper crosses a cell in about two world steps) and the sequence is
   padded with its last state to the horizon (after success the task is done: it stays).
4. `world_success`: an abstract policy (S,) executed in the world through the abstraction
   (`GridController`): map the scene to its abstract state, take the policy's move, drive the
   gripper at full speed (open) toward the centre of the move's destination cell (a push: toward
   the object's centre) for up to `MACRO_STEPS` world steps until it arrives or the object
   changes cell, then plan again. Success is the world's own check.

Other objects on the table are not in the abstraction (the scripted push expert ignores them
too); in the world the gripper shoves them aside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nanovla.errors import InputError
from nanovla.world.core import World
from nanovla.world.dynamics import GRASP_GAP, MAX_SPEED, clip_planar, surface_gap
from nanovla.world.scene import ZONE_RECTS, SceneState
from nanovla.world.tasks import MAX_STEPS

IRL_TASKS: tuple[str, ...] = ("reach", "push")
"""task families with a grid abstraction"""
MOVES = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]])
"""the nine actions as (dx, dy) in cells: stay, then the compass moves counter-clockwise from +x"""
DEFAULT_HORIZON = {"reach": 24, "push": 48}
"""abstract steps per trajectory: the experts' longest discretized episodes on the default grid
with room to spare (`expert_demonstrations(build_mdp(task), 200, 0, 60)`: reach 12, push 33
distinct states before the padding)"""
ZONE_EDGES = (0.0, 0.1, 0.2, 0.28, 0.36, 0.4533, 0.5467, 0.64, 0.72, 0.8, 0.9, 1.0)
"""the default grid's cell boundaries: every zone edge (`ZONE_RECTS`) is one of them, so an
object's cell lies inside its zone exactly when the world's push check holds for its centre"""
RING_WIDTH = 0.1
"""width of the gripper's cells just off the table (the world lets it reach 0.06 beyond)"""
MACRO_STEPS = 4
"""world steps one abstract move may take at most (`GridController`)"""


# ----------------------------------------------------------------------------- 1. the MDP
@dataclass
class GridMDP:
    """A deterministic discrete MDP over every abstract state of a task (see the module docs).

    next_state (S, 9) int64 successor of each state under each action in MOVES; features (S, F)
    float64; gripper (S, 2) and obj (S, 2) int64 cells (x, y; the gripper's run from -1 to
    cells, off-table ring included); zone (S,) int64 index into ZONES (-1 for reach)."""

    task: str
    edges: np.ndarray
    next_state: np.ndarray
    features: np.ndarray
    feature_names: tuple[str, ...]
    gripper: np.ndarray
    obj: np.ndarray
    zone: np.ndarray

    @property
    def cells(self) -> int:
        """C, the grid's cells per axis on the table."""
        return len(self.edges) - 1

    @property
    def num_states(self) -> int:
        """S, the number of abstract states."""
        return int(self.next_state.shape[0])

    def index(self, zone: np.ndarray, gripper: np.ndarray, obj: np.ndarray) -> np.ndarray:
        """(N,) state indices of (zone (N,), gripper cell (N, 2), object cell (N, 2)) arrays."""
        return _flat_index(self.task, self.cells, zone, gripper, obj)

    def centre(self, cells: np.ndarray) -> np.ndarray:
        """Table coordinates of the centres of cells (..., 2) (the ring: RING_WIDTH / 2 off)."""
        return _centres(self.edges)[np.asarray(cells) + 1]

    def cell(self, xy: np.ndarray, gripper: bool) -> np.ndarray:
        """(..., 2) int64 cells holding the points xy (..., 2); a gripper's may be -1 or C (the
        ring off the table), an object's is clipped to the table."""
        low = -1 if gripper else 0
        high = self.cells if gripper else self.cells - 1
        index = np.searchsorted(self.edges, xy, side="right") - 1
        return np.clip(index, low, high).astype(np.int64)


def _centres(edges: np.ndarray) -> np.ndarray:
    """(C + 2,) centres of the ring cell below the table, the C table cells, the ring above."""
    inner = (edges[1:] + edges[:-1]) / 2
    return np.concatenate([[edges[0] - RING_WIDTH / 2], inner, [edges[-1] + RING_WIDTH / 2]])


def grid_edges(grid: str = "zones", cells: int = 10) -> np.ndarray:
    """Cell boundaries along each table axis: "zones" = ZONE_EDGES, "uniform" = `cells` equal
    cells."""
    if grid == "zones":
        return np.array(ZONE_EDGES)
    if grid != "uniform":
        raise InputError(f"--grid: choose zones or uniform, got {grid!r}")
    if not isinstance(cells, int | np.integer) or cells < 3:
        raise InputError(f"--cells: must be an integer >= 3, got {cells!r}")
    return np.linspace(0.0, 1.0, int(cells) + 1)


def check_task(task: str) -> str:
    """`task` if it has a grid abstraction, else an InputError naming the option."""
    if task not in IRL_TASKS:
        raise InputError(f"--task: IRL has a grid abstraction of {list(IRL_TASKS)}, got {task!r}")
    return task


def build_mdp(task: str, edges: np.ndarray | None = None) -> GridMDP:
    """The grid MDP of `task` (reach | push) on the cells with boundaries `edges` along each
    axis (default: `grid_edges()`, the zone-aligned grid)."""
    check_task(task)
    edges = grid_edges() if edges is None else np.asarray(edges, dtype=np.float64)
    cells = len(edges) - 1
    zones = np.arange(len(ZONE_RECTS)) if task == "push" else np.array([-1])
    # Every state, enumerated in index order: zone, gripper y, gripper x, object y, object x.
    z, gy, gx, oy, ox = (
        a.ravel()
        for a in np.meshgrid(
            zones,
            np.arange(-1, cells + 1),
            np.arange(-1, cells + 1),
            np.arange(cells),
            np.arange(cells),
            indexing="ij",
        )
    )
    gripper, obj = np.stack([gx, gy], 1), np.stack([ox, oy], 1)
    nexts = []
    for dx, dy in MOVES:
        ngx, ngy = np.clip(gx + dx, -1, cells), np.clip(gy + dy, -1, cells)
        nox, noy = ox.copy(), oy.copy()
        if task == "push":
            push = (ngx == ox) & (ngy == oy) & ((dx != 0) | (dy != 0))
            nox, noy = ox + dx * push, oy + dy * push
            into_wall = push & ((nox < 0) | (nox >= cells) | (noy < 0) | (noy >= cells))
            corner = (
                (dx != 0)
                & (dy != 0)
                & (((gx + dx == ox) & (gy == oy)) | ((gx == ox) & (gy + dy == oy)))
            )
            blocked = into_wall | corner
            ngx, ngy = np.where(blocked, gx, ngx), np.where(blocked, gy, ngy)
            nox, noy = np.where(blocked, ox, nox), np.where(blocked, oy, noy)
        mdp_index = _flat_index(task, cells, z, np.stack([ngx, ngy], 1), np.stack([nox, noy], 1))
        nexts.append(mdp_index)
    next_state = np.stack(nexts, 1).astype(np.int64)
    names, features = _features(task, edges, z, gripper, obj)
    return GridMDP(task, edges, next_state, features, names, gripper, obj, z)


def _flat_index(task: str, cells: int, z: np.ndarray, g: np.ndarray, o: np.ndarray) -> np.ndarray:
    side = cells + 2
    zone = np.maximum(z, 0) if task == "push" else np.zeros_like(z)
    return (zone * side * side + (g[:, 1] + 1) * side + (g[:, 0] + 1)) * cells**2 + (
        o[:, 1] * cells + o[:, 0]
    )


# ----------------------------------------------------------------------------- 2. features
def _features(
    task: str, edges: np.ndarray, zone: np.ndarray, gripper: np.ndarray, obj: np.ndarray
) -> tuple[tuple[str, ...], np.ndarray]:
    """(names, (S, F) values) of the state features; distances in table units between cell
    centres; in_zone: the object's whole cell lies inside the target zone."""
    cells, centres = len(edges) - 1, _centres(edges)
    g_xy, o_xy = centres[gripper + 1], centres[obj + 1]
    gripper_to_obj = np.linalg.norm(g_xy - o_xy, axis=1)
    if task == "reach":
        at_target = (gripper == obj).all(1).astype(np.float64)
        return ("gripper_to_target", "at_target"), np.stack([gripper_to_obj, at_target], 1)
    rect = ZONE_RECTS[zone]  # (S, 4)
    zone_centre = (rect[:, :2] + rect[:, 2:]) / 2
    low, high = edges[obj], edges[obj + 1]  # (S, 2) the object cell's corners
    inside = (low >= rect[:, :2] - 1e-9) & (high <= rect[:, 2:] + 1e-9)
    in_zone = inside.all(1).astype(np.float64)
    at_wall = ((obj == 0) | (obj == cells - 1)).any(1).astype(np.float64)
    names = ("object_to_zone", "in_zone", "gripper_to_object", "object_at_wall")
    values = [np.linalg.norm(o_xy - zone_centre, axis=1), in_zone, gripper_to_obj]
    return names, np.stack([*values, at_wall], 1)


# ----------------------------------------------------------------------------- 3. demonstrations
@dataclass
class Demonstrations:
    """Discretized trajectories: states (N, T) int64 abstract states, padded with the last."""

    states: np.ndarray

    def start_distribution(self, num_states: int) -> np.ndarray:
        """(S,) empirical distribution of the first states."""
        counts = np.bincount(self.states[:, 0], minlength=num_states)
        return counts / counts.sum()

    def feature_counts(self, features: np.ndarray) -> np.ndarray:
        """(F,) mean over trajectories of sum_t phi(s_t)."""
        return features[self.states].sum(axis=1).mean(axis=0)


def abstract_states(mdp: GridMDP, state: SceneState) -> np.ndarray:
    """(N,) abstract state of each env's scene: the cells of the gripper and of target 0 (and the
    target zone for push). In reach a gripper touching the target is put in the target's cell:
    "in the target's cell" means "touching it" (the centres of touching bodies are about one
    cell apart, so the plain cells would rarely coincide). In push the MDP's gripper never
    shares the object's cell (moving there pushes the object on), so a gripper found there is
    put in the neighbouring cell on its side of the object."""
    rows = np.arange(state.gripper.shape[0])
    slot = np.maximum(state.target_obj[:, 0], 0)
    gripper = mdp.cell(state.gripper, gripper=True)
    obj = mdp.cell(state.obj_pos[rows, slot], gripper=False)
    if mdp.task == "reach":
        touching = surface_gap(state)[rows, slot] <= GRASP_GAP
        gripper = np.where(touching[:, None], obj, gripper)
    else:  # the MDP's gripper never shares the object's cell: step it out on its own side
        shared = (gripper == obj).all(1)
        offset = state.gripper - state.obj_pos[rows, slot]
        major = np.abs(offset) >= 0.5 * np.abs(offset).max(1, keepdims=True)
        side = (np.sign(offset) * major).astype(np.int64)
        side[(side == 0).all(1)] = (-1, 0)
        gripper = np.where(shared[:, None], np.clip(gripper + side, -1, mdp.cells), gripper)
    zone = state.zone_id[rows, np.maximum(state.target_place[:, 0], 0)]
    return mdp.index(zone, gripper, obj)


def _world(task: str, episodes: int, seed: int) -> World:
    return World(task, num_envs=episodes, seed=seed, render=False, autoreset=False)


def expert_demonstrations(mdp: GridMDP, episodes: int, seed: int, horizon: int) -> Demonstrations:
    """The world's scripted expert on `episodes` scenes of the world seeded `seed`, discretized
    (consecutive repeats dropped, cut or padded to `horizon` with the last state)."""
    world = _world(mdp.task, episodes, seed)
    trace, done = [abstract_states(mdp, world.state)], np.zeros(episodes, dtype=bool)
    for _ in range(MAX_STEPS[mdp.task]):
        _, _, solved, _, _ = world.step(world.expert_action(noise=0.0))
        trace.append(np.where(done, trace[-1], abstract_states(mdp, world.state)))
        done |= solved
        if done.all():
            break
    raw = np.stack(trace, 1)  # (N, steps + 1)
    states = np.empty((episodes, horizon), dtype=np.int64)
    for row, sequence in enumerate(raw):
        keep = np.concatenate([[True], sequence[1:] != sequence[:-1]])
        path = sequence[keep][:horizon]
        states[row, : len(path)], states[row, len(path) :] = path, path[-1]
    return Demonstrations(states)


# ----------------------------------------------------------------------------- 4. the world
class GridController:
    """Executes an abstract policy (S,) in the world, one macro step per abstract action (the
    options of the abstraction): from the current scene's abstract state it takes the policy's
    move and drives the gripper at full speed, gripper open, toward the centre of the move's
    destination cell (a push: toward the object's centre, so the contact pushes it along the
    move) until it gets there, the object changes cell, or `MACRO_STEPS` world steps pass
    (a diagonal cell is 2.8 steps away); then it plans the next move."""

    def __init__(self, mdp: GridMDP, policy: np.ndarray, num_envs: int) -> None:
        self.mdp, self.policy = mdp, policy
        self.waypoint = np.zeros((num_envs, 2))
        self.obj_cell = np.zeros(num_envs, dtype=np.int64)
        self.pushing = np.zeros(num_envs, dtype=bool)
        self.steps_left = np.zeros(num_envs, dtype=np.int64)

    def act(self, state: SceneState) -> np.ndarray:
        """(N, 3) world actions for the scenes `state`."""
        mdp = self.mdp
        s = abstract_states(mdp, state)
        rows = np.arange(len(s))
        obj_pos = state.obj_pos[rows, np.maximum(state.target_obj[:, 0], 0)]
        arrived = np.linalg.norm(self.waypoint - state.gripper, axis=1) < 1e-3
        moved = mdp.obj[s, 0] * mdp.cells + mdp.obj[s, 1] != self.obj_cell
        plan = (self.steps_left <= 0) | (arrived & ~self.pushing) | (self.pushing & moved)
        if plan.any():
            nxt = mdp.next_state[s[plan], self.policy[s[plan]]]
            dest = mdp.gripper[nxt]
            self.pushing[plan] = (dest == mdp.obj[s[plan]]).all(1) & (mdp.task == "push")
            self.waypoint[plan] = mdp.centre(dest)
            self.obj_cell[plan] = mdp.obj[s[plan], 0] * mdp.cells + mdp.obj[s[plan], 1]
            self.steps_left[plan] = MACRO_STEPS
        target = np.where(self.pushing[:, None], obj_pos, self.waypoint)
        self.steps_left -= 1
        move = clip_planar((target - state.gripper) / MAX_SPEED)
        return np.concatenate([move, -np.ones((len(move), 1))], axis=1)


def world_success(
    mdp: GridMDP, policy: np.ndarray, episodes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """((N,) bool success, (N,) episode length) of `policy` on `episodes` scenes of the world
    seeded `seed` (the scenes `nanovla eval` uses when `seed` is its scene seed)."""
    world = _world(mdp.task, episodes, seed)
    done = np.zeros(episodes, dtype=bool)
    solved = np.zeros(episodes, dtype=bool)
    length = np.full(episodes, MAX_STEPS[mdp.task], dtype=np.int64)
    controller = GridController(mdp, policy, episodes)
    for step in range(1, MAX_STEPS[mdp.task] + 1):
        _, _, success, _, _ = world.step(controller.act(world.state))
        now = success & ~done
        solved |= now
        length[now] = step
        done |= now
        if done.all():
            break
    return solved, length
