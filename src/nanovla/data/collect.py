"""`collect` and `CollectConfig`: record the world's rollouts as a LeRobotDataset v3.0 (`nanovla
collect`; the command lives in `nanovla.eval.collect`, which adds `--policy`).

The rollout loop itself (auto-reset buffers, the three drivers, episodes kept in start order)
is `data/recording.record_episodes`; this module checks the options, opens the writer (one
process, or `--shards` over `--workers`, `data/sharded.py`) and finalizes the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nanovla.data.recording import DEFAULT_FPS, Actor, CollectReport, record_episodes
from nanovla.data.video import VideoOptions
from nanovla.data.writer import DatasetWriter, remove_unfinished
from nanovla.errors import ExistsError, InputError


@dataclass
class CollectConfig:
    """Record rollouts in the embedded world. Options you will most likely change come first."""

    task: str = "suite"
    """task family (reach, push, pick_place, sort), `suite`, or a comma-separated list of families"""
    episodes: int = 300
    """episodes to write (exactly this many are kept)"""
    out: Path = Path("data/suite")
    """dataset directory to create (LeRobotDataset v3.0 layout)"""
    num_envs: int = 32
    """parallel environments; more is faster until the 2 CPU cores are busy"""
    image_size: int = 64
    """camera frames are image_size x image_size RGB"""
    instructions: str = "train+ko"
    """instruction set: train | heldout | ko | ko_heldout | train+ko"""
    targets: str = "all"
    """target (kind, color) combos: all | train (never the held-out combos, so an evaluation
    with targets=heldout is a compositional test) | heldout"""
    seed: int = 0
    """seed of the world's initial states and of the motion noise (same seed, same dataset)"""
    expert_noise: float = 0.0
    """DART (noise injected while demonstrating): std of Gaussian noise added to the expert's
    executed motion (dx, dy); the recorded label stays the clean expert action, so the
    demonstrations show how to recover from off-course states"""
    keep_failures: bool = False
    """keep unsuccessful episodes too (by default only successful ones are written)"""
    overwrite: bool = False
    """replace an existing dataset at --out"""
    video: bool = False
    """store the camera frames as MP4 files under videos/ (LeRobot v3.0's video feature, H.264
    4:4:4; see nanovla.data.video) instead of PNG inside the parquet"""
    frame_cache: bool = False
    """also write the decoded-frame cache (cache/<image key>.uint8.npy, what a memmap load
    decodes the PNGs into) from the frames in hand, so the first memmap load decodes nothing
    (`nanovla train` does this for its demonstrations); refused with --video or --shards > 1"""
    max_attempts_per_episode: float = 5.0
    """give up after this many finished rollouts per requested episode (a policy that never succeeds)"""
    progress: bool = True
    """show a progress bar over kept episodes"""
    shards: int = 1
    """record the episodes as this many independently seeded shards (expert only; see
    nanovla.data.sharded): the dataset depends on --shards, never on --workers"""
    workers: int = 1
    """processes that record the shards (with --shards > 1)"""


def check_config(config: CollectConfig) -> None:
    """Raises InputError / ExistsError naming the option of `config` that is wrong."""
    if config.episodes < 1:
        raise InputError(f"--episodes must be >= 1, got {config.episodes}")
    if config.num_envs < 1:
        raise InputError(f"--num-envs must be >= 1, got {config.num_envs}")
    if config.image_size < 8:
        raise InputError(f"--image-size must be >= 8, got {config.image_size}")
    if config.expert_noise < 0:
        raise InputError(f"--expert-noise must be >= 0, got {config.expert_noise}")
    if config.shards < 1 or config.workers < 1:
        raise InputError(
            f"--shards and --workers must be >= 1, got {config.shards}, {config.workers}"
        )
    if config.frame_cache and (config.video or config.shards > 1):
        given = "--video" if config.video else f"--shards {config.shards}"
        raise InputError(
            f"--frame-cache needs the frames in hand while recording: not with {given} (drop "
            "one of them; a memmap load decodes the frames into the cache the first time)"
        )
    if config.max_attempts_per_episode <= 0:
        raise InputError(
            f"--max-attempts-per-episode must be > 0, got {config.max_attempts_per_episode}"
        )
    if Path(config.out).exists() and not config.overwrite:
        raise ExistsError(f"{config.out}: already exists; pass --overwrite to replace it")


def collect_with_report(
    config: CollectConfig, actor: Actor | None = None
) -> tuple[Path, CollectReport]:
    """Build the world, record `config.episodes` episodes to `config.out` (driven by `actor`, or
    the expert when None); returns (path, report).

    Nothing reaches `config.out` before every episode is recorded (see `DatasetWriter`), so a
    killed collection leaves no dataset there; the next one removes what it left beside
    `config.out` and says that it starts clean (collection does not resume part-way: it is
    seeded, so recording again gives the same dataset).
    """
    existed = Path(config.out).exists()
    unfinished = remove_unfinished(config.out)
    if unfinished:
        names = ", ".join(path.name for path in unfinished)
        back = not existed and Path(config.out).exists()
        restored = " and restored the dataset it was replacing" if back else ""
        print(
            f"collect: {config.out}: removed what an interrupted collection left ({names})"
            f"{restored}; starting clean"
        )
    check_config(config)
    from nanovla.world import make_world

    tasks = config.task.split(",") if "," in config.task else config.task
    world = make_world(
        tasks,
        num_envs=config.num_envs,
        image_size=config.image_size,
        seed=config.seed,
        instructions=config.instructions,
        targets=config.targets,
        expert_noise=config.expert_noise,
    )
    from nanovla.world.experts import EXPERT_VERSION

    source = {
        "families": list(world.families),
        "instructions": config.instructions,
        "targets": config.targets,
        "seed": config.seed,
        "expert_noise": config.expert_noise,
        "expert_version": EXPERT_VERSION,
        "driver": "expert" if actor is None else "actor",
    }
    writer = DatasetWriter(
        config.out,
        fps=int(getattr(world, "fps", DEFAULT_FPS)),
        overwrite=config.overwrite,
        source=source,
        video=VideoOptions() if config.video else None,
        frame_cache=config.frame_cache,
    )
    if config.shards > 1:  # over --workers processes (nanovla.data.sharded)
        from nanovla.data.sharded import record_shards, sharded_source

        if actor is not None:
            raise InputError("--shards > 1 records the expert only; drop --shards for a policy")
        writer.source = sharded_source(writer.source, config)
        report = record_shards(config, writer)
        return writer.finalize(), report
    max_attempts = int(np.ceil(config.max_attempts_per_episode * config.episodes)) + config.num_envs
    report = record_episodes(
        world,
        writer,
        config.episodes,
        actor=actor,
        keep_failures=config.keep_failures,
        seed=config.seed,
        max_attempts=max_attempts,
        progress=config.progress,
    )
    return writer.finalize(), report


def collect(config: CollectConfig, actor: Actor | None = None) -> Path:
    """Record a dataset as `config` says (driven by `actor`, or the expert when None), print a
    one-line summary; returns its directory."""
    path, report = collect_with_report(config, actor)
    print(f"collect: wrote {path}: {report.summary()}")
    return path
