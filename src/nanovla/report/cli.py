"""`nanovla report RUN`: write RUN/report.html, the self-contained page of a training run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro


@dataclass
class ReportCommand:
    """Write the HTML report of a `nanovla train` run: command, dataset, curves, success table,
    rollout GIFs; one file, images embedded, opens offline in any browser."""

    run: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """the run directory (the --out of `nanovla train`)"""
    out: Path | None = None
    """where to write the page (default: RUN/report.html)"""
    complete_outcomes: bool = True
    """where a family's seen episodes had successes and failures but its GIFs show only one
    outcome, re-run that family's evaluation episodes from the weights eval.json judged (same
    seeds) and add a GIF of the other to RUN/videos/"""


def main(argv: list[str]) -> int:
    """`nanovla report RUN [--out PATH]`"""
    from nanovla.report import write_report

    command = tyro.cli(ReportCommand, args=argv, prog="nanovla report")
    path = write_report(command.run, command.out, command.complete_outcomes)
    print(f"report: wrote {path} ({path.stat().st_size / 1024:.0f} kB)")
    return 0
