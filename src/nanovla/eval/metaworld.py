"""Meta-World: record expert demonstrations, and evaluate with the benchmark's protocol.

Protocol (as `metaworld.evaluation.evaluation` for MT10): an episode succeeds if
`info["success"]` is 1 at any step within the time limit (500 steps; the episode stops there);
50 episodes per task; the per-task success rate, and their mean. Here the 50 episodes of a
task are the 50 goal configurations of `metaworld.MT1(task, seed)` (see `nanovla.envs.metaworld`
for why), each rate is reported with its 95% Wilson interval, and `eval.json` holds

    {"episodes_per_task": int, "per_task": {task: float}, "success": float, ...details}

Seeds: demonstrations use goal seeds from `COLLECT_SEED` (default 0) upwards, one seed per 50
episodes of a task; evaluation uses `EVAL_SEED` (1000): the policy is judged on goal
configurations it never saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nanovla.envs.metaworld import ACTION_NAMES, goals_for, instruction
from nanovla.errors import InputError
from nanovla.eval.metaworld_rollout import Actor, EpisodeRecord, run_episodes
from nanovla.eval.stats import wilson_interval

COLLECT_SEED = 0
EVAL_SEED = 1000
FPS = 80
"""Meta-World's control rate: MuJoCo timestep 2.5 ms x frame_skip 5 = 12.5 ms per step"""


def evaluate_metaworld(
    actor: Actor | None,
    tasks: tuple[str, ...],
    episodes: int = 50,
    seed: int = EVAL_SEED,
    num_envs: int = 10,
    max_steps: int | None = None,
    progress: bool = True,
    desc: str = "eval",
) -> dict[str, Any]:
    """Success per task of `actor` (None = the scripted experts) on seeded goal configurations."""
    goals = [goal for task in tasks for goal in goals_for(task, episodes, seed)]
    records = run_episodes(
        goals, actor, num_envs=num_envs, max_steps=max_steps, progress=progress, desc=desc
    )
    return summarize(records, tasks, episodes, seed, max_steps)


def summarize(
    records: list[EpisodeRecord],
    tasks: tuple[str, ...],
    episodes: int,
    seed: int,
    max_steps: int | None,
) -> dict[str, Any]:
    """The eval.json dict of finished episodes."""
    details: dict[str, dict[str, Any]] = {}
    for task in tasks:
        mine = [r for r in records if r.task == task]
        wins = sum(r.success for r in mine)
        lo, hi = wilson_interval(wins, len(mine))
        steps = [r.steps for r in mine if r.success]
        details[task] = {
            "instruction": instruction(task),
            "successes": wins,
            "episodes": len(mine),
            "ci95": [round(lo, 4), round(hi, 4)],
            "mean_steps_to_success": round(float(np.mean(steps)), 1) if steps else None,
        }
    wins, total = sum(d["successes"] for d in details.values()), len(records)
    lo, hi = wilson_interval(wins, total)
    per_task = {task: d["successes"] / d["episodes"] for task, d in details.items()}
    return {
        "episodes_per_task": episodes,
        "per_task": per_task,
        "success": float(np.mean(list(per_task.values()))),
        "ci95": [round(lo, 4), round(hi, 4)],
        "successes": wins,
        "episodes": total,
        "seed": seed,
        "max_steps": max_steps or 500,
        "tasks": details,
    }


def format_table(result: dict[str, Any], title: str = "policy") -> str:
    """A per-task table: rate, 95% Wilson interval, successes/episodes; the mean last."""
    width = max(len("task"), *(len(task) for task in result["tasks"]))
    header = f"{'task':<{width}}  {title:>8}  95% Wilson CI   (successes/episodes)"
    lines = [header, "-" * len(header)]
    for task, detail in result["tasks"].items():
        lo, hi = detail["ci95"]
        lines.append(
            f"{task:<{width}}  {result['per_task'][task]:>8.2f}  [{lo:.2f}, {hi:.2f}]    "
            f"({detail['successes']}/{detail['episodes']})"
        )
    lo, hi = result["ci95"]
    lines.append(
        f"{'mean':<{width}}  {result['success']:>8.2f}  [{lo:.2f}, {hi:.2f}]    "
        f"({result['successes']}/{result['episodes']})"
    )
    lines.append(
        f"{result['episodes_per_task']} episodes per task, goal seed {result['seed']}, "
        f"success at any step within {result['max_steps']} steps"
    )
    return "\n".join(lines)


