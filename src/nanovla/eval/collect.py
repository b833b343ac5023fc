"""`nanovla collect`: record expert, DART or policy rollouts of the world as a LeRobotDataset v3.0.

Without `--policy` the scripted expert drives (DART-perturbed with `--expert-noise`). With
`--policy CHECKPOINT` the checkpoint's policy drives and the expert labels every state it visits:
the `action` column is the expert's action, the data DAgger aggregates. The recording itself
(`nanovla.data.collect`) knows the world and the format only; loading a checkpoint lives here,
above the models. torch is imported only when `--policy` is given. `--video` stores the frames
as MP4 in LeRobot v3.0's video layout (`nanovla.data.video`) instead of PNG in the parquet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro

from nanovla.data.collect import CollectConfig, check_config, collect
from nanovla.data.recording import Actor
from nanovla.errors import MissingError


@dataclass
class CollectCommand(CollectConfig):
    """Record rollouts in the embedded world. Options you will most likely change come first."""

    policy: Path | None = None
    """checkpoint (runs/RUN/checkpoints/last, a step directory or its pretrained_model/) whose
    actions drive the rollouts instead of the expert; the recorded `action` stays the expert's
    label for each visited state (DAgger data)"""


def load_actor(path: Path) -> Actor:
    """The policy saved at `path` (a checkpoint step dir, its `last` link or `pretrained_model/`)
    as a rollout actor, in eval mode. MissingError names `path` when it holds no checkpoint."""
    from nanovla.models.policy import Policy  # heavy imports only on this path
    from nanovla.train.checkpoint import pretrained_dir

    return Policy.from_pretrained(pretrained_dir(path))


def run(command: CollectCommand) -> Path:
    """Record the dataset `command` describes; returns its directory."""
    check_config(command)  # before loading a checkpoint: a bad --out fails fast
    if command.policy is not None and not Path(command.policy).is_dir():
        raise MissingError(f"{command.policy}: --policy checkpoint directory not found")
    actor = None if command.policy is None else load_actor(command.policy)
    return collect(command, actor)


def main(argv: list[str]) -> int:
    """`nanovla collect ...`"""
    command = tyro.cli(
        CollectCommand, args=argv, prog="nanovla collect", description=__doc__.split("\n\n")[0]
    )
    run(command)
    return 0
