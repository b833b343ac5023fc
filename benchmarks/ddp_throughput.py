"""Multi-process training throughput: `nanovla train --nproc N` for several N, same global batch.

Records (once) a small expert dataset, then runs the real command for each N with the default
policy, one torch thread per process, no validation and a one-episode evaluation, and prints the
engine's logged `train/samples_per_s` (global batch x steps / wall time of the steps, rank 0's
clock; the first log window, which holds the start-up, is left out) and the speed-up over N=1.
On a machine with few, shared cores expect little: the point is that the same command scales
where there are more cores (or GPUs, with --train.device cuda).

Run: `.venv/bin/python benchmarks/ddp_throughput.py [--nproc 1 2 --steps 300]`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tyro


@dataclass
class Args:
    """Throughput of nanovla train at 1 vs N processes."""

    nproc: tuple[int, ...] = (1, 2)
    """process counts to measure"""
    steps: int = 300
    """training steps per run"""
    log_every: int = 50
    """steps per logged window"""
    batch_size: int = 64
    """global batch (split over the processes)"""
    episodes: int = 200
    """expert episodes of the dataset (reach, push)"""
    rounds: int = 1
    """runs per process count, alternating, so each sees the same machine load"""


def _train(args: Args, nproc: int, dataset: Path, out: Path) -> list[float]:
    command = [
        sys.executable, "-m", "nanovla", "train", "--out", str(out), "--nproc", str(nproc),
        "--dataset", str(dataset), "--collect-missing", "--tasks", "reach", "push",
        "--episodes", str(args.episodes), "--batch-size", str(args.batch_size),
        "--train.steps", str(args.steps), "--train.log-every", str(args.log_every),
        "--train.eval-every", "0", "--train.num-threads", "1", "--no-progress",
        "--eval.episodes", "1", "--eval.splits", "seen", "--eval.gifs", "0",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    lines = (out / "logs" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return [r["train/samples_per_s"] for r in records if "train/samples_per_s" in r][1:]


def main(args: Args) -> None:
    with tempfile.TemporaryDirectory(prefix="ddp-bench-") as tmp:
        dataset = Path(tmp) / "data"
        rates: dict[int, list[float]] = {n: [] for n in args.nproc}
        for round_index in range(args.rounds):
            for nproc in args.nproc:
                out = Path(tmp) / f"run-{nproc}-{round_index}"
                rates[nproc] += _train(args, nproc, dataset, out)
                print(f"nproc {nproc}: {statistics.median(rates[nproc]):.0f} samples/s", flush=True)
    base = statistics.median(rates[args.nproc[0]])
    print(f"\nglobal batch {args.batch_size}, {args.steps} steps, 1 thread per process")
    print(f"{'processes':>9}  {'samples/s (median of windows)':>30}  {'speed-up':>8}")
    for nproc, values in rates.items():
        median = statistics.median(values)
        print(f"{nproc:>9}  {median:>30.0f}  {median / base:>7.2f}x")


if __name__ == "__main__":
    main(tyro.cli(Args))
