"""Training curves of a run from its JSONL log, drawn as one PNG (matplotlib, Agg backend).

Four panels, each drawn only when the log holds its keys: the loss (`train/loss`, and the
validation loss `eval/val_loss`), the learning rate (`train/lr`), the throughput
(`train/samples_per_s`) and the periodic success on validation scenes (`eval/success` and the
per-family `eval/success_<family>`).
"""

from __future__ import annotations

import io
from typing import Any

PANELS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("loss", ("train/loss", "eval/val_loss"), "log"),
    ("learning rate", ("train/lr",), "linear"),
    ("samples / s", ("train/samples_per_s",), "linear"),
    ("validation success", ("eval/success",), "linear"),
)
"""(title, keys, y scale) of each panel; the success panel adds the per-family keys it finds"""
SUCCESS_PREFIX = "eval/success_"


def series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key` over the rows that hold a finite number for it."""
    steps, values = [], []
    for row in rows:
        value = row.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
            if abs(value) != float("inf"):
                steps.append(int(row["step"]))
                values.append(float(value))
    return steps, values


def panel_keys(rows: list[dict[str, Any]]) -> list[tuple[str, list[str], str]]:
    """The panels with data: (title, keys with at least one value, y scale)."""
    present = set().union(*(row.keys() for row in rows)) if rows else set()
    families = sorted(k for k in present if k.startswith(SUCCESS_PREFIX))
    panels = []
    for title, keys, scale in PANELS:
        wanted = list(keys) + (families if title == "validation success" else [])
        found = [key for key in wanted if key in present and series(rows, key)[0]]
        if found:
            panels.append((title, found, scale))
    return panels


def plot_curves(rows: list[dict[str, Any]]) -> bytes | None:
    """PNG bytes of the training curves, or None when the log holds nothing to draw."""
    panels = panel_keys(rows)
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(2, len(panels))
    lines = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(lines, columns, figsize=(5.2 * columns, 3.2 * lines), squeeze=False)
    for axis, (title, keys, scale) in zip(axes.flat, panels):
        for key in keys:
            steps, values = series(rows, key)
            label = key.removeprefix(SUCCESS_PREFIX) if key.startswith(SUCCESS_PREFIX) else key
            style = "o-" if key.startswith("eval/") else "-"
            axis.plot(steps, values, style, label=label, markersize=3, linewidth=1.2)
        if scale == "log" and all(v > 0 for key in keys for v in series(rows, key)[1]):
            axis.set_yscale("log")
        if title == "validation success":
            axis.set_ylim(-0.02, 1.02)
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()
