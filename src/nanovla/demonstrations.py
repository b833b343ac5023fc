"""The demonstrations of `nanovla train`: their cache key, their recording, and what a given
`--dataset` really holds.

`dataset_dir` keys the default cache `data/<tasks>-<episodes>ep-<hash>` on every collection
option (and the expert's version, so a changed expert never reuses old demonstrations);
`ensure_dataset` records them there once; `reconcile_dataset` lets an explicit `--dataset` win
over the options that describe it. Used by `nanovla.pipeline` (and the report, for the dataset
summary).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from nanovla.constants import INFO_PATH
from nanovla.errors import InputError, MissingError
from nanovla.train_command import TrainCommand


def dataset_dir(command: TrainCommand) -> Path:
    """Where the demonstrations for `command` live: given, or keyed by the collection options."""
    from nanovla.world.experts import EXPERT_VERSION

    if command.dataset is not None:
        return Path(command.dataset)
    key = {
        "tasks": list(command.tasks),
        "episodes": command.episodes,
        "instructions": command.instructions,
        "image_size": command.image_size,
        "expert_noise": command.expert_noise,
        "num_envs": command.collect_envs,
        "seed": command.seed,
        "expert_version": EXPERT_VERSION,
    }
    if command.targets != "all":  # (so caches recorded before the option existed still match)
        key["targets"] = command.targets
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return Path("data") / f"{'-'.join(command.tasks)}-{command.episodes}ep-{digest}"


def check_given_dataset(command: TrainCommand) -> None:
    """A `--dataset` that does not exist is a typo unless `--collect-missing` says otherwise."""
    path = command.dataset
    if path is None or command.collect_missing or (Path(path) / INFO_PATH).is_file():
        return
    if not Path(path).exists():
        raise MissingError(
            f"--dataset {path}: no dataset there; check the path, or add --collect-missing to "
            "record the demonstrations into it"
        )


def ensure_dataset(command: TrainCommand) -> Path:
    """Record the demonstrations unless a dataset already sits at `dataset_dir(command)`."""
    from nanovla.data.collect import CollectConfig, collect

    path = dataset_dir(command)
    if (path / INFO_PATH).is_file():
        if command.dataset is None:
            print(f"train: using cached demonstrations in {path}")
        return path
    if path.exists() and any(path.iterdir()):
        raise InputError(
            f"{path} exists but holds no {INFO_PATH}: not a dataset; remove it or pass --dataset"
        )
    check_given_dataset(command)
    return collect(
        CollectConfig(
            task=",".join(command.tasks),
            episodes=command.episodes,
            out=path,
            num_envs=command.collect_envs,
            image_size=command.image_size,
            instructions=command.instructions,
            targets=command.targets,
            seed=command.seed,
            expert_noise=command.expert_noise,
            progress=command.progress,
            frame_cache=frame_cache_mode(command) == "memmap",  # the PNGs need no decoding
        )
    )


def frame_cache_mode(command: TrainCommand) -> str:
    """Where the run keeps its decoded frames: --frame-cache, with "auto" meaning "memory"
    for --gpu-frames (frames for the GPU must be in memory) and "memmap" otherwise (RSS stays
    flat)."""
    if command.frame_cache != "auto":
        return command.frame_cache
    return "memory" if command.gpu_frames else "memmap"


def reconcile_dataset(command: TrainCommand, dataset: Any) -> TrainCommand:
    """`command` with what a given `--dataset` really holds (episodes, image size, families).

    An explicit dataset wins over the options that describe it: each difference is printed, and
    the returned command (saved as train_command.json) states the dataset's truth. Families are
    known when the dataset records them (`nanovla collect` writes them into meta/info.json).
    """
    if command.dataset is None:
        return command
    changes: dict[str, Any] = {}
    notes: list[str] = []
    if dataset.num_episodes != command.episodes:
        changes["episodes"] = dataset.num_episodes
        notes.append(f"{dataset.num_episodes} episodes (not --episodes {command.episodes})")
    height, width = dataset.image_shape[:2]  # (H, W, 3)
    if height != width:
        raise InputError(
            f"--dataset {command.dataset}: frames are {height}x{width}; the policy needs square images"
        )
    if height != command.image_size:
        changes["image_size"] = height
        notes.append(f"{height}x{width} frames (not --image-size {command.image_size})")
    recorded = dataset.info.get("nanovla", {}).get("families")
    if recorded and tuple(recorded) != tuple(command.tasks):
        changes["tasks"] = tuple(recorded)
        notes.append(f"families {', '.join(recorded)} (not --tasks {' '.join(command.tasks)})")
    if notes:
        print(
            f"train: --dataset {command.dataset} holds {'; '.join(notes)}: training on what it holds"
        )
    return dataclasses.replace(command, **changes)
