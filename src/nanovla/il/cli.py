"""`nanovla il SUBCOMMAND [OPTIONS]`: imitation-learning studies beyond behaviour cloning.

    nanovla il shift --policies bc-100=runs/a/checkpoints/last bc-1000=runs/b/checkpoints/last

`nanovla il SUBCOMMAND --help` explains every option of a subcommand. Each subcommand is a module
with `main(argv: list[str]) -> int`, imported only when it runs; adding one is one entry in
`SUBCOMMANDS`.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module with main(argv), one-line summary)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "shift": (
        "nanovla.il.shift",
        "compounding error measured: policies vs the expert from the same states (shift.json/png)",
    ),
}


def usage() -> str:
    """The subcommand list `nanovla il --help` prints."""
    width = max(len(name) for name in SUBCOMMANDS)
    lines = ["usage: nanovla il SUBCOMMAND [ARGS...]", "", __doc__.split("\n\n")[0], ""]
    lines.append("subcommands:")
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    lines += ["", "`nanovla il SUBCOMMAND --help` explains every option of a subcommand."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point of `nanovla il`: dispatches to the named subcommand's `main`."""
    if not argv:
        print(usage(), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name = argv[0]
    if name not in SUBCOMMANDS:
        print(
            f"nanovla il: unknown subcommand {name!r}; choose one of: {', '.join(SUBCOMMANDS)}",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(argv[1:]) or 0)
