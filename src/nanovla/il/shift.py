"""Compounding error, measured: how far a cloned policy drifts from the expert, step by step.

Paper: Ross, Gordon & Bagnell, "A Reduction of Imitation Learning and Structured Prediction to
No-Regret Online Learning", AISTATS 2011, https://arxiv.org/abs/1011.0686 (Theorem 2.1, after
Ross & Bagnell 2010: a policy that errs with probability eps on the *expert's* state distribution
can pay up to T^2 eps over a horizon of T steps, since one mistake leads to states the
demonstrations never showed; DAgger's policies, trained on their own states, pay T eps + O(1)).

Read top to bottom:

1. `track_points`: what "the state" is when two trajectories are compared: the gripper and the
   task's target objects, stacked (x, y per body, table units; sort has two targets, the other
   families one and a (0, 0) pad), a (N, 6) array read from the full world state.
2. `roll_out`: one seeded world of E envs (`autoreset=False`), driven by the policy or by the
   scripted expert for the family's full step limit T. At every state s_t it visits, the other
   side is asked too: the expert labels the learner's states (`World.expert_action` acts from any
   state), the policy labels the expert's. An env's points are held at its terminal state once
   its episode ends (success or the step limit).
3. `shift_curves`: per step t, from the learner's trace and the expert's (same initial states:
   both worlds are reset with the same seed; the seed range is disjoint from the demonstrations',
   the validation rollouts' and the final evaluation's, see `nanovla.eval.evaluate`):
   - `disagreement[t]`: mean over episodes still running of |pi(s_t) - pi*(s_t)|_1 (the clipped
     (dx, dy, grip) actions the world would execute; 0 <= it <= 6), on the learner's own states;
     `expert_state_disagreement[t]` the same on the expert's states: the training-distribution
     error eps of the theory, measured;
   - `cumulative_disagreement[t]`: sum over tau <= t of the disagreement summed over running
     episodes / E, the cost J of the theory with the loss |pi - pi*|_1 (an ended episode costs 0:
     success is absorbing);
   - `distance[t]`: mean over episodes of the distance of the learner's points to the expert's
     path from the same initial state (the polyline through the expert's points, time-free: a
     slower learner on the right path stays at 0); `distance_aligned[t]` the time-aligned
     |z_t - z*_t| (the expert held at its end);
   - `on_track[t]`: fraction of episodes whose `distance` stayed <= `radius` at every step up to
     t (non-increasing by construction);
   - `success_by[t]` / `expert_success_by[t]`: fraction of episodes solved within t steps, the
     success rate a horizon of t would give.
4. `fit_shapes`: least-squares fits through the origin of eps*t and eps*t^2 to the cumulative
   disagreement over the expert's horizon (t up to the expert's longest episode, where the
   expert's cost is defined), with the RMSE of each: the shape that fits better is the measured
   growth law. Past the expert's horizon successful learners stop paying, so the curve bends over.
   `power` is p of C(t) ~ a t^p (log-log slope: 1 linear, 2 quadratic, between when the error
   grows and then saturates). `excess` = C(T) / (eps* T), with eps* the error on the expert's
   states: 1 means the policy pays only its training-distribution error, more means its errors
   compounded.
5. `measure`: every policy on every family; `shift_report` prints the table and draws the curves,
   the fitted shapes and the theory's statement; `main` is `nanovla il shift`, which writes
   OUT/shift.json and OUT/shift.png.

Departures: the paper's loss is the 0-1 loss (or a surrogate) of a classifier; here it is the L1
distance between continuous actions, and the bounds are shown as fitted shapes, not as bounds (the
constants of the theorem are loose). "Off track" is a distance threshold (`--track-radius`), the
paper has no such notion. The seed's sketch only narrates the problem (s1' is off the data, errors
pile up); this measures it on the embedded world.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from nanovla.constants import CHECKPOINTS_DIR, LAST_LINK
from nanovla.data.recording import Actor, reset_actor
from nanovla.errors import ExistsError, InputError, MissingError
from nanovla.eval.evaluate import EVAL_SEED, SEED_SPAN, scene_seed
from nanovla.eval.stats import wilson_interval
from nanovla.io import write_json
from nanovla.progress import progress
from nanovla.world.core import World
from nanovla.world.instructions import resolve_templates
from nanovla.world.tasks import TASK_FAMILIES, parse_tasks

SHIFT_SEED = EVAL_SEED + 2 * SEED_SPAN
"""base seed of the shift rollouts: past the final evaluation's range, far from the validation
seeds (50,000) and the demonstrations' (0)"""
RESULT_FILE, PLOT_FILE = "shift.json", "shift.png"


