"""Training throughput of the default VLA policy: is the data path nearly free?

Records a small expert dataset in the embedded world (or uses --dataset), then measures, in
alternating rounds so both see the same machine load:
  1. loader-fed training: `BatchLoader.next_batch()` (random shift and colour swap on) + forward +
     backward + clip + fused AdamW step — exactly the engine's per-step work;
  2. pure compute: the same step on batches preloaded in memory (no loader);
and prints samples/s of each, their ratio (target >= 0.95) and the loader's own batches/s.
The engine's own logged `train/samples_per_s` over a short `Trainer.fit()` is printed too.

The policy, the task families and the autocast precision are the default `nanovla train` run's
(`--amp none` / `--amp bf16` measures the other precision).

Run: `.venv/bin/python benchmarks/train_throughput.py [--threads 2 --rounds 8]`.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from nanovla.data import BatchLoader, EpisodeDataset
from nanovla.data.collect import CollectConfig, collect
from nanovla.models.policy import Policy, PolicyConfig
from nanovla.pipeline import TrainCommand, default_policy_config
from nanovla.train import TrainConfig, Trainer, build_optimizer


@dataclass
class Args:
    """Training throughput benchmark."""

    dataset: Path | None = None
    """an existing dataset; default: record --episodes expert episodes into a temp dir"""
    episodes: int = 120
    """expert episodes to record when no --dataset is given"""
    batch_size: int = 64
    """frames per batch (the default run's)"""
    augment_shift: int = 2
    """random-shift augmentation of the loader-fed run (the default run's)"""
    color_swap: float = TrainCommand().color_swap
    """colour-swap probability of the loader-fed run (data/color_swap.py; the default run's)"""
    ko_scramble: float = TrainCommand().ko_scramble
    """Korean scrambling probability of the loader-fed run (data/scramble.py; the default run's)"""
    steps: int = 20
    """training steps per timed block"""
    rounds: int = 8
    """alternating (loader-fed, pure) blocks; medians are reported"""
    threads: int = 2
    """torch intra-op threads"""
    amp: str = TrainCommand().train.amp
    """autocast precision of the step: none | bf16 (default: the default run's)"""
    frame_cache: str = "memory"
    """decoded frames in memory (the loader keeps a padded copy) or memmap (a file beside the
    dataset, batches read by pread: `data/frames.py`)"""
    tasks: tuple[str, ...] = TrainCommand().tasks
    """task families of the recorded dataset (default: the default run's)"""


AMP = {"bf16": True}  # set by main: whether the step runs under bf16 autocast


def _step(policy: Policy, optimizer: torch.optim.Optimizer, batch: dict) -> None:
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if AMP["bf16"] else None
    with autocast or contextlib.nullcontext():
        loss, _ = policy(batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _block(
    policy: Policy, optimizer: torch.optim.Optimizer, batches: Fed | Preloaded, steps: int
) -> float:
    """samples/s over `steps` steps; `batches` gives the next batch when called."""
    start = time.perf_counter()
    for _ in range(steps):
        _step(policy, optimizer, batches())
    return steps * batches.batch_size / (time.perf_counter() - start)


class Preloaded:
    """Cycles through batches already in memory: the 'pure compute' feed."""

    def __init__(self, loader: BatchLoader, count: int) -> None:
        self.items = [loader.next_batch() for _ in range(count)]
        self.batch_size, self.index = loader.batch_size, 0

    def __call__(self) -> dict:
        self.index = (self.index + 1) % len(self.items)
        return self.items[self.index]


class Fed:
    """Asks the loader for every batch: the training feed."""

    def __init__(self, loader: BatchLoader) -> None:
        self.loader, self.batch_size = loader, loader.batch_size

    def __call__(self) -> dict:
        return self.loader.next_batch()


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    AMP["bf16"] = args.amp == "bf16"
    scratch = Path(tempfile.mkdtemp(prefix="nanovla-bench-"))
    path = args.dataset or collect(
        CollectConfig(
            task=",".join(args.tasks),
            episodes=args.episodes,
            out=scratch / "data",
            progress=False,
        )
    )
    dataset = EpisodeDataset(path, cache=args.frame_cache, progress=False)
    config = default_policy_config()  # the default `nanovla train` policy
    loader = BatchLoader(
        dataset,
        args.batch_size,
        chunk=config.chunk,
        augment_shift=args.augment_shift,
        color_swap=args.color_swap,
        ko_scramble=args.ko_scramble,
    )
    policy = Policy.from_dataset(config, dataset).train()
    optimizer = build_optimizer(policy, 1e-3, 0.01, (0.9, 0.999))
    fed, pure = Fed(loader), Preloaded(loader, 16)
    for _ in range(5):  # warm-up: allocator, oneDNN kernels
        _step(policy, optimizer, fed())
    fed_rates, pure_rates = [], []
    for _ in range(args.rounds):
        fed_rates.append(_block(policy, optimizer, fed, args.steps))
        pure_rates.append(_block(policy, optimizer, pure, args.steps))
    start = time.perf_counter()
    for _ in range(200):
        loader.next_batch()
    loader_rate = 200 / (time.perf_counter() - start)
    engine_rate = _engine_rate(dataset, config, args, scratch)

    fed_median, pure_median = statistics.median(fed_rates), statistics.median(pure_rates)
    n_params = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s); default policy "
        f"({n_params / 1e3:.0f}k params), batch {args.batch_size}, "
        f"{dataset.image_shape[0]}x{dataset.image_shape[1]}, chunk {config.chunk}, "
        f"shift {args.augment_shift}, colour swap {args.color_swap}, amp {args.amp}, frames {args.frame_cache}; median of {args.rounds} alternating blocks of "
        f"{args.steps} steps"
    )
    print(f"{'feed':<34}{'samples/s':>12}")
    print(f"{'loader-fed training step':<34}{fed_median:>12.0f}")
    print(f"{'pure fwd+bwd+step (preloaded)':<34}{pure_median:>12.0f}")
    print(f"{'ratio loader-fed / pure':<34}{fed_median / pure_median:>12.3f}")
    print(f"{'loader alone (batches/s)':<34}{loader_rate:>12.0f}")
    print(f"{'Trainer.fit logged train/samples_per_s':<34}{engine_rate:>6.0f}")


def _engine_rate(dataset: EpisodeDataset, config: PolicyConfig, args: Args, scratch: Path) -> float:
    """The engine's own figure: median logged samples/s over a short run."""
    loader = BatchLoader(
        dataset,
        args.batch_size,
        chunk=config.chunk,
        augment_shift=args.augment_shift,
        color_swap=args.color_swap,
    )
    policy = Policy.from_dataset(config, dataset)
    train = TrainConfig(
        steps=6 * args.steps,
        warmup_steps=1,
        log_every=args.steps,
        num_threads=args.threads,
        amp=args.amp,
        progress=False,
        tensorboard=False,
    )
    Trainer(policy, loader, train, scratch / "run").fit()
    lines = (scratch / "run" / "logs" / "metrics.jsonl").read_text().splitlines()
    rates = [json.loads(line)["train/samples_per_s"] for line in lines]
    return statistics.median(rates[1:])  # the first window includes warm-up


if __name__ == "__main__":
    main(tyro.cli(Args))
