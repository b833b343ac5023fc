"""Maximum-entropy inverse reinforcement learning on a grid abstraction of the tabletop.

Paper: Ziebart, Maas, Bagnell & Dey, "Maximum Entropy Inverse Reinforcement Learning", AAAI 2008,
https://cdn.aaai.org/AAAI/2008/AAAI08-227.pdf (soft value iteration as in Ziebart's 2010 thesis;
the MLP reward as in Wulfmeier, Ondruska & Posner 2015, https://arxiv.org/abs/1507.04888).

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
   and indicators. The reward is r(s) = w . phi(s) (`reward="linear"`), or a small MLP of phi(s)
   (`reward="mlp"`).
3. `soft_value_iteration`: exact finite-horizon soft Bellman backups over every state at once,
   V_t(s) = logsumexp_a [r(s) + V_{t+1}(s'(s, a))], V_{T-1} = r; the MaxEnt policy is
   pi_t(a|s) = exp(Q_t(s, a) - V_t(s)).
4. `state_visitation`: the forward pass, D_{t+1}(s') = sum_{s,a} D_t(s) pi_t(a|s) [s'(s,a)=s'],
   from the demonstrations' start distribution; expected feature counts = sum_t D_t . phi.
5. `fit_reward`: maximize the demonstrations' log-likelihood w . mu_E - sum_s D_0(s) V_0(s)
   (exact for deterministic MDPs), whose gradient is mu_E - E_pi[phi] (expert feature counts
   minus expected feature counts), with torch's L-BFGS (linear) or Adam (MLP).
6. `expert_demonstrations`: the world's scripted expert (`World.expert_action`) rolled out in the
   continuous world; each step's scene is mapped to its abstract state (`abstract_states`),
   repeats are dropped (the gripper crosses a cell in about two world steps) and the sequence is
   padded with its last state to the horizon (after success the task is done: it stays).
7. `world_success`: the recovered reward's optimal policy (greedy in the soft Q_0, the longest
   look-ahead) executed in the world through the abstraction (`GridController`): map the scene
   to its abstract state, take the policy's move, drive the gripper at full speed (open) toward
   the centre of the move's destination cell (a push: toward the object's centre) for up to
   `MACRO_STEPS` world steps until it arrives or the object changes cell, then plan again.
   Success is the world's own check, on the evaluation scenes `nanovla eval` uses.
8. `known_reward_check`: demonstrations sampled from the MaxEnt policy of a known true reward on
   the same MDP, to measure whether the fit recovers it (feature match, reward correlation).
9. `main`: `nanovla irl --task reach|push --out DIR` writes DIR/irl.json and DIR/reward.png.

Departures from the seed's `MaximumEntropyIRL` sketch (which keeps `nn.Linear(state_dim, 1)`,
computes "an optimal policy", samples trajectories from it and steps the weights by the feature
difference): the reward is linear in named features of a discrete abstraction (an MLP of those
features is the option), because exact soft value iteration needs an enumerable state space; the
expected feature counts come from the exact forward pass over state-visitation frequencies, not
from sampled trajectories (no sampling noise in the gradient); the policy is the MaxEnt (soft)
policy, not a hard-optimal one, since that is what makes the gradient mu_E - E[phi] exact; the
weights are fitted by L-BFGS on the exact log-likelihood rather than by fixed-step ascent; and
the learned reward is checked by planning with it in the continuous world, not just printed.
Other objects on the table are not in the abstraction (the scripted push expert ignores them
too); in the world the gripper shoves them aside.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import tyro

from nanovla.errors import ExistsError, InputError
from nanovla.eval.evaluate import EVAL_SEED, scene_seed
from nanovla.eval.stats import wilson_interval
from nanovla.io import write_json
from nanovla.progress import progress
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
KNOWN_WEIGHTS = {
    "reach": {"gripper_to_target": -2.0, "at_target": 1.0},
    "push": {
        "object_to_zone": -3.0,
        "in_zone": 1.0,
        "gripper_to_object": -1.0,
        "object_at_wall": -0.5,
    },
}
"""the true rewards of the known-reward check (`known_reward_check`)"""
ZONE_EDGES = (0.0, 0.1, 0.2, 0.28, 0.36, 0.4533, 0.5467, 0.64, 0.72, 0.8, 0.9, 1.0)
"""the default grid's cell boundaries: every zone edge (`ZONE_RECTS`) is one of them, so an
object's cell lies inside its zone exactly when the world's push check holds for its centre"""
RING_WIDTH = 0.1
"""width of the gripper's cells just off the table (the world lets it reach 0.06 beyond)"""
MACRO_STEPS = 4
"""world steps one abstract move may take at most (`GridController`)"""
DEFAULT_ITERATIONS = {"linear": 50, "mlp": 200}
"""optimizer steps of `nanovla irl` per reward model (L-BFGS iterations, Adam steps)"""
REWARD_FILE = "reward.png"
RESULT_FILE = "irl.json"


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


