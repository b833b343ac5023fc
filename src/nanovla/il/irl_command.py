"""`nanovla irl --task reach|push --out DIR`: maximum-entropy IRL (`maxent_irl`) on the grid
abstraction of the tabletop (`irl_grid`), end to end.

`run` discretizes the scripted expert's demonstrations, fits the reward, plans with it, executes
the plan in the continuous world on the evaluation scenes `nanovla eval` uses, runs the
known-reward recovery check, and writes DIR/irl.json and DIR/reward.png (`plot_reward`); `main`
is the command's entry point.
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
from nanovla.il.irl_grid import (
    DEFAULT_HORIZON,
    RING_WIDTH,
    Demonstrations,
    GridMDP,
    build_mdp,
    check_task,
    expert_demonstrations,
    grid_edges,
    world_success,
)
from nanovla.il.maxent_irl import KNOWN_WEIGHTS, fit_reward, greedy_policy, known_reward_check
from nanovla.io import write_json
from nanovla.world.scene import ZONE_RECTS

DEFAULT_ITERATIONS = {"linear": 50, "mlp": 200}
"""optimizer steps of `nanovla irl` per reward model (L-BFGS iterations, Adam steps)"""
REWARD_FILE = "reward.png"
RESULT_FILE = "irl.json"


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


# ----------------------------------------------------------------------------- the command
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
