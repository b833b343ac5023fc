"""Training-step throughput of variants of the default policy, measured as ratios in one process.

Each variant (bf16 autocast, channels-last on, an 8-pixel stem giving an 8x8 grid instead of
16x16, word insertion off) gets its own policy, optimizer and loader on the same small expert dataset of the default
families; timed blocks of steps alternate between the variants, so each sees the same machine
load, and the median samples/s of each is printed with its ratio to the default. On a machine
shared with other jobs the absolute figures are contended; the ratios are what to read. A
`torch.profiler` table of the default step follows (`--profile`).

Run: `.venv/bin/python benchmarks/step_variants.py [--threads 1 --rounds 6]`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from nanovla.data import BatchLoader, EpisodeDataset
from nanovla.data.collect import CollectConfig, collect
from nanovla.models.policy import Policy
from nanovla.pipeline import TrainCommand, default_policy_config
from nanovla.train import build_optimizer


@dataclass
class Args:
    """Step throughput of policy / precision variants, alternating blocks."""

    episodes: int = 160
    """expert episodes recorded for the benchmark"""
    steps: int = 15
    """steps per timed block"""
    rounds: int = 6
    """alternating rounds; medians are reported"""
    threads: int = 1
    """torch intra-op threads"""
    profile: bool = True
    """print torch.profiler's table of 10 default steps"""


def variants() -> dict[str, tuple[object, str]]:
    """name -> (policy config, autocast precision)."""
    base = default_policy_config()
    return {
        "fp32 (default policy)": (base, "none"),
        "bf16 autocast": (base, "bf16"),
        "channels-last on": (dataclasses.replace(base, channels_last=True), "none"),
        "stem 8 (8x8 grid)": (dataclasses.replace(base, vision_stem_stride=8), "none"),
        "word insertion off": (dataclasses.replace(base, word_insertion=0.0), "none"),
    }


def block(setup: tuple, steps: int) -> float:
    policy, optimizer, loader, amp = setup
    autocast = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if amp == "bf16"
        else contextlib.nullcontext
    )
    start = time.perf_counter()
    for _ in range(steps):
        batch = loader.next_batch()
        with autocast():
            loss, _ = policy(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * loader.batch_size / (time.perf_counter() - start)


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    scratch = Path(tempfile.mkdtemp(prefix="nanovla-variants-"))
    tasks = ",".join(TrainCommand().tasks)
    path = collect(
        CollectConfig(task=tasks, episodes=args.episodes, out=scratch / "d", progress=False)
    )
    dataset = EpisodeDataset(path)
    setups = {}
    for name, (config, amp) in variants().items():
        torch.manual_seed(0)
        policy = Policy.from_dataset(config, dataset).train()
        optimizer = build_optimizer(policy, 1e-3, 0.01, (0.9, 0.999))
        loader = BatchLoader(dataset, 64, chunk=config.chunk, augment_shift=2)
        setups[name] = (policy, optimizer, loader, amp)
        block(setups[name], 3)  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(args.rounds):
        for name, setup in setups.items():
            rates[name].append(block(setup, args.steps))
    base = statistics.median(next(iter(rates.values())))
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch 64, tasks {tasks}")
    print(f"{'variant':<24}{'samples/s':>10}{'vs default':>12}")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:<24}{median:>10.0f}{median / base:>11.2f}x")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            block(next(iter(setups.values())), 10)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main(tyro.cli(Args))
