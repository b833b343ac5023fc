"""Loader throughput: is batching nearly free next to a small CNN's forward + backward?

Writes a synthetic dataset (64x64 frames) to a temp dir, loads it, then measures
  1. BatchLoader batches/s (batch 64, chunk 4) without and with random-shift augmentation,
  2. a small seed-shaped CNN policy's forward+backward samples/s on one preloaded batch,
  3. the same training step fed by the loader, and the ratio (3)/(2) (target >= 0.95).

Run: `.venv/bin/python benchmarks/loader_throughput.py [--episodes 60 --threads 2]`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn
import tyro

from nanovla.data import BatchLoader, EpisodeDataset, write_dataset
from nanovla.data.synthetic import synthetic_episodes


@dataclass
class Args:
    """Loader throughput benchmark."""

    episodes: int = 60
    """synthetic episodes to write (40-60 frames each)"""
    batch_size: int = 64
    """frames per batch"""
    chunk: int = 4
    """actions per frame"""
    shift: int = 4
    """random-shift pixels for the augmented run"""
    steps: int = 20
    """timed training steps per measurement"""
    repeats: int = 5
    """alternating (pure, loader-fed) measurements; medians are reported (robust to a busy machine)"""
    threads: int = 1
    """torch intra-op threads (1: figures that hold on a shared machine; 2: the default run)"""
    clock: Literal["process", "wall"] = "process"
    """`process`: CPU seconds of this process (robust when other jobs share the cores; with
    threads=1 it is the time an idle core would take); `wall`: elapsed seconds"""


class SmallPolicy(nn.Module):
    """The seed's VisionEncoder shape (3 strided convs) + state MLP -> action chunk."""

    def __init__(self, state_dim: int, action_dim: int, chunk: int) -> None:
        super().__init__()
        self.vision = nn.Sequential(
            nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Sequential(
            nn.Linear(64 + state_dim, 256), nn.ReLU(), nn.Linear(256, chunk * action_dim)
        )
        self.shape = (chunk, action_dim)

    def loss(self, batch: dict) -> torch.Tensor:
        image = batch["observation.image"].float().div_(255)  # (B, 3, H, W)
        features = torch.cat([self.vision(image), batch["observation.state"]], dim=1)  # (B, 64+D)
        pred = torch.tanh(self.head(features)).view(-1, *self.shape)  # (B, k, A)
        error = nn.functional.smooth_l1_loss(pred, batch["action"], reduction="none").mean(-1)
        return (error * ~batch["action_is_pad"]).mean()


CLOCKS = {"process": time.process_time, "wall": time.perf_counter}


def timed(fn, steps: int, clock: str) -> float:
    """Seconds per call of `fn` after 5 warm-up calls, on `clock` (see Args.clock)."""
    now = CLOCKS[clock]
    for _ in range(5):
        fn()
    start = now()
    for _ in range(steps):
        fn()
    return (now() - start) / steps


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        episodes = synthetic_episodes(args.episodes, lengths=(40, 60), image_size=64, seed=0)
        start = time.perf_counter()
        root = write_dataset(Path(tmp) / "ds", episodes, fps=10)
        written = time.perf_counter() - start
        start = time.perf_counter()
        dataset = EpisodeDataset(root, progress=False)
        loaded = time.perf_counter() - start
    print(f"torch threads {args.threads}, {args.clock} clock")
    print(
        f"dataset: {dataset.num_frames} frames 64x64; write {dataset.num_frames / written:.0f} "
        f"frames/s, load+decode {dataset.num_frames / loaded:.0f} frames/s"
    )
    loader = BatchLoader(dataset, args.batch_size, chunk=args.chunk, split="all")
    augmented = BatchLoader(
        dataset, args.batch_size, chunk=args.chunk, split="all", augment_shift=args.shift
    )
    for name, source in (("plain", loader), (f"shift {args.shift}", augmented)):
        seconds = statistics.median(
            timed(source.next_batch, 100, args.clock) for _ in range(args.repeats)
        )
        print(
            f"loader ({name}): {1 / seconds:,.0f} batches/s = {1e3 * seconds:.3f} ms per batch of {args.batch_size}"
        )

    policy = SmallPolicy(dataset.state_dim, dataset.action_dim, args.chunk)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    fixed = augmented.next_batch()

    def train_step(batch: dict) -> None:
        optimizer.zero_grad(set_to_none=True)
        policy.loss(batch).backward()
        optimizer.step()

    pure_rates, fed_rates = [], []
    for _ in range(args.repeats):  # alternate, so load changes on a shared machine hit both alike
        pure_rates.append(
            args.batch_size / timed(lambda: train_step(fixed), args.steps, args.clock)
        )
        fed_rates.append(
            args.batch_size
            / timed(lambda: train_step(augmented.next_batch()), args.steps, args.clock)
        )
    ratios = [fed / pure for fed, pure in zip(fed_rates, pure_rates)]
    print(f"forward+backward on a preloaded batch: {statistics.median(pure_rates):,.0f} samples/s")
    print(
        f"training step fed by the loader (shift {args.shift}): {statistics.median(fed_rates):,.0f} samples/s"
    )
    print(
        f"ratio loader-fed / pure: median {statistics.median(ratios):.3f} over {args.repeats} pairs "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f}; target >= 0.95)"
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