# ----------------------------------------------------------------------------- 1. the state
def track_points(world: World) -> np.ndarray:
    """(N, 6) float64: gripper x, y, then target 0's x, y and target 1's x, y (0, 0 unused)."""
    state = world.state
    rows = np.arange(world.num_envs)
    points = [state.gripper.astype(np.float64)]
    for k in range(2):
        slot = state.target_obj[:, k]
        pos = state.obj_pos[rows, np.maximum(slot, 0)].astype(np.float64)
        points.append(np.where((slot >= 0)[:, None], pos, 0.0))
    return np.concatenate(points, axis=1)


# ----------------------------------------------------------------------------- 2. rollouts
@dataclass
class Trace:
    """One batch of E episodes of T steps (P = 6 tracked coordinates)."""

    points: np.ndarray
    """(T + 1, E, P) tracked points after t steps, held at the terminal state once ended"""
    gaps: np.ndarray
    """(T, E) |pi(s_t) - pi*(s_t)|_1 on the visited states (0 where the episode had ended)"""
    running: np.ndarray
    """(T, E) bool: episode e had not ended before step t"""
    success_step: np.ndarray
    """(E,) int: the step count at which episode e succeeded, -1 if it never did"""


class ExpertActor:
    """The scripted expert as an actor (a baseline, and the tests' zero-disagreement check):
    `roll_out` calls `attach(world)`, after which `select_action` reads that world's state."""

    def __init__(self, noise: float = 0.0) -> None:
        self.noise, self.world = float(noise), None

    def attach(self, world: World) -> None:
        self.world = world

    def select_action(self, obs: dict[str, Any]) -> np.ndarray:
        if self.world is None:
            raise RuntimeError("ExpertActor.select_action before attach(world)")
        return self.world.expert_action(noise=self.noise)


def image_size_of(actor: Actor, default: int = 64) -> int:
    """The image size a policy was trained on (`config.image_size`), else `default`."""
    return int(getattr(getattr(actor, "config", None), "image_size", default))


def roll_out(
    actor: Actor,
    family: str,
    episodes: int,
    seed: int,
    drive: str = "actor",
    instructions: str = "train",
    image_size: int | None = None,
) -> Trace:
    """Roll `episodes` seeded episodes of `family` for its whole step limit, executing the
    actor's actions (`drive="actor"`) or the expert's (`drive="expert"`) and recording, at every
    visited state, |actor - expert|_1 of the two clipped actions."""
    if drive not in ("actor", "expert"):
        raise InputError(f"drive: 'actor' or 'expert', got {drive!r}")
    size = image_size_of(actor) if image_size is None else image_size
    world = World(family, episodes, size, seed, instructions, autoreset=False)
    obs = world.reset(seed=seed)
    if hasattr(actor, "attach"):
        actor.attach(world)
    reset_actor(actor, None)
    steps = world.max_steps[family]
    points = np.zeros((steps + 1, episodes, 6))
    points[0] = track_points(world)
    gaps, running = np.zeros((steps, episodes)), np.zeros((steps, episodes), dtype=bool)
    done, success_step = np.zeros(episodes, dtype=bool), np.full(episodes, -1)
    for t in range(steps):
        learner = np.clip(np.asarray(actor.select_action(obs), dtype=np.float64), -1.0, 1.0)
        expert = np.asarray(world.expert_action(noise=0.0), dtype=np.float64)
        running[t] = ~done
        gaps[t] = np.where(done, 0.0, np.abs(learner - expert).sum(axis=1))
        obs, _, terminated, truncated, _ = world.step(learner if drive == "actor" else expert)
        success_step[terminated & ~done] = t + 1
        points[t + 1] = np.where(done[:, None], points[t], track_points(world))
        done |= terminated | truncated
    return Trace(points, gaps, running, success_step)


