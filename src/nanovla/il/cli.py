"""`nanovla il SUBCOMMAND [OPTIONS]`: imitation-learning studies beyond behaviour cloning.

    nanovla il shift --policies bc-100=runs/a/checkpoints/last bc-1000=runs/b/checkpoints/last

`nanovla il SUBCOMMAND --help` explains every option of a subcommand. Each subcommand is a module
with `main(argv: list[str]) -> int`, imported only when it runs; adding one is one entry in
`SUBCOMMANDS`.
"""

from __future__ import annotations

# name -> (module with main(argv), one-line summary)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "shift": (
        "nanovla.il.shift",
        "compounding error measured: policies vs the expert from the same states (shift.json/png)",
    ),
}


def main(argv: list[str]) -> int:
    """Entry point of `nanovla il`: dispatches to the named subcommand's `main`."""
    from nanovla.cli import dispatch

    return dispatch("nanovla il", __doc__.split("\n\n")[0], SUBCOMMANDS, argv)
