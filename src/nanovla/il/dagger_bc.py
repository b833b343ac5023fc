"""DAgger's equal-budget baselines: BC from new weights on expert demonstrations with as many
frames as a DAgger round labelled (`nanovla dagger --compare-bc`, `--bc-every-round`).

The demonstrations are seeded as round 0's, so they extend its episodes; each baseline trains
as many gradient steps as all DAgger rounds together and is evaluated on the same seeded
episodes. Rows go into rounds.json's `"bc"` list (sorted by frames, each with the `"round"`
whose frame count it matches); a resumed run trains only the missing ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nanovla.constants import EVAL_FILE, INFO_PATH
from nanovla.data.dataset import EpisodeDataset
from nanovla.il.dagger_command import DaggerCommand
from nanovla.il.training import TrainSpec, new_policy, seen_summary, train_and_evaluate
from nanovla.io import write_json
from nanovla.progress import note

DATA_DIR = "data"


def _bc_demonstrations(command: DaggerCommand, path: Path, frames: int, mean_length: float) -> None:
    """Expert demonstrations at `path` holding at least `frames` frames (seeded as round 0, so
    its episodes extend round 0's): collect, and collect more while short."""
    from nanovla.data.collect import CollectConfig, collect_with_report

    episodes = max(1, int(np.ceil(frames / mean_length)))
    while True:
        config = CollectConfig(
            task=",".join(command.tasks),
            episodes=episodes,
            out=path,
            num_envs=command.num_envs,
            image_size=command.image_size,
            instructions=command.instructions,
            seed=command.seed,
            overwrite=True,
            progress=command.progress,
        )
        _, report = collect_with_report(config)
        if report.frames >= frames:
            note(f"dagger: BC baseline: {report.summary()}")
            return
        episodes = int(np.ceil(episodes * frames / report.frames)) + 1


def bc_baseline(
    command: DaggerCommand,
    spec: TrainSpec,
    frames: int,
    steps: int,
    mean_length: float,
    round_index: int,
) -> dict:
    """BC from new weights on expert demonstrations of at least `frames` frames (the same
    seeded scenes as round 0, extended), trained for `steps` steps: the equal-budget baseline
    of round `round_index` (the last round's in OUT/bc, an earlier one's in OUT/bc-rKK)."""
    name = "bc" if round_index == command.rounds else f"bc-r{round_index:02d}"
    out = Path(command.out) / name
    if not (out / DATA_DIR / INFO_PATH).is_file():
        _bc_demonstrations(command, out / DATA_DIR, frames, mean_length)
    dataset = EpisodeDataset(out / DATA_DIR, cache="memory", progress=False)
    policy = new_policy(command.policy, command.image_size, dataset, command.seed)
    _, result, seconds = train_and_evaluate(
        spec, out / "train", policy, dataset, command.seed, steps
    )
    write_json(out / EVAL_FILE, result)
    seen = seen_summary(result)
    return {
        "method": "bc",
        "round": round_index,
        "episodes": dataset.num_episodes,
        "labelled_frames": dataset.num_frames,
        "steps": steps,
        "success": seen["success"],
        "ci95": seen["ci95"],
        "successes": seen["successes"],
        "eval_episodes": seen["episodes"],
        "per_task": seen["per_task"],
        "seconds": seconds,
    }


def bc_baselines(
    command: DaggerCommand, state: dict[str, Any], path: Path, spec: TrainSpec
) -> None:
    """The BC baselines still missing from `state["bc"]` (the last round's, and with
    --bc-every-round every earlier one's), each written to rounds.json when done."""
    if not command.compare_bc or command.checkpoint is not None:
        return
    wanted = range(command.rounds + 1) if command.bc_every_round else [command.rounds]
    done = {row.get("round", command.rounds) for row in state["bc"]}
    first = state["rounds"][0]
    mean_length = first["labelled_frames"] / first["episodes"]
    for round_index in [r for r in wanted if r not in done]:
        frames = state["rounds"][round_index]["labelled_frames"]
        row = bc_baseline(command, spec, frames, command.total_steps, mean_length, round_index)
        state["bc"].append(row)
        state["bc"].sort(key=lambda r: r["labelled_frames"])
        write_json(path, state)