# ----------------------------------------------------------------------------- 3-4. soft VI
def _logsumexp(q: np.ndarray) -> np.ndarray:
    top = q.max(axis=1)
    return top + np.log(np.exp(q - top[:, None]).sum(axis=1))


def soft_value_iteration(reward: np.ndarray, next_state: np.ndarray, horizon: int) -> np.ndarray:
    """(T, S) soft values V_t(s) = log sum over the T - t step action sequences from s of
    exp(sum of rewards along them), for reward (S,), next_state (S, A), horizon T."""
    values = np.empty((horizon, reward.shape[0]))
    values[-1] = reward
    for t in range(horizon - 2, -1, -1):
        values[t] = _logsumexp(reward[:, None] + values[t + 1][next_state])
    return values


def soft_policy(
    reward: np.ndarray, next_state: np.ndarray, values: np.ndarray, t: int
) -> np.ndarray:
    """(S, A) MaxEnt policy pi_t(a|s) = exp(Q_t(s, a) - V_t(s)) for t < T - 1."""
    q = reward[:, None] + values[t + 1][next_state]
    return np.exp(q - values[t][:, None])


def state_visitation(
    reward: np.ndarray, next_state: np.ndarray, values: np.ndarray, start: np.ndarray
) -> np.ndarray:
    """(S,) expected visits sum_t D_t(s) under the MaxEnt policy from the start distribution
    `start` (S,) over the horizon of `values` (T, S)."""
    num_states = next_state.shape[0]
    density, visits = start.astype(np.float64), start.astype(np.float64)
    flat_next = next_state.ravel()
    for t in range(values.shape[0] - 1):
        flow = density[:, None] * soft_policy(reward, next_state, values, t)
        density = np.bincount(flat_next, weights=flow.ravel(), minlength=num_states)
        visits = visits + density
    return visits


# ----------------------------------------------------------------------------- demonstrations
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


def sample_demonstrations(
    mdp: GridMDP, reward: np.ndarray, start: np.ndarray, count: int, horizon: int, seed: int
) -> Demonstrations:
    """`count` trajectories sampled from the MaxEnt policy of `reward` from the start
    distribution `start` (vectorized over trajectories)."""
    rng = np.random.default_rng(seed)
    values = soft_value_iteration(reward, mdp.next_state, horizon)
    states = np.empty((count, horizon), dtype=np.int64)
    states[:, 0] = rng.choice(mdp.num_states, size=count, p=start)
    for t in range(horizon - 1):
        policy = soft_policy(reward, mdp.next_state, values, t)[states[:, t]]  # (count, A)
        cumulative = policy.cumsum(axis=1)
        draw = rng.random(count)[:, None] * cumulative[:, -1:]
        action = (cumulative < draw).sum(axis=1).clip(0, len(MOVES) - 1)
        states[:, t + 1] = mdp.next_state[states[:, t], action]
    return Demonstrations(states)


# ----------------------------------------------------------------------------- 5. the fit
@dataclass
class FitResult:
    """A fitted reward: per-state values (S,), the linear weights (None for the MLP), the
    expert's and the fitted MaxEnt policy's feature counts (F,), and their relative gap
    ||mu_E - mu_pi|| / ||mu_E||."""

    reward: np.ndarray
    weights: np.ndarray | None
    expert_counts: np.ndarray
    model_counts: np.ndarray
    feature_gap: float
    iterations: int


