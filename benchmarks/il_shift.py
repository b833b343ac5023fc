"""Compounding error of behaviour cloning vs the number of demonstrations (issue 10, part 1).

Trains BC on N clean expert demonstrations (no DART noise) of push + pick_place for each N in
--demos, every run with the same optimizer steps, one torch thread, 50 evaluation episodes per
family (seen instructions); a run whose `--out` already holds a checkpoint is reused. Then runs
`nanovla il shift` on all of them (plus any --extra NAME=CKPT, e.g. a DAgger run) and prints its
table; OUT/shift.json and OUT/shift.png hold the curves.

Run: `.venv/bin/python benchmarks/il_shift.py [--demos 100 1000 6000 --steps 7000]`
(with the defaults, about 45 minutes on 2 shared cores, nearly all of it training).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tyro


@dataclass
class Args:
    """Train BC on several demonstration budgets, then measure their compounding error."""

    demos: tuple[int, ...] = (100, 1000, 6000)
    """demonstration budgets (episodes of push + pick_place together)"""
    steps: int = 7000
    """optimizer steps of every BC run, the same for all budgets so only the data differs
    (7000 is `nanovla train`'s default)"""
    runs: Path = Path("runs")
    """BC runs go to RUNS/shift-bc-N-STEPSsteps"""
    extra: tuple[str, ...] = ()
    """more NAME=CHECKPOINT policies to measure beside the BC runs (e.g. dagger=runs/dagger)"""
    episodes: int = 100
    """seeded episodes per family in the shift measurement"""
    out: Path = Path("runs/shift")
    """output directory of `nanovla il shift` (replaced if it exists)"""


def nanovla(*args: str) -> None:
    """Run `nanovla ARGS` with one torch thread; stop on failure."""
    command = [sys.executable, "-m", "nanovla.cli", *args]
    print("$ nanovla " + " ".join(args), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    print(f"({time.perf_counter() - start:.0f} s)", flush=True)


def train_bc(demos: int, steps: int, out: Path) -> None:
    """BC on `demos` clean demonstrations, unless `out` already holds a finished run."""
    if (out / "checkpoints" / "last").exists():
        print(f"reusing {out}", flush=True)
        return
    nanovla(
        "train", "--tasks", "push", "pick_place", "--episodes", str(demos), "--out", str(out),
        "--expert-noise", "0", "--train.steps", str(steps), "--train.num-threads", "1",
        "--eval.episodes", "50", "--eval.splits", "seen", "--eval.gifs", "0",
        "--train.eval-every", "0", "--no-progress",
    )  # fmt: skip


def main() -> None:
    args = tyro.cli(Args)
    policies = []
    for demos in args.demos:
        out = args.runs / f"shift-bc-{demos}-{args.steps}steps"
        train_bc(demos, args.steps, out)
        policies.append(f"bc-{demos}={out}")
    nanovla(
        "il", "shift", "--policies", *policies, *args.extra, "--episodes", str(args.episodes),
        "--out", str(args.out), "--overwrite", "--no-progress",
    )  # fmt: skip


if __name__ == "__main__":
    main()
