"""The forgetting table of `nanovla finetune`: old-task success before / after and new-task
success after, for plain fine-tuning, each regularizer and replay.

Runs `nanovla finetune --checkpoint CKPT --tasks pick_place --regularizer R --beta B --out
ROOT/ft-<name>` for every variant in `--variants` (`name=regularizer:beta`; a beta of `-`
means the command's default), one after another with one torch thread, skipping a variant whose
`eval.json` already exists; then prints one row per variant from the eval.json files: per old
family before -> after, the old families pooled (successes / episodes, 95% Wilson interval), the
new family after, the change of the old mean in points, whether the goal (old within 5 points,
new >= 0.85) is met, and the run's wall time. Every row is judged on the same seeded episodes
(`--eval.seed` is the command's default for all).

Run: `.venv/bin/python benchmarks/il_forgetting.py --checkpoint runs/ft-base/checkpoints/last`
(the base: `nanovla train --quick --out runs/ft-base`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from nanovla.eval.stats import wilson_interval


@dataclass
class Args:
    """Fine-tune one checkpoint with each variant and print the forgetting table."""

    checkpoint: Path = Path("runs/ft-base/checkpoints/last")
    """the starting policy (reach + push)"""
    tasks: tuple[str, ...] = ("pick_place",)
    """the new task families"""
    root: Path = Path("runs")
    """run directories go to ROOT/ft-<name>"""
    variants: tuple[str, ...] = (
        "none=none:0",
        "new=new:-",
        "lwf=lwf:-",
        "l2=l2:-",
        "replay=replay:-",
    )
    """name=regularizer:beta ('-' = the command's default beta)"""
    extra: tuple[str, ...] = ()
    """more options for every `nanovla finetune` run (e.g. --steps 2000)"""
    table_only: bool = False
    """print the table from existing runs, run nothing"""
    threads: int = 1
    """torch threads of each run"""


def run_variant(args: Args, name: str, spec: str) -> Path:
    regularizer, _, beta = spec.partition(":")
    out = args.root / f"ft-{name}"
    if (out / "eval.json").is_file() or args.table_only:
        return out
    command = [
        sys.executable,
        "-m",
        "nanovla.cli",
        "finetune",
        "--checkpoint",
        str(args.checkpoint),
    ]
    command += ["--tasks", *args.tasks, "--regularizer", regularizer, "--out", str(out)]
    command += [] if beta == "-" else ["--beta", beta]
    command += ["--num-threads", str(args.threads), "--no-progress", *args.extra]
    print("$", " ".join(command[2:]), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    subprocess.run(command, check=True, env=env)
    return out


def pooled(result: dict, families: list[str]) -> tuple[int, int]:
    """(successes, episodes) of `families` together on the seen split."""
    n = result["episodes_per_task"]
    per_task = result["splits"]["seen"]["per_task"]
    return sum(round(per_task[f] * n) for f in families), n * len(families)


def row(name: str, result: dict) -> str:
    info = result["finetune"]
    old, new = info["old_families"], info["new_families"]
    before, after = result["before"], result
    cells = [f"{name:<12}{info['beta']:>6g}"]
    for family in old:
        b, a = (r["splits"]["seen"]["per_task"][family] for r in (before, after))
        cells.append(f"{family} {b:.2f}->{a:.2f}")
    (sb, nb), (sa, na) = pooled(before, old), pooled(after, old)
    lo, hi = wilson_interval(sa, na)
    cells.append(f"old {sb / nb:.2f}->{sa / na:.2f} [{lo:.2f}, {hi:.2f}] ({sa}/{na})")
    (bn, nb_), (sn, nn) = pooled(before, new), pooled(after, new)
    lo, hi = wilson_interval(sn, nn)
    cells.append(f"new {bn / nb_:.2f}->{sn / nn:.2f} [{lo:.2f}, {hi:.2f}] ({sn}/{nn})")
    change = 100 * (sa / na - sb / nb)
    goal = change >= -5 and sn / nn >= 0.85
    cells.append(f"{change:+.0f} pts  goal {'yes' if goal else 'no'}")
    cells.append(f"{result['timing_s']['total']:.0f} s")
    return "  ".join(cells)


def main() -> None:
    args = tyro.cli(Args, description=__doc__.split("\n\n")[0])
    outs = []
    for variant in args.variants:
        name, _, spec = variant.partition("=")
        outs.append((name, run_variant(args, name, spec)))
    print()
    for name, out in outs:
        path = out / "eval.json"
        if path.is_file():
            print(row(name, json.loads(path.read_text())))
    first = next(
        (json.loads((o / "eval.json").read_text()) for _, o in outs if (o / "eval.json").is_file()),
        None,
    )
    if first is not None:
        print(
            f"seen instructions, {first['episodes_per_task']} episodes per family, seed {first['seed']}"
        )


if __name__ == "__main__":
    main()