def feature_gap(expert_counts: np.ndarray, model_counts: np.ndarray) -> float:
    """||mu_E - mu_pi||_2 / ||mu_E||_2: the relative feature-expectation mismatch."""
    return float(
        np.linalg.norm(expert_counts - model_counts) / max(np.linalg.norm(expert_counts), 1e-12)
    )


def expected_counts(
    mdp: GridMDP, reward: np.ndarray, start: np.ndarray, horizon: int
) -> np.ndarray:
    """(F,) feature counts sum_t E[phi(s_t)] under the MaxEnt policy of `reward`."""
    values = soft_value_iteration(reward, mdp.next_state, horizon)
    return state_visitation(reward, mdp.next_state, values, start) @ mdp.features


def fit_reward(
    mdp: GridMDP,
    demos: Demonstrations,
    reward: str = "linear",
    iterations: int = 60,
    l2: float = 1e-4,
    hidden: int = 32,
    lr: float = 0.05,
    seed: int = 0,
    show_progress: bool = True,
) -> FitResult:
    """Maximum-entropy IRL: fit a reward (linear in `mdp.features`, or an MLP of them) to the
    demonstrations by maximizing their log-likelihood minus `l2`/2 ||params||^2.

    Linear: torch L-BFGS (strong Wolfe line search) for `iterations` steps on the exact
    objective w . mu_E - D_0 . V_0 with gradient mu_E - E_pi[phi]. MLP: Adam (`lr`) for
    `iterations` steps on the deep MaxEnt gradient sum_s (D_E(s) - D_pi(s)) dr(s)/dtheta."""
    import torch

    if reward not in ("linear", "mlp"):
        raise InputError(f"--reward: choose linear or mlp, got {reward!r}")
    if iterations < 1:
        raise InputError(f"--iterations: must be >= 1, got {iterations}")
    if not l2 >= 0:
        raise InputError(f"--l2: must be >= 0, got {l2}")
    horizon = demos.states.shape[1]
    start = demos.start_distribution(mdp.num_states)
    expert_visits = np.bincount(demos.states.ravel(), minlength=mdp.num_states) / len(demos.states)
    expert_counts = expert_visits @ mdp.features
    features = torch.from_numpy(mdp.features)
    bar = progress(total=iterations, desc=f"irl {mdp.task}", unit="it", enabled=show_progress)
    torch.manual_seed(seed)
    if reward == "linear":
        weights = torch.zeros(features.shape[1], dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS(
            [weights], lr=1, max_iter=iterations, tolerance_grad=1e-9, tolerance_change=1e-12,
            history_size=20, line_search_fn="strong_wolfe",
        )  # fmt: skip

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            w = weights.detach().numpy()
            r = mdp.features @ w
            values = soft_value_iteration(r, mdp.next_state, horizon)
            model = state_visitation(r, mdp.next_state, values, start) @ mdp.features
            nll = -(w @ expert_counts - start @ values[0]) + 0.5 * l2 * w @ w
            weights.grad = torch.from_numpy(-(expert_counts - model) + l2 * w)
            bar.update(1)
            return torch.tensor(nll, dtype=torch.float64)

        optimizer.step(closure)
        bar.close()
        w = weights.detach().numpy().copy()
        r = mdp.features @ w
        model_counts = expected_counts(mdp, r, start, horizon)
        gap = feature_gap(expert_counts, model_counts)
        return FitResult(r, w, expert_counts, model_counts, gap, iterations)
    net = torch.nn.Sequential(
        torch.nn.Linear(features.shape[1], hidden),
        torch.nn.Tanh(),
        torch.nn.Linear(hidden, 1),
    ).double()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=l2)
    for _ in range(iterations):
        r_t = net(features).squeeze(1)
        r = r_t.detach().numpy()
        values = soft_value_iteration(r, mdp.next_state, horizon)
        model_visits = state_visitation(r, mdp.next_state, values, start)
        # d(log-likelihood)/dr(s) = D_E(s) - D_pi(s): ascend it through the network.
        direction = torch.from_numpy(expert_visits - model_visits)
        optimizer.zero_grad()
        (-(direction * r_t).sum()).backward()
        optimizer.step()
        bar.update(1)
    bar.close()
    with torch.no_grad():
        r = net(features).squeeze(1).numpy().copy()
    model_counts = expected_counts(mdp, r, start, horizon)
    return FitResult(
        r, None, expert_counts, model_counts, feature_gap(expert_counts, model_counts), iterations
    )


