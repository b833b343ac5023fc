"""Training logs: JSONL always, TensorBoard when installed, and a loss-curve PNG.

One JSON object per log event in `<out_dir>/logs/metrics.jsonl`, e.g.
`{"step": 500, "train/loss": 0.031, "train/lr": 0.00098, "train/samples_per_s": 9120.4}`.
Keys are namespaced (`train/...`, `eval/...`) as CleanRL and LeRobot do, so TensorBoard groups
them into sections. TensorBoard event files go to `<out_dir>/logs/` beside the JSONL; if
`torch.utils.tensorboard` cannot be imported (tensorboard not installed) the logger writes JSONL
only and says so in one line naming the extra (`pip install 'nanovla[tensorboard]'`), once per
process. The loss plot needs matplotlib (the `plots` extra); without it the plot is skipped with
one such line.
(Named `logger.py`, not `logging.py`, so that it never shadows the standard library.)
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch

from nanovla.constants import LOGS_DIR

METRICS_FILE = "metrics.jsonl"
LOSS_PLOT = "loss.png"
TENSORBOARD_HINT = "pip install 'nanovla[tensorboard]'"
PLOTS_HINT = "pip install 'nanovla[plots]'"

_said: set[str] = set()  # the optional-dependency notes already printed in this process


class MetricsLogger:
    """Append namespaced scalar metrics to `<out_dir>/logs/metrics.jsonl` (and TensorBoard).

    With `resume_step` set, records of an earlier attempt past that step (logged after the
    checkpoint being resumed from, and about to be redone; all of them for a fresh start) are
    dropped first, so the file reads as one run.
    """

    def __init__(
        self, out_dir: str | Path, tensorboard: bool = True, resume_step: int | None = None
    ) -> None:
        self.log_dir = Path(out_dir) / LOGS_DIR
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.log_dir / METRICS_FILE
        if resume_step is not None:
            _drop_records_after(self.path, resume_step)
        self._file = self.path.open("a")
        self._writer = _tensorboard_writer(self.log_dir) if tensorboard else None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Write one event: `{"step": step, **metrics}`; non-finite values are kept as JSON."""
        record: dict[str, Any] = {"step": int(step)}
        record.update({key: float(value) for key, value in metrics.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in record.items():
                if key != "step":
                    self._writer.add_scalar(key, value, global_step=step)

    def close(self) -> None:
        """Flush and close the JSONL file and the TensorBoard writer."""
        self._file.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _say_once(key: str, line: str) -> None:
    """Print `line` to stderr the first time `key` comes up in this process."""
    if key not in _said:
        _said.add(key)
        print(line, file=sys.stderr)


def _tensorboard_writer(log_dir: Path) -> Any:
    """A SummaryWriter into `log_dir`, or None (with a one-line note) without tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception as error:  # tensorboard is optional: any import problem means JSONL only
        _say_once(
            "tensorboard",
            f"nanovla: TensorBoard logging is off ({type(error).__name__}: {error}); "
            f"metrics go to {METRICS_FILE} only. For TensorBoard: {TENSORBOARD_HINT}",
        )
        return None
    return SummaryWriter(log_dir=str(log_dir))


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """All records of a metrics.jsonl file (a torn last line from a crash is skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _drop_records_after(path: Path, step: int) -> None:
    if not path.exists():
        return
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, path)


def plot_loss(metrics_path: str | Path, png_path: str | Path) -> Path | None:
    """Draw the loss curves (log scale), `eval/success` if logged, and `train/lr` into a PNG.

    The loss panel holds `train/loss` and every `eval/...loss` key (e.g. a validation loss).
    Returns the PNG path, or None when the log holds no `train/loss` yet or matplotlib (the
    `plots` extra) cannot be imported; the latter prints one line naming the extra, once.
    """
    records = read_metrics(metrics_path)
    train = [r for r in records if "train/loss" in r]
    if not train:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        _say_once(
            "plots",
            f"nanovla: loss plot skipped ({error}); the metrics are in {metrics_path}. "
            f"For plots: {PLOTS_HINT}",
        )
        return None

    eval_losses = sorted({k for r in records for k in r if k.startswith("eval/") and "loss" in k})
    has_success = any("eval/success" in r for r in records)
    ratios = [3, 2, 1] if has_success else [3, 1]
    fig, axes = plt.subplots(
        len(ratios), 1, figsize=(6, 2 * len(ratios) + 1), sharex=True, height_ratios=ratios
    )
    ax_loss, ax_lr = axes[0], axes[-1]
    for key in ["train/loss", *eval_losses]:
        points = [(r["step"], r[key]) for r in records if key in r]
        ax_loss.plot(*zip(*points, strict=True), "-" if key == "train/loss" else "o-", label=key)
    values = [v for line in ax_loss.get_lines() for v in line.get_ydata()]
    if all(v > 0 and math.isfinite(v) for v in values):
        ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    if has_success:
        points = [(r["step"], r["eval/success"]) for r in records if "eval/success" in r]
        axes[1].plot(*zip(*points, strict=True), "o-", color="tab:red")
        axes[1].set_ylabel("eval/success")
        axes[1].set_ylim(-0.05, 1.05)
    ax_lr.plot(
        [r["step"] for r in train], [r.get("train/lr", math.nan) for r in train], color="tab:green"
    )
    ax_lr.set_ylabel("lr")
    ax_lr.set_xlabel("optimizer step")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path


class TrainWindow:
    """Loss and timing gathered between two log events.

    Losses stay tensors until `flush` (one `torch.stack` and one sync per log event, instead of
    an `.item()` or a tensor add every step).
    """

    def __init__(self, samples_per_step: int) -> None:
        self.samples_per_step = samples_per_step
        self.losses: list[torch.Tensor] = []  # one 0-d tensor per micro-batch
        self.steps, self.seconds = 0, 0.0
        self.noted: dict[str, Any] = {}

    def add(self, losses: list[torch.Tensor], seconds: float) -> None:
        """Record one optimizer step: its micro-batch losses and its wall time."""
        self.losses.extend(losses)
        self.steps += 1
        self.seconds += seconds

    def note(self, lr: float, grad_norm: torch.Tensor | None, metrics: dict[str, Any]) -> None:
        """The learning rate, pre-clip gradient norm and model metrics of the logged step."""
        self.noted = {"lr": lr, "grad_norm": grad_norm, "metrics": metrics}

    def flush(self) -> dict[str, float]:
        """The `train/...` record of this window (loss = mean over it); then start anew."""
        seconds = max(self.seconds, 1e-9)
        record = {
            "train/loss": float(torch.stack(self.losses).float().mean()),
            "train/lr": float(self.noted["lr"]),
            "train/samples_per_s": self.steps * self.samples_per_step / seconds,
            "train/step_time_ms": 1000.0 * seconds / self.steps,
        }
        if self.noted["grad_norm"] is not None:
            record["train/grad_norm"] = float(self.noted["grad_norm"])
        for name, value in self.noted["metrics"].items():
            record.setdefault(f"train/{name}", float(value))
        self.losses, self.steps, self.seconds = [], 0, 0.0
        return record

    @staticmethod
    def postfix(record: dict[str, float]) -> dict[str, str]:
        return {
            "loss": f"{record['train/loss']:.4f}",
            "lr": f"{record['train/lr']:.2e}",
            "samples/s": f"{record['train/samples_per_s']:.0f}",
        }
