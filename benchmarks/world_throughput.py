"""Throughput of the embedded tabletop world on ONE CPU core.

Prints, for num_envs in (1, 64, 512): state-only env-steps/s (dynamics + success checks +
auto-resets, driven by the scripted expert) and rendered 64x64 frames/s (`World.render()` on
the same states), plus the full `step` with images. Threads are pinned to 1 (torch, numpy BLAS).

    .venv/bin/python benchmarks/world_throughput.py [--seconds 1.0] [--task suite]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402

from nanovla.world import make_world  # noqa: E402


def _rate(fn: Callable[[], object], items_per_call: int, seconds: float) -> float:
    """Calls fn repeatedly for about `seconds` of this process's CPU time; returns items per
    CPU-second. CPU time, not wall time, because the machine may be shared: with one thread,
    items per CPU-second is the throughput of one dedicated core."""
    fn()  # warm-up
    calls, start = 0, time.process_time()
    while True:
        fn()
        calls += 1
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return calls * items_per_call / elapsed


def measure(task: str, num_envs: int, seconds: float) -> tuple[float, float, float]:
    """(state-only steps/s, rendered frames/s, full steps with images/s) for one batch size."""
    world = make_world(task, num_envs=num_envs, image_size=64, seed=0, render=False)
    state_only = _rate(lambda: world.step(world.expert_action()), num_envs, seconds)
    frames = _rate(world.render, num_envs, seconds)
    imaged = make_world(task, num_envs=num_envs, image_size=64, seed=0, render=True)
    full = _rate(lambda: imaged.step(imaged.expert_action()), num_envs, seconds)
    return state_only, frames, full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="timing window per cell")
    parser.add_argument("--task", default="suite", help="task family or 'suite'")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"world throughput, task={args.task}, 64x64, 1 thread, per CPU-second (expert actions)")
    print(
        f"{'num_envs':>8} | {'state-only steps/s':>18} | {'rendered frames/s':>17} | "
        f"{'step+image /s':>13}"
    )
    for num_envs in (1, 64, 512):
        state_only, frames, full = measure(args.task, num_envs, args.seconds)
        print(f"{num_envs:>8} | {state_only:>18,.0f} | {frames:>17,.0f} | {full:>13,.0f}")


if __name__ == "__main__":
    main()
