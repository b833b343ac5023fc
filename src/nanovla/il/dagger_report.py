"""What `nanovla dagger` prints and draws: the rounds table and success vs labelled frames."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def format_rounds(state: dict[str, Any]) -> str:
    """The rounds table, then the BC baselines: seen success with its interval, per family."""
    rows = [("dagger", r) for r in state["rounds"]] + [("bc", b) for b in state["bc"]]
    families = list(rows[0][1]["per_task"]) if rows else []
    lines = [
        f"{'':<7}{'round':>6}{'beta':>7}{'episodes':>10}{'frames':>9}   "
        f"{'seen success [95% CI]':<34}" + "".join(f"{name:>11}" for name in families)
    ]
    for method, row in rows:
        lo, hi = row["ci95"]
        number = str(row["round"]) if method == "dagger" else "-"
        beta = f"{row['beta']:.3f}" if method == "dagger" else "-"
        judged = (
            f"{row['success']:.2f} [{lo:.2f}, {hi:.2f}] ({row['successes']}/{row['eval_episodes']})"
        )
        per_task = "".join(f"{row['per_task'].get(name, float('nan')):>11.2f}" for name in families)
        lines.append(
            f"{method:<7}{number:>6}{beta:>7}{row['episodes']:>10}{row['labelled_frames']:>9}"
            f"   {judged:<34}{per_task}"
        )
    return "\n".join(lines)


def plot_rounds(state: dict[str, Any], path: Path) -> Path:
    """Seen success vs expert-labelled frames: DAgger's rounds as a line, BC (one point, or
    with --bc-every-round one per round) beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, rows, style in (("DAgger", state["rounds"], "o-"), ("BC", state["bc"], "s--")):
        if not rows:
            continue
        x = [row["labelled_frames"] for row in rows]
        y = [row["success"] for row in rows]
        err = [[row["success"] - row["ci95"][0] for row in rows],
               [row["ci95"][1] - row["success"] for row in rows]]  # fmt: skip
        ax.errorbar(x, y, yerr=err, fmt=style, capsize=3, label=method)
    for row in state["rounds"]:
        ax.annotate(f"r{row['round']}", (row["labelled_frames"], row["success"]),
                    textcoords="offset points", xytext=(4, -12), fontsize=8)  # fmt: skip
    ax.set_xlabel("expert-labelled frames")
    ax.set_ylabel("seen success (95% Wilson CI)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("DAgger vs BC at equal expert labels")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(temporary, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(temporary, path)
    return path
