"""The run report: one self-contained `RUN/report.html` a browser opens with no network.

`write_report(run)` reads what a `nanovla train` run directory holds (`report.gather`), draws
the training curves from its JSONL log (`report.curves`), finds the rollout GIFs and their
instructions (`report.rollouts`) and writes the page (`report.page`) atomically: the command
and resolved config, the dataset summary (episodes, frames, tasks, English and Korean
instruction examples), loss / lr / samples-per-second / validation-success curves, the success
table per split and family with 95% Wilson intervals, the evaluation seed, and the GIFs with
successes beside failures (an outcome the evaluation's first episodes did not show is
re-run from the checkpoint, `report.outcomes`). Images are embedded as base64 data URIs, so
the one file is the whole report (a few hundred kB). What the directory lacks (no eval.json
yet, a log cut short) is listed at the top and the rest is still shown.

Like TensorBoard's or Weights & Biases' run page, but a static file: nothing to serve, nothing
to install to look at it, and it travels with the run directory.
"""

from __future__ import annotations

from pathlib import Path

from nanovla.io import write_text
from nanovla.report.curves import plot_curves
from nanovla.report.gather import RunSummary, gather, launch_dir
from nanovla.report.outcomes import record_missing_outcomes
from nanovla.report.page import render
from nanovla.report.rollouts import attach_instructions, find_rollouts

REPORT_FILE = "report.html"
"""the page `nanovla report RUN` writes into RUN"""

__all__ = ["REPORT_FILE", "RunSummary", "build_report", "gather", "write_report"]


def _image_size(summary: RunSummary) -> int:
    for source in (summary.record, summary.command):
        if source and isinstance(source.get("image_size"), int):
            return source["image_size"]
    return 64


def build_report(run: Path | str, complete_outcomes: bool = True) -> tuple[str, RunSummary]:
    """The page's HTML for the run directory `run`, and what was read to make it.

    `complete_outcomes`: where a family's seen split had successes and failures but its GIFs
    show one outcome, re-run its evaluation episodes from the weights eval.json judged and add
    the GIF of the other (`report.outcomes`; written into RUN/videos/)."""
    summary = gather(run)
    rollouts = find_rollouts(summary.run, summary.eval)
    if complete_outcomes and summary.eval is not None:
        launch = launch_dir(summary.run, (summary.command or {}).get("out"))
        written, notes = record_missing_outcomes(
            summary.run, summary.eval, rollouts, _image_size(summary), launch
        )
        summary.missing += notes
        if written:
            rollouts = find_rollouts(summary.run, summary.eval)
    if rollouts and summary.eval is not None:
        attach_instructions(rollouts, summary.eval, _image_size(summary))
    return render(summary, _curves(summary), rollouts), summary


def _curves(summary: RunSummary) -> bytes | None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if summary.metrics:
            summary.missing.append("training curves need matplotlib: pip install 'nanovla[plots]'")
        return None
    return plot_curves(summary.metrics)


def write_report(
    run: Path | str, out: Path | str | None = None, complete_outcomes: bool = True
) -> Path:
    """Write the report of `run` to `out` (default RUN/report.html) atomically; returns the path."""
    page, summary = build_report(run, complete_outcomes)
    return write_text(Path(out) if out is not None else summary.run / REPORT_FILE, page)
