"""Latency of `Policy.select_action` on one observation, and training throughput of the policy.

    .venv/bin/python benchmarks/policy_latency.py [--calls 500] [--threads 1 2]

Prints, for the default policy (vla_cnn + lstm + film, 64x64) with and without channels-last:
- select_action on a single unbatched observation: median and p95 over `calls` calls after
  warm-up, for each thread count (target <= 2 ms);
- forward + backward + AdamW step at batch 64 on preloaded tensors, samples/s at 1 and 2
  threads (target >= 1,500 samples/s at 2 threads).
Interleaving the variants cancels some of the noise of a shared machine; still, run it when the
machine is quiet: on a machine whose cores are already busy, 2 intra-op threads can be several
times SLOWER than 1 (the OpenMP workers wait on each other), so the load average is printed too.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import tyro

from nanovla.models.policy import Policy
from nanovla.models.text.tokenizer import Tokenizer
from nanovla.pipeline import default_policy_config

COLORS, KINDS = ("red", "green", "blue", "yellow"), ("box", "ball")
TASKS = [f"put the {c} {k} in the {b} bowl" for c in COLORS for k in KINDS for b in COLORS]


@dataclass
class Config:
    """Policy latency / throughput benchmark."""

    calls: int = 500
    """timed select_action calls per setting (after `warmup` untimed ones)"""
    warmup: int = 50
    """untimed calls before timing"""
    threads: tuple[int, ...] = (1, 2)
    """torch intra-op thread counts to time select_action with"""
    batch_size: int = 64
    """training batch size for the forward+backward throughput"""
    train_threads: tuple[int, ...] = (1, 2)
    """torch intra-op thread counts to time training with"""
    train_steps: int = 30
    """timed training steps (after 5 warm-up steps)"""
    image_size: int = 64
    """image side in pixels"""
    action_head: Literal["tanh", "bins"] = "tanh"
    """the policy's action head (PolicyConfig.action_head)"""


def make_policy(config: Config, channels_last: bool) -> Policy:
    stats = {
        "observation.image": {"mean": [[[0.5]]] * 3, "std": [[[0.25]]] * 3},
        "observation.state": {"mean": [0.5] * 4, "std": [0.3] * 4},
        "action": {"min": [-1.0] * 3, "max": [1.0] * 3},
    }
    policy_config = dataclasses.replace(
        default_policy_config(),
        image_size=config.image_size,
        channels_last=channels_last,
        action_head=config.action_head,
    )
    torch.manual_seed(0)
    return Policy(policy_config, stats, Tokenizer.from_texts(TASKS))


def time_select_action(policy: Policy, config: Config, threads: int) -> tuple[float, float]:
    """(median, p95) milliseconds of select_action on one unbatched observation."""
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    size = config.image_size
    obs = {
        "image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "state": rng.random(4, dtype=np.float32),
        "instruction": TASKS[3],
    }
    for _ in range(config.warmup):
        policy.select_action(obs)
    times = np.empty(config.calls)
    for i in range(config.calls):
        start = time.perf_counter()
        policy.select_action(obs)
        times[i] = time.perf_counter() - start
    return float(np.median(times) * 1e3), float(np.percentile(times, 95) * 1e3)


def time_training(policy: Policy, config: Config, threads: int) -> float:
    """Samples/s of forward + backward + AdamW step on a preloaded batch."""
    torch.set_num_threads(threads)
    policy.train()
    size, batch_size = config.image_size, config.batch_size
    generator = torch.Generator().manual_seed(0)
    batch = {
        "observation.image": torch.randint(
            0, 256, (batch_size, 3, size, size), generator=generator, dtype=torch.uint8
        ),  # fmt: skip
        "observation.state": torch.rand(batch_size, 4, generator=generator),
        "action": torch.rand(batch_size, policy.config.chunk, 3, generator=generator) * 2 - 1,
        "action_is_pad": torch.zeros(batch_size, policy.config.chunk, dtype=torch.bool),
        "task": [
            TASKS[i] for i in torch.randint(0, len(TASKS), (batch_size,), generator=generator)
        ],  # fmt: skip
    }
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    times = []
    for step in range(5 + config.train_steps):
        start = time.perf_counter()
        loss, _ = policy(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= 5:
            times.append(time.perf_counter() - start)
    return batch_size / float(np.median(times))


def main(config: Config) -> None:
    policies = {cl: make_policy(config, cl) for cl in (True, False)}
    params = sum(p.numel() for p in policies[True].parameters())
    print(f"load average (1, 5, 15 min): {os.getloadavg()}")
    size = f"{config.image_size}x{config.image_size}"
    print(f"default policy, {config.action_head} head: {params:,} parameters, {size}")
    print(f"{'setting':<34} {'median ms':>10} {'p95 ms':>8}")
    for threads in config.threads:
        for channels_last, policy in policies.items():
            median, p95 = time_select_action(policy, config, threads)
            label = f"select_action threads={threads} cl={channels_last}"
            print(f"{label:<34} {median:>10.3f} {p95:>8.3f}")
    for threads in config.train_threads:
        for channels_last, policy in policies.items():
            rate = time_training(policy, config, threads)
            label = f"train b={config.batch_size} threads={threads} cl={channels_last}"
            print(f"{label:<34} {rate:>8.0f} samples/s (vs 1500 target: {rate / 1500:.2f}x)")
    print(f"load average (1, 5, 15 min): {os.getloadavg()}")


if __name__ == "__main__":
    main(tyro.cli(Config))
