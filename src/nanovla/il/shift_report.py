"""The table and the figure of `nanovla il shift` (OUT/shift.png), split from `shift.py` to keep
that file one readable algorithm. `format_table`: one row per (policy, family). `plot_shift`: one
row per task family, five panels per row: action disagreement on the
policy's own states, the cumulative disagreement (the cost of Ross, Gordon & Bagnell 2011) with
the fitted eps*t and eps*t^2 shapes, the distance from the expert's path, the fraction of episodes
on track, and success within t steps (the expert's in black).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from nanovla.errors import InputError

THEORY = (
    "Ross, Gordon & Bagnell 2011: behaviour cloning with error eps on the expert's states\n"
    "can cost ~ eps*T^2 over T steps (errors compound off the data); DAgger ~ eps*T.\n"
    "dashed = fitted eps*t^2, dotted = fitted eps*t, least squares up to the grey line (the\n"
    "expert's longest episode); p of C ~ t^p is their log-log slope"
)


def check_matplotlib() -> None:
    """One-line InputError naming the extra to install when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise InputError(
            "il shift plots with matplotlib, which is not installed: pip install 'nanovla[plots]'"
        )


def _series(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _draw_family(axes: Any, result: dict[str, Any], family: str, colors: list[Any]) -> None:
    """The five panels of one family."""
    first = True
    for color, (name, by_family) in zip(colors, result["policies"].items(), strict=False):
        curves = by_family[family]
        steps = curves["steps"]
        t_action, t_state = np.arange(steps), np.arange(steps + 1)
        label = f"{name} ({curves['success']:.2f})"
        axes[0].plot(t_action, _series(curves["disagreement"]), color=color, label=label)
        on_expert = _series(curves["expert_state_disagreement"])
        axes[0].plot(t_action, on_expert, "--", color=color, lw=0.8)
        cost = np.asarray(curves["cumulative_disagreement"])
        fit = curves["fit"]
        power = "" if fit["power"] is None else f": C ~ t^{fit['power']:.2f}"
        axes[1].plot(t_action + 1, cost, color=color, lw=2, label=f"{name}{power}")
        t_fit = np.arange(1, fit["horizon"] + 1, dtype=np.float64)
        axes[1].plot(t_fit, fit["eps_quadratic"] * t_fit**2, "--", color=color, lw=1)
        axes[1].plot(t_fit, fit["eps_linear"] * t_fit, ":", color=color, lw=1)
        axes[2].plot(t_state, curves["distance"], color=color, label=name)
        axes[3].plot(t_state, curves["on_track"], color=color, label=name)
        axes[4].plot(t_state, curves["success_by"], color=color, label=label)
        if first:
            axes[4].plot(t_state, curves["expert_success_by"], color="black", lw=1, label="expert")
            axes[1].axvline(fit["horizon"], color="grey", lw=0.6)
            first = False
    titles = (
        f"{family}: |pi - pi*|_1 on own states (dashed: on the expert's)",
        "cumulative disagreement C(t)",
        "distance from the expert's path",
        f"on track (within {result['track_radius']:g})",
        "success within t steps",
    )
    for axis, title in zip(axes, titles, strict=True):
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("t (steps)", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    axes[3].set_ylim(-0.02, 1.02)
    axes[4].set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=7, title="policy (success)", title_fontsize=7)
    axes[1].legend(fontsize=7, title="growth over the expert's horizon", title_fontsize=7)
    axes[4].legend(fontsize=7, loc="lower right")


def plot_shift(result: dict[str, Any], path: Path) -> Path:
    """Write the figure of a `shift.json` result to `path` (PNG, atomically)."""
    check_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = result["families"]
    figure, axes = plt.subplots(
        len(families), 5, figsize=(21, 3.9 * len(families) + 0.9), squeeze=False
    )
    colors = list(plt.get_cmap("tab10").colors)
    for row, family in zip(axes, families, strict=True):
        _draw_family(row, result, family, colors)
    figure.suptitle(
        f"Compounding error: {result['episodes']} seeded episodes per family (seed "
        f"{result['seed']}), every policy from the expert's initial states",
        fontsize=11,
    )
    figure.text(0.5, 0.005, THEORY, ha="center", va="bottom", fontsize=8.5)
    figure.tight_layout(rect=(0, 0.1, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    try:
        figure.savefig(temporary, dpi=100)
        temporary.replace(path)
    finally:
        plt.close(figure)
        temporary.unlink(missing_ok=True)
    return path


def format_table(result: dict[str, Any]) -> str:
    """One row per (policy, family): success, eps on expert / own states, the fits."""
    header = (
        f"{'policy':<14}{'family':<12}{'success [95% CI]':<20}{'eps*':>7}{'eps_own':>9}"
        f"{'C/eps*T':>9}{'on-track@T':>11}{'dist@T':>8}   C(t) fits over the expert's horizon T"
    )
    lines = [header, "-" * len(header)]
    for name, by_family in result["policies"].items():
        for family, c in by_family.items():
            fit = c["fit"]
            excess = "-" if fit["excess"] is None else f"{fit['excess']:.2f}"
            lines.append(
                f"{name:<14}{family:<12}"
                f"{c['success']:.2f} [{c['ci95'][0]:.2f}, {c['ci95'][1]:.2f}]{'':<3}"
                f"{c['eps_expert_states']:>7.3f}{c['eps_own_states']:>9.3f}{excess:>9}"
                f"{c['on_track'][-1]:>11.2f}{c['distance'][-1]:>8.3f}   "
                f"p={fit['power'] or 0:.2f}; "
                f"{fit['better']}: eps*t={fit['eps_linear']:.4f} (rmse {fit['rmse_linear']:.3f}), "
                f"eps*t^2={fit['eps_quadratic']:.5f} (rmse {fit['rmse_quadratic']:.3f})"
            )
    lines.append(
        f"{result['episodes']} episodes per family, seed {result['seed']}; eps* = mean |pi - pi*|_1"
        " on the expert's states, eps_own on the policy's own; C/eps*T = cost over the expert's "
        f"horizon / (eps* T), 1 = no compounding; on-track radius {result['track_radius']}"
    )
    return "\n".join(lines)