# ----------------------------------------------------------------------------- 3. the curves
def path_distance(points: np.ndarray, path: np.ndarray) -> np.ndarray:
    """(T', E) distance of each of `points` (T', E, P) to the polyline through `path` (T, E, P)
    of the same episode (its segments path[k] -> path[k + 1]; one point if T == 1)."""
    start = path[:-1] if len(path) > 1 else path  # (S, E, P)
    seg = (path[1:] - path[:-1]) if len(path) > 1 else np.zeros_like(path)
    rel = points[:, None] - start[None]  # (T', S, E, P)
    length2 = (seg * seg).sum(-1)  # (S, E)
    along = np.where(length2 > 0, (rel * seg[None]).sum(-1) / np.maximum(length2, 1e-12), 0.0)
    along = np.clip(along, 0.0, 1.0)
    nearest = rel - along[..., None] * seg[None]
    return np.sqrt((nearest * nearest).sum(-1)).min(axis=1)


def _mean_or_none(values: np.ndarray, mask: np.ndarray) -> list[float | None]:
    """Per row t: mean of values[t][mask[t]], None where the mask is empty."""
    count = mask.sum(axis=1)
    total = np.where(mask, values, 0.0).sum(axis=1)
    return [float(s / c) if c else None for s, c in zip(total, count, strict=True)]


def success_by(success_step: np.ndarray, steps: int) -> list[float]:
    """Fraction of episodes solved within t steps, t = 0..steps."""
    solved = success_step[None, :] >= 1
    within = success_step[None, :] <= np.arange(steps + 1)[:, None]
    return (solved & within).mean(axis=1).tolist()


def shift_curves(learner: Trace, expert: Trace, radius: float) -> dict[str, Any]:
    """The per-step curves of one policy on one family (see the module docstring, point 3)."""
    episodes = learner.gaps.shape[1]
    steps = learner.gaps.shape[0]
    distance = path_distance(learner.points, expert.points)  # (T + 1, E)
    aligned = np.linalg.norm(learner.points - expert.points, axis=-1)
    on_track = np.maximum.accumulate(distance, axis=0) <= radius
    solved = int((learner.success_step >= 1).sum())
    return {
        "steps": steps,
        "episodes": episodes,
        "disagreement": _mean_or_none(learner.gaps, learner.running),
        "expert_state_disagreement": _mean_or_none(expert.gaps, expert.running),
        "cumulative_disagreement": (np.cumsum(learner.gaps.sum(axis=1)) / episodes).tolist(),
        "running": learner.running.mean(axis=1).tolist(),
        "distance": distance.mean(axis=1).tolist(),
        "distance_aligned": aligned.mean(axis=1).tolist(),
        "on_track": on_track.mean(axis=1).tolist(),
        "success_by": success_by(learner.success_step, steps),
        "expert_success_by": success_by(expert.success_step, steps),
        "success": solved / episodes,
        "ci95": list(wilson_interval(solved, episodes)),
        "eps_expert_states": float(expert.gaps.sum() / max(expert.running.sum(), 1)),
        "eps_own_states": float(learner.gaps.sum() / max(learner.running.sum(), 1)),
        "expert_horizon": int(max(expert.running.sum(axis=0).max(), 1)),
    }


