"""Text encoders compared on held-out language: one `nanovla train` per variant, same demonstrations.

Each variant is `nanovla train` with the same dataset, seed and step budget and one change of the
language side (the word-level LSTM of the default policy, word dropout, the char tokenizer, the
frozen pretrained MiniLM with features cached per unique instruction, ...). The table gives each
variant's success on every evaluation split (seen templates, held-out English paraphrases, the
`user` split of plain-English requests no template holds, Korean training and held-out templates,
held-out (kind, color) target combos), pooled over the families, with successes / episodes and
the 95% Wilson interval, and the training throughput the run logged.

Run (records the default demonstrations once if `data/` lacks them):
    .venv/bin/python benchmarks/language_compare.py --steps 2000
or print the table of runs that exist already:
    .venv/bin/python benchmarks/language_compare.py --table-only --runs runs/cmp-word runs/cmp-minilm
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

VARIANTS: dict[str, tuple[str, ...]] = {
    "word": (),
    "dropout": ("--policy.word-dropout", "0.1"),
    "char": ("--policy.tokenizer-level", "char"),
    "minilm": ("--policy.text", "minilm"),
    "attention": ("--policy.readout", "attention"),
    "minilm-attention": ("--policy.text", "minilm", "--policy.readout", "attention"),
}
"""variant name -> the `nanovla train` options that make it"""
SPLITS = ("seen", "heldout", "user", "ko", "ko_heldout", "combos")


@dataclass
class Args:
    """Compare text encoders on held-out instructions."""

    steps: int = 2000
    """training steps of every variant"""
    variants: tuple[str, ...] = tuple(VARIANTS)
    """variants to run: word, dropout, char, minilm, attention (the instruction's query attends
    over the grid cells instead of FiLM + keypoints choosing the object), minilm-attention"""
    root: Path = Path("runs/language-compare")
    """runs go to ROOT/<variant>"""
    threads: int = 1
    """torch threads per run"""
    targets: str = "train"
    """`nanovla train --targets` of every variant: train keeps the held-out (kind, color) combos
    out of the demonstrations, so the `combos` split is a compositional test"""
    extra: tuple[str, ...] = ()
    """further `nanovla train` options for every variant (e.g. --dataset DIR)"""
    table_only: bool = False
    """do not train: print the table of --runs"""
    runs: tuple[Path, ...] = ()
    """run directories for --table-only (default: ROOT/<variant> for each variant)"""
    eval_file: str = "eval.json"
    """the result file inside each run directory (e.g. a `nanovla eval --out` of a checkpoint)"""


def train(args: Args, name: str) -> Path:
    out = args.root / name
    command = [
        sys.executable, "-m", "nanovla.cli", "train", "--out", str(out), "--no-progress",
        "--train.steps", str(args.steps), "--train.num-threads", str(args.threads),
        "--targets", args.targets, *VARIANTS[name], *args.extra,
    ]  # fmt: skip
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return out


def _cell(summary: dict) -> str:
    lo, hi = summary["ci95"]
    return (
        f"{summary['success']:.2f} [{lo:.2f},{hi:.2f}] {summary['successes']}/{summary['episodes']}"
    )


def table(runs: list[Path], eval_file: str = "eval.json") -> str:
    """One row per run: every split's pooled success, then the logged median samples/s."""
    width = 25
    lines = [f"{'variant':<22}" + "".join(f"{s:>{width}}" for s in SPLITS) + f"{'samples/s':>11}"]
    for run in runs:
        result = json.loads((run / eval_file).read_text())
        records = [json.loads(line) for line in (run / "logs" / "metrics.jsonl").open()]
        rates = [r["train/samples_per_s"] for r in records if "train/samples_per_s" in r]
        cells = "".join(
            f"{_cell(result['splits'][s]) if s in result['splits'] else '-':>{width}}"
            for s in SPLITS
        )
        rate = statistics.median(rates[1:] or rates) if rates else float("nan")
        lines.append(f"{run.name:<22}{cells}{rate:>11.0f}")
    first = json.loads((runs[0] / eval_file).read_text())
    lines.append(
        f"success [95% Wilson CI] successes/episodes, pooled over {', '.join(first['families'])}; "
        f"{first['episodes_per_task']} episodes per family per split, seed {first['seed']}"
    )
    return "\n".join(lines)


def main(args: Args) -> None:
    if args.table_only:
        runs = list(args.runs) or [args.root / name for name in args.variants]
    else:
        runs = [train(args, name) for name in args.variants]
    print(table(runs, args.eval_file))


if __name__ == "__main__":
    main(tyro.cli(Args))
