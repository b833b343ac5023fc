"""What every lab shares: the base config (output dir, seed, threads), seeding, `metrics.json`
writing and matplotlib helpers (Agg backend, PNG files).

Every lab writes into its `--out` directory: `metrics.json` (the figures it printed) and one or
more PNGs. Writes are atomic (temporary file + rename), so an interrupted lab never leaves a
half-written `metrics.json` behind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nanovla.errors import InputError
from nanovla.io import write_json
from nanovla.train.rng import seed_everything

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class LabConfig:
    """Options every lab has. Each lab redeclares `out` with its own default directory."""

    out: Path = Path("runs/lab")
    """directory for metrics.json and the PNG plots (created if missing)"""
    seed: int = 0
    """seed for torch, numpy and Python's random (the same seed gives the same run)"""
    threads: int | None = None
    """torch CPU threads (None = torch's default, one per core; on a busy CPU 1 is often faster)"""


def check_choice(argument: str, value: str, allowed: Sequence[str]) -> None:
    """Raises ValueError naming `--argument` and the allowed values if `value` is not allowed."""
    if value not in allowed:
        raise InputError(
            f"--{argument}: unknown value {value!r}; choose one of {', '.join(allowed)}"
        )


def check_positive(**values: float) -> None:
    """Raises ValueError for the first `--name` whose value is not > 0."""
    for name, value in values.items():
        if not value > 0:
            raise InputError(f"--{name.replace('_', '-')}: must be > 0, got {value!r}")


def setup(config: LabConfig) -> Path:
    """Seeds every generator, applies `threads`, creates and returns the output directory."""
    if config.threads is not None:
        if config.threads < 1:
            raise InputError(f"--threads: must be >= 1 (or omitted), got {config.threads}")
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    config.out.mkdir(parents=True, exist_ok=True)
    return config.out


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def write_metrics(out: Path, metrics: Mapping[str, Any], config: LabConfig) -> Path:
    """Writes `out/metrics.json` atomically: the metrics plus the resolved config under
    "config". Tensors, arrays and paths become plain JSON values."""
    payload = {**_jsonable(metrics), "config": _jsonable(config)}
    path = out / "metrics.json"
    write_json(path, payload)
    return path


def pyplot() -> Any:
    """matplotlib.pyplot on the headless Agg backend (imported lazily: the CLI stays fast).

    Raises InputError naming the extra to install when matplotlib is missing.
    """
    try:
        import matplotlib
    except ImportError as error:
        raise InputError(
            "the labs plot with matplotlib, which is not installed: pip install 'nanovla[labs]'"
        ) from error

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Figure, path: Path) -> Path:
    """Saves `figure` as a PNG at `path`, closes it, and returns the path."""
    figure.savefig(path, dpi=100, bbox_inches="tight")
    pyplot().close(figure)
    return path


def plot_curves(
    path: Path, panels: Mapping[str, Mapping[str, Sequence[float]]], xlabel: str = "epoch"
) -> Path:
    """One panel per entry of `panels` (title -> {line label -> values}), side by side."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for axis, (title, lines) in zip(axes[0], panels.items()):
        for label, values in lines.items():
            axis.plot(np.arange(1, len(values) + 1), values, label=label)
        axis.set_title(title)
        axis.set_xlabel(xlabel)
        axis.grid(alpha=0.3)
        if len(lines) > 1:
            axis.legend()
    return save_figure(figure, path)


def plot_confusion(path: Path, confusion: np.ndarray, labels: Sequence[str], title: str) -> Path:
    """A confusion matrix (rows: true class, columns: predicted) with the counts written in."""
    plt = pyplot()
    size = max(4.0, 0.45 * len(labels) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(confusion, cmap="Blues")
    ticks = np.arange(len(labels))
    axis.set_xticks(ticks, labels, rotation=45, ha="right")
    axis.set_yticks(ticks, labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    threshold = confusion.max() / 2 if confusion.size else 0
    for (row, column), count in np.ndenumerate(confusion):
        color = "white" if count > threshold else "black"
        axis.text(column, row, str(count), ha="center", va="center", fontsize=7, color=color)
    return save_figure(figure, path)