# ----------------------------------------------------------------------------- 4. the shapes
def fit_shapes(cumulative: list[float], horizon: int, eps: float = 0.0) -> dict[str, Any]:
    """Least-squares eps of C(t) ~ eps*t and C(t) ~ eps*t^2 over t = 1..horizon (C[t-1] is the
    cost after t steps), with the RMSE of each fit and the better shape's name; `excess` is
    C(horizon) / (eps * horizon) for the error `eps` measured on the expert's states: what the
    policy paid over what that error alone would cost without compounding (None if eps = 0)."""
    cost = np.asarray(cumulative[:horizon], dtype=np.float64)
    t = np.arange(1, len(cost) + 1, dtype=np.float64)
    fits: dict[str, Any] = {"horizon": int(len(cost))}
    fits["excess"] = float(cost[-1] / (eps * len(cost))) if eps > 0 else None
    for name, basis in (("linear", t), ("quadratic", t * t)):
        eps = float((basis * cost).sum() / (basis * basis).sum())
        fits[f"eps_{name}"] = eps
        fits[f"rmse_{name}"] = float(np.sqrt(((cost - eps * basis) ** 2).mean()))
    fits["better"] = "quadratic" if fits["rmse_quadratic"] < fits["rmse_linear"] else "linear"
    positive = cost > 0  # the growth exponent p of C(t) ~ a t^p, a log-log least-squares slope
    fits["power"] = (
        float(np.polyfit(np.log(t[positive]), np.log(cost[positive]), 1)[0])
        if positive.sum() >= 2
        else None
    )
    return fits


# ----------------------------------------------------------------------------- 5. measuring
def measure(
    policies: dict[str, Actor],
    families: tuple[str, ...],
    episodes: int,
    seed: int = SHIFT_SEED,
    radius: float = 0.1,
    instructions: str = "train",
    show_progress: bool = True,
) -> dict[str, Any]:
    """The `shift.json` dict: `{"policies": {name: {family: curves + "fit"}}, ...}`."""
    if episodes < 1:
        raise InputError(f"--episodes: must be >= 1, got {episodes}")
    if not np.isfinite(radius) or radius <= 0:
        raise InputError(f"--track-radius: must be a finite number > 0, got {radius}")
    result: dict[str, Any] = {
        "seed": seed,
        "episodes": episodes,
        "families": list(families),
        "track_radius": radius,
        "instructions": instructions,
        "scene_seeds": {family: scene_seed(seed, family) for family in families},
        "policies": {},
    }
    jobs = [(name, family) for name in policies for family in families]
    bar = progress(jobs, desc="il shift", unit="batch", enabled=show_progress)
    for name, family in bar:
        bar.set_postfix_str(f"{name}/{family}")
        actor, family_seed = policies[name], scene_seed(seed, family)
        expert = roll_out(actor, family, episodes, family_seed, "expert", instructions)
        learner = roll_out(actor, family, episodes, family_seed, "actor", instructions)
        curves = shift_curves(learner, expert, radius)
        curves["fit"] = fit_shapes(
            curves["cumulative_disagreement"], curves["expert_horizon"], curves["eps_expert_states"]
        )
        result["policies"].setdefault(name, {})[family] = curves
    return result


# ----------------------------------------------------------------------------- 6. the command
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclass
class ShiftCommand:
    """Compounding error of imitation learning, measured (Ross, Gordon & Bagnell 2011): each policy
    and the scripted expert roll out from the same seeded initial states; on the policy's own
    states the expert says what it would do. Writes OUT/shift.json (per policy, family and step:
    action disagreement, distance from the expert's path, fraction on track, success within t
    steps) and OUT/shift.png (the curves, with fitted eps*T and eps*T^2 shapes)."""

    policies: tuple[str, ...]
    """the policies as NAME=CHECKPOINT pairs, e.g. bc-100=runs/a dagger=runs/d/checkpoints/last
    (a run directory, meaning its checkpoints/last; a checkpoint step directory, its `last`
    link, or a pretrained_model/ folder)"""
    out: Path = Path("runs/shift")
    """output directory for shift.json and shift.png"""
    tasks: tuple[str, ...] = ("push", "pick_place")
    """task families: reach, push, pick_place, sort (or suite)"""
    episodes: int = 100
    """seeded episodes per family (the same initial states for every policy)"""
    seed: int = SHIFT_SEED
    """base seed of the initial states (each family adds its fixed offset); the default range is
    disjoint from the demonstrations', the validation rollouts' and the final evaluation's"""
    track_radius: float = 0.1
    """an episode is on track at step t while its tracked state (gripper and target objects,
    stacked x, y in table units) has stayed within this distance of the expert's path"""
    instructions: str = "train"
    """instruction templates: train | heldout | ko | ko_heldout"""
    overwrite: bool = False
    """replace an existing OUT/shift.json and OUT/shift.png"""
    progress: bool = True
    """show a progress bar (--no-progress: none)"""