def record_demonstrations(
    out: Path,
    tasks: tuple[str, ...],
    episodes: int,
    seed: int = COLLECT_SEED,
    noise: float = 0.0,
    image_size: int = 0,
    num_envs: int = 10,
    max_steps: int | None = None,
    keep_failures: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Record `episodes` expert episodes per task into a LeRobot v3.0 dataset at `out`.

    `observation.state` = the 39-d observation, `action` = the expert's action for it, `task` =
    the instruction; camera frames only with `image_size` > 0 (slow: an offscreen render each
    step). Failed expert episodes are dropped unless `keep_failures`. Returns a summary.
    """
    from nanovla.data.state_dataset import StateDatasetWriter, state_episode
    from nanovla.data.writer import DatasetWriter, Episode

    if seed >= EVAL_SEED or seed + (episodes + 49) // 50 > EVAL_SEED:
        raise InputError(
            f"--seed {seed} with --episodes {episodes} reaches the evaluation goal seeds "
            f"({EVAL_SEED}+); use a seed below {EVAL_SEED - (episodes + 49) // 50}"
        )
    goals = [goal for task in tasks for goal in goals_for(task, episodes, seed)]
    records = run_episodes(
        goals, None, num_envs=num_envs, max_steps=max_steps, noise=noise, seed=seed,
        record=True, image_size=image_size, progress=progress, desc="record",
    )  # fmt: skip
    source = {
        "simulator": "metaworld",
        "tasks": list(tasks),
        "episodes_per_task": episodes,
        "goal_seed": seed,
        "expert_noise": noise,
        "image_size": image_size,
    }
    writer_type = DatasetWriter if image_size > 0 else StateDatasetWriter
    writer = writer_type(
        out, FPS, robot_type="sawyer", overwrite=overwrite,
        names={"observation.state": _state_names(), "action": list(ACTION_NAMES)},
        source=source,
    )  # fmt: skip
    kept = [r for r in records if r.success or keep_failures]
    if not kept:
        raise InputError("no successful expert episode to record (raise --max-steps?)")
    for r in kept:
        if image_size > 0:
            writer.add_episode(Episode(r.images, r.states, r.actions, instruction(r.task)))
        else:
            writer.add_episode(state_episode(r.states, r.actions, instruction(r.task)))
    writer.source["dropped_failures"] = len(records) - len(kept)
    writer.finalize()
    return {
        "episodes": len(kept),
        "frames": sum(len(r.states) for r in kept),
        "dropped_failures": len(records) - len(kept),
        "expert_success": {
            t: float(np.mean([r.success for r in records if r.task == t])) for t in tasks
        },
    }


def _state_names() -> list[str]:
    """Names of the 39 observation entries (Meta-World's layout)."""
    now = ["hand_x", "hand_y", "hand_z", "gripper"]
    now += [f"obj1_{k}" for k in ("x", "y", "z", "qw", "qx", "qy", "qz")]
    now += [f"obj2_{k}" for k in ("x", "y", "z", "qw", "qx", "qy", "qz")]
    return now + [f"prev_{name}" for name in now] + ["goal_x", "goal_y", "goal_z"]


def side_by_side(policy: dict[str, Any], expert: dict[str, Any] | None) -> str:
    """The policy's per-task table, with the experts' column when given."""
    table = format_table(policy, "policy")
    if expert is None:
        return table
    lines = table.split("\n")
    lines[0] += "   expert"
    lines[1] = "-" * len(lines[0])
    for i, task in enumerate(policy["tasks"], start=2):
        lines[i] += f"   {expert['per_task'][task]:6.2f}"
    lines[2 + len(policy["tasks"])] += f"   {expert['success']:6.2f}"
    return "\n".join(lines)
