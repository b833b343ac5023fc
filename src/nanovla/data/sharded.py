"""Expert collection spread over processes: the episodes are recorded in shards, each shard
in its own seeded world, and joined in shard order.

One vectorized world draws the scenes of all its envs from one generator, so a world cannot be
split across processes without changing the data. Instead a collection with `shards` K > 1 is
defined as K independent collections: shard k records its share of the episodes (the first
`episodes % K` shards one more) with `num_envs` envs and world seed `seed + k * SHARD_SEED_STRIDE`
(shard 0 keeps `seed`; the stride keeps every shard's seed far above the evaluation's and the
validation's seed ranges). The dataset is a function of the options and K only: `workers` (how
many processes record the shards, torch.multiprocessing with the spawn method) changes the
speed, never the data, so `--workers 2` writes the same dataset as `--workers 1` (a test
compares them). Each shard's episodes are PNG-encoded in its process and handed back; the
parent writes the dataset once, atomically, as a one-process collection does.

Departure: only the scripted expert records shards (a policy-driven collection stays in one
process); video storage is refused with shards.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nanovla.data.writer import DatasetWriter
from nanovla.errors import InputError

SHARD_SEED_STRIDE = 1_000_003
"""world-seed distance between two shards (a prime above every evaluation seed range)"""


def shard_sizes(episodes: int, shards: int) -> list[int]:
    """Episodes of each shard: as equal as possible, the first ones one more."""
    base, rest = divmod(episodes, shards)
    return [base + (1 if k < rest else 0) for k in range(shards)]


def _record_shard(config: Any, shard: int, episodes: int) -> tuple[DatasetWriter, Any]:
    """Record one shard in this process; returns its (unfinalized) writer and report."""
    from nanovla.data.recording import DEFAULT_FPS, record_episodes
    from nanovla.world import make_world

    torch.set_num_threads(1)
    seed = config.seed + shard * SHARD_SEED_STRIDE
    tasks = config.task.split(",") if "," in config.task else config.task
    world = make_world(
        tasks, num_envs=config.num_envs, image_size=config.image_size, seed=seed,
        instructions=config.instructions, targets=config.targets,
        expert_noise=config.expert_noise,
    )  # fmt: skip
    writer = DatasetWriter(config.out, fps=int(getattr(world, "fps", DEFAULT_FPS)), overwrite=True)
    attempts = int(np.ceil(config.max_attempts_per_episode * episodes)) + config.num_envs
    report = record_episodes(
        world, writer, episodes, keep_failures=config.keep_failures, seed=seed,
        max_attempts=attempts, progress=False,
    )  # fmt: skip
    return writer, report


def _shard_job(args: tuple[Any, int, int]) -> tuple[DatasetWriter, Any]:
    return _record_shard(*args)


def record_shards(config: Any, writer: DatasetWriter) -> Any:
    """Record `config.shards` shards over `config.workers` processes into `writer` (in shard
    order); returns the summed `CollectReport`."""
    from nanovla.data.recording import CollectReport

    if config.video:
        raise InputError("--shards > 1 stores frames as PNG; drop --video or use --shards 1")
    sizes = shard_sizes(config.episodes, config.shards)
    jobs = [(config, k, n) for k, n in enumerate(sizes) if n > 0]
    workers = min(config.workers, len(jobs))
    if workers <= 1:
        results = [_shard_job(job) for job in jobs]
    else:
        context = torch.multiprocessing.get_context("spawn")
        with context.Pool(workers) as pool:
            results = pool.map(_shard_job, jobs)
    total = CollectReport()
    for (_, shard, _), (part, report) in zip(jobs, results, strict=True):
        writer.absorb(part)
        for name in ("episodes", "frames", "attempts", "successes"):
            setattr(total, name, getattr(total, name) + getattr(report, name))
        total.seconds = max(total.seconds, report.seconds)
        for family, (wins, tries) in report.per_family.items():
            old = total.per_family.setdefault(family, [0, 0])
            total.per_family[family] = [old[0] + wins, old[1] + tries]
        print(f"collect: shard {shard}: {report.summary()}")
    return total


def sharded_source(source: dict[str, Any], config: Any) -> dict[str, Any]:
    """The info.json record of a sharded collection (how its seeds were derived)."""
    return {**source, "shards": config.shards, "shard_seed_stride": SHARD_SEED_STRIDE}