def parse_policies(pairs: tuple[str, ...] | list[str]) -> dict[str, Path]:
    """`NAME=CHECKPOINT` strings -> {name: path}; InputError names a bad pair or a repeated
    name, MissingError a checkpoint path that does not exist."""
    if not pairs:
        raise InputError("--policies: give at least one NAME=CHECKPOINT pair")
    parsed: dict[str, Path] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not NAME_PATTERN.match(name) or not path:
            raise InputError(
                f"--policies: {pair!r} is not NAME=CHECKPOINT (NAME of letters, digits, _.+-)"
            )
        if name in parsed:
            raise InputError(f"--policies: the name {name!r} is given twice")
        if not Path(path).exists():
            raise MissingError(f"--policies: checkpoint {path!r} of {name!r} does not exist")
        run_last = Path(path) / CHECKPOINTS_DIR / LAST_LINK  # a run directory: its last one
        parsed[name] = run_last if run_last.exists() else Path(path)
    return parsed


def check_command(command: ShiftCommand) -> tuple[dict[str, Path], tuple[str, ...]]:
    """Every option checked before anything is loaded or written."""
    paths = parse_policies(command.policies)
    try:
        families = parse_tasks(list(command.tasks))
    except InputError as error:
        raise InputError(f"--tasks: {error}; choose from {list(TASK_FAMILIES)}") from error
    try:
        resolve_templates(command.instructions, families)
    except InputError as error:
        raise InputError(f"--{error}") from error
    if command.episodes < 1:
        raise InputError(f"--episodes: must be >= 1, got {command.episodes}")
    if not np.isfinite(command.track_radius) or command.track_radius <= 0:
        raise InputError(f"--track-radius: must be a finite number > 0, got {command.track_radius}")
    if command.out.exists() and not command.out.is_dir():
        raise InputError(f"--out: {command.out} exists and is not a directory")
    written = [command.out / name for name in (RESULT_FILE, PLOT_FILE)]
    if any(path.exists() for path in written) and not command.overwrite:
        raise ExistsError(f"--out: {command.out / RESULT_FILE} already exists; pass --overwrite")
    return paths, families


def run(command: ShiftCommand) -> dict[str, Any]:
    """Load the policies, measure, write OUT/shift.json and OUT/shift.png; returns the result."""
    from nanovla.eval.collect import load_actor  # torch only once the options are good
    from nanovla.il.shift_report import check_matplotlib, plot_shift

    paths, families = check_command(command)
    check_matplotlib()
    actors = {name: load_actor(path) for name, path in paths.items()}
    result = measure(
        actors, families, command.episodes, command.seed, command.track_radius,
        command.instructions, command.progress,
    )  # fmt: skip
    result["checkpoints"] = {name: str(path) for name, path in paths.items()}
    plot_shift(result, command.out / PLOT_FILE)
    result["plot"] = str(command.out / PLOT_FILE)
    write_json(command.out / RESULT_FILE, result)
    return result


def main(argv: list[str]) -> int:
    """Entry point of `nanovla il shift`."""
    command = tyro.cli(
        ShiftCommand, args=argv, prog="nanovla il shift", description=ShiftCommand.__doc__
    )
    from nanovla.il.shift_report import format_table

    result = run(command)
    print(format_table(result))
    print(f"wrote {command.out / RESULT_FILE} and {result['plot']}", file=sys.stdout)
    return 0
