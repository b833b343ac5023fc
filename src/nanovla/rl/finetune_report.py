"""What `nanovla rl finetune` shows: the before/after table and the success-vs-env-steps plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def before_after_table(before: dict[str, Any], after: dict[str, Any]) -> str:
    """One row per split: success before and after with 95% Wilson intervals, and the change
    in points."""
    lines = [f"{'split':<9}{'before [95% CI] (n)':>30}{'after [95% CI] (n)':>30}{'change':>9}"]
    lines.append("-" * len(lines[0]))
    for split, now in after["splits"].items():
        was = before["splits"][split]
        cells = [
            f"{r['success']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] "
            f"({r['successes']}/{r['episodes']})"
            for r in (was, now)
        ]
        change = 100 * (now["success"] - was["success"])
        lines.append(f"{split:<9}{cells[0]:>30}{cells[1]:>30}{change:>+8.0f}p")
    return "\n".join(lines)


def plot_success(records: list[dict], curve: list, before: dict, after: dict, png: Path) -> None:
    """Training-episode success (stochastic policy) and validation success (deterministic) vs
    env steps, with the evaluation before and after as markers; skipped without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    points = [(r["step"], r["charts/success_rate"]) for r in records if "charts/success_rate" in r]
    if points:
        ax.plot(*np.array(points).T, alpha=0.4, label="training episodes (sampled actions)")
    if curve:
        steps, seen, heldout = np.array(curve).T
        ax.plot(steps, seen, "o-", label="validation, seen instructions")
        ax.plot(steps, heldout, "s--", label="validation, held-out instructions")
    last = curve[-1][0] if curve else 0
    for result, x, tag in ((before, 0, "before"), (after, last, "after")):
        ax.plot([x], [result["splits"]["seen"]["success"]], "k*", ms=11)
        ax.annotate(f"eval {tag}: {result['splits']['seen']['success']:.2f}", (x, result["splits"]["seen"]["success"]),
                    textcoords="offset points", xytext=(4, -12), fontsize=8)  # fmt: skip
    ax.set(xlabel="env steps", ylabel="success rate", ylim=(0, 1.02),
           title=f"BC -> PPO fine-tuning: {'+'.join(after['families'])}")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