# ----------------------------------------------------------------------------- 7. the world
def greedy_policy(mdp: GridMDP, reward: np.ndarray, horizon: int) -> np.ndarray:
    """(S,) the action maximizing Q_0(s, a) = r(s) + V_1(s'(s, a)) (ties: the first in MOVES)."""
    values = soft_value_iteration(reward, mdp.next_state, horizon)
    return (reward[:, None] + values[1][mdp.next_state]).argmax(axis=1)


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


# ----------------------------------------------------------------------------- 8. known reward
def reward_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two per-state rewards (invariant to shifts and positive scales)."""
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-300))


def known_reward_check(
    mdp: GridMDP,
    true_weights: np.ndarray,
    start: np.ndarray,
    demos: int,
    horizon: int,
    seed: int = 0,
    **fit_options: Any,
) -> dict[str, Any]:
    """Samples `demos` trajectories from the MaxEnt policy of the reward `true_weights` . phi
    (from the start distribution `start`), fits a reward to them and compares: the fitted
    reward's MaxEnt policy's feature counts against the demonstrations' (`feature_gap`), and
    the fitted against the true per-state reward (`reward_correlation`)."""
    true_reward = mdp.features @ true_weights
    sampled = sample_demonstrations(mdp, true_reward, start, demos, horizon, seed)
    fit = fit_reward(mdp, sampled, seed=seed, **fit_options)
    result: dict[str, Any] = {
        "demos": demos,
        "true_weights": dict(zip(mdp.feature_names, true_weights.tolist(), strict=True)),
        "feature_gap": fit.feature_gap,
        "reward_correlation": reward_correlation(fit.reward, true_reward),
    }
    if fit.weights is not None:
        result["recovered_weights"] = dict(
            zip(mdp.feature_names, fit.weights.tolist(), strict=True)
        )
    return result


# ----------------------------------------------------------------------------- plot
def plot_reward(mdp: GridMDP, reward: np.ndarray, demos: Demonstrations, path: Path) -> Path:
    """PNG of the learned reward over the table for the first demonstration's scene: reach, over
    the gripper's cells (target fixed); push, over the object's cells (gripper in its best cell)
    and over the gripper's cells (object fixed), the target zone drawn. The first demonstration's
    discretized path is drawn on top (a pushing gripper follows the object one cell behind, so
    its wide line shows under the object's dashes)."""
    try:
        import matplotlib
    except ImportError as error:
        raise InputError(
            "irl plots with matplotlib, which is not installed: pip install 'nanovla[plots]'"
        ) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    first = demos.states[0]
    zone, obj0 = mdp.zone[first[0]], mdp.obj[first[0]]
    same_zone = mdp.zone == zone
    ring = np.concatenate([[mdp.edges[0] - RING_WIDTH], mdp.edges, [mdp.edges[-1] + RING_WIDTH]])
    side = mdp.cells + 2
    panels = []
    at_obj = same_zone & (mdp.obj == obj0).all(1)
    grid = np.full((side, side), np.nan)
    grid[mdp.gripper[at_obj, 1] + 1, mdp.gripper[at_obj, 0] + 1] = reward[at_obj]
    what = "target" if mdp.task == "reach" else "object"
    panels.append((ring, grid, f"r(s) over the gripper's cell ({what} fixed, x)"))
    if mdp.task == "push":
        grid = np.full((mdp.cells, mdp.cells), -np.inf)
        index = (mdp.obj[same_zone, 1], mdp.obj[same_zone, 0])
        np.maximum.at(grid, index, reward[same_zone])
        panels.insert(0, (mdp.edges, grid, "r(s) over the object's cell (gripper at its best)"))
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    centres = mdp.centre(mdp.gripper[first]), mdp.centre(mdp.obj[first])
    for axis, (edges, values, title) in zip(axes[0], panels, strict=True):
        mesh = axis.pcolormesh(edges, edges, values, cmap="viridis", shading="flat")
        figure.colorbar(mesh, ax=axis, shrink=0.85)
        if mdp.task == "push":
            x0, y0, x1, y1 = ZONE_RECTS[zone]
            axis.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="white", lw=2))
        axis.plot(*centres[0].T, "-", color="orange", lw=4, label="expert gripper (cells)")
        axis.plot(*centres[1].T, "--", color="red", lw=1.5, label=f"expert {what} (cells)")
        axis.plot(*mdp.centre(obj0), "x", color="red", ms=10, mew=2)
        axis.set(title=title, xlabel="x (table units)", ylabel="y (table units, down)")
        axis.set_aspect("equal")
        axis.invert_yaxis()
        axis.legend(loc="lower right", fontsize=7)
    figure.suptitle(f"MaxEnt IRL: learned reward, {mdp.task}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=110)
    plt.close(figure)
    temporary.replace(path)
    return path


# ----------------------------------------------------------------------------- 9. the command
@dataclass
class IRLCommand:
    """Maximum-entropy inverse RL (Ziebart et al. 2008) on a grid abstraction of the tabletop:
    learn a reward from the scripted expert's discretized demonstrations, plan with it, and run
    the plan in the continuous world. Writes OUT/irl.json and OUT/reward.png."""

    task: str
    """task family with a grid abstraction: reach or push"""
    out: Path
    """output folder (irl.json, reward.png)"""
    demos: int = 200
    """expert demonstrations (world episodes) to learn from"""
    demo_seed: int = 0
    """world seed of the demonstration scenes (away from the evaluation scenes)"""
    episodes: int = 200
    """evaluation episodes in the world (the fixed scenes `nanovla eval` uses)"""
    eval_seed: int = EVAL_SEED
    """base seed of the evaluation scenes (the family adds its offset, as in `nanovla eval`)"""
    horizon: Annotated[int, tyro.conf.arg(help_behavior_hint="(default: reach 24, push 48)")] = 0
    """abstract steps per trajectory (soft value iteration's horizon); 0 = the task's default"""
    grid: str = "zones"
    """zones: 11 cells per axis whose edges run along the zones' edges; uniform: --cells equal
    cells"""
    cells: int = 10
    """cells per table axis of the uniform grid"""
    reward: str = "linear"
    """linear: weights over the named features (L-BFGS); mlp: a small MLP of them (Adam)"""
    iterations: Annotated[
        int, tyro.conf.arg(help_behavior_hint="(default: linear 50, mlp 200)")
    ] = 0
    """L-BFGS iterations (linear) or Adam steps (mlp); 0 = the reward's default"""
    l2: float = 1e-4
    """L2 penalty on the reward's parameters"""
    hidden: int = 32
    """hidden units of the MLP reward"""
    lr: float = 0.05
    """Adam learning rate of the MLP reward"""
    known_demos: int = 2000
    """trajectories sampled from a known true reward for the recovery check; 0 = skip it"""
    seed: int = 0
    """seed of the sampled trajectories and the MLP's initialization"""
    overwrite: bool = False
    """replace an existing OUT/irl.json"""
    progress: bool = True
    """show a progress bar (--no-progress: none)"""


def _check(command: IRLCommand) -> None:
    check_task(command.task)
    if command.iterations < 0:
        raise InputError(
            f"--iterations: must be >= 1 (or 0 for the default), got {command.iterations}"
        )
    for name in ("demos", "episodes", "hidden"):
        if getattr(command, name) < 1:
            raise InputError(f"--{name}: must be >= 1, got {getattr(command, name)}")
    if command.horizon != 0 and command.horizon < 2:
        raise InputError(f"--horizon: must be >= 2 (or 0 for the default), got {command.horizon}")
    if command.known_demos < 0:
        raise InputError(f"--known-demos: must be >= 0, got {command.known_demos}")
    if not (math.isfinite(command.lr) and command.lr > 0):
        raise InputError(f"--lr: must be a finite number > 0, got {command.lr}")
    if not (math.isfinite(command.l2) and command.l2 >= 0):
        raise InputError(f"--l2: must be a finite number >= 0, got {command.l2}")
    if command.reward not in ("linear", "mlp"):
        raise InputError(f"--reward: choose linear or mlp, got {command.reward!r}")
    grid_edges(command.grid, command.cells)
    if importlib.util.find_spec("matplotlib") is None:
        raise InputError(
            "irl plots with matplotlib, which is not installed: pip install 'nanovla[plots]'"
        )
    if command.out.exists() and not command.out.is_dir():
        raise InputError(f"--out: {command.out} exists and is not a folder")
    if (command.out / RESULT_FILE).exists() and not command.overwrite:
        raise ExistsError(
            f"--out: {command.out / RESULT_FILE} exists; pass --overwrite to replace it"
        )


def run(command: IRLCommand) -> dict[str, Any]:
    """Runs `nanovla irl` and returns the irl.json dict (also written to OUT/irl.json)."""
    _check(command)
    began = time.perf_counter()
    task = command.task
    horizon = command.horizon or DEFAULT_HORIZON[task]
    mdp = build_mdp(task, grid_edges(command.grid, command.cells))
    demos = expert_demonstrations(mdp, command.demos, command.demo_seed, horizon)
    iterations = command.iterations or DEFAULT_ITERATIONS[command.reward]
    options = dict(
        reward=command.reward, iterations=iterations, l2=command.l2,
        hidden=command.hidden, lr=command.lr, show_progress=command.progress,
    )  # fmt: skip
    fit = fit_reward(mdp, demos, seed=command.seed, **options)
    policy = greedy_policy(mdp, fit.reward, horizon)
    seed = scene_seed(command.eval_seed, task)
    success, length = world_success(mdp, policy, command.episodes, seed)
    successes = int(success.sum())
    names = mdp.feature_names
    result: dict[str, Any] = {
        "task": task,
        "world_success": successes / command.episodes,
        "ci95": list(wilson_interval(successes, command.episodes)),
        "successes": successes,
        "episodes": command.episodes,
        "eval_seed": seed,
        "mean_episode_steps": float(length[success].mean()) if successes else None,
        "feature_gap": fit.feature_gap,
        "features": list(names),
        "expert_feature_counts": dict(zip(names, fit.expert_counts.tolist(), strict=True)),
        "model_feature_counts": dict(zip(names, fit.model_counts.tolist(), strict=True)),
        "reward": command.reward,
        "weights": None
        if fit.weights is None
        else dict(zip(names, fit.weights.tolist(), strict=True)),
        "demos": command.demos,
        "demo_seed": command.demo_seed,
        "horizon": horizon,
        "grid_edges": mdp.edges.tolist(),
        "num_states": mdp.num_states,
        "iterations": iterations,
    }
    if command.known_demos:
        true_weights = np.array([KNOWN_WEIGHTS[task][name] for name in names])
        start = demos.start_distribution(mdp.num_states)
        result["known_reward"] = known_reward_check(
            mdp, true_weights, start, command.known_demos, horizon, command.seed, **options
        )
    plot = plot_reward(mdp, fit.reward, demos, command.out / REWARD_FILE)
    result["plot"] = str(plot)
    result["wall_s"] = round(time.perf_counter() - began, 1)
    write_json(command.out / RESULT_FILE, result)
    return result


def main(argv: list[str]) -> int:
    """Entry point of `nanovla irl`."""
    command = tyro.cli(IRLCommand, args=argv, prog="nanovla irl", description=IRLCommand.__doc__)
    result = run(command)
    known = result.get("known_reward")
    print(
        f"irl {result['task']}: world success {result['world_success']:.3f} "
        f"(95% CI {result['ci95'][0]:.3f}-{result['ci95'][1]:.3f}, {result['episodes']} episodes), "
        f"feature gap {result['feature_gap']:.2e}"
        + (
            f"; known reward: feature gap {known['feature_gap']:.2e}, "
            f"correlation {known['reward_correlation']:.3f}"
            if known
            else ""
        )
    )
    print(f"wrote {command.out / RESULT_FILE} and {result['plot']}", file=sys.stdout)
    return 0
