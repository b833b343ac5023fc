"""The `nanovla` command.

Each subcommand lives beside the code it drives and exposes `main(argv: list[str]) -> int`;
this file only dispatches, so `nanovla --help` stays instant (nothing heavy is imported until a
subcommand runs) and each module owns its own tyro-generated `--help`.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys

SUMMARY = "Train Vision-Language-Action robot policies from scratch on a CPU, offline."

# name -> (module with main(argv), one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "world": (
        "nanovla.world.cli",
        "look at the embedded tabletop world: `show` a scene, `demo` the expert",
    ),
    "collect": (
        "nanovla.eval.collect",
        "record expert or policy rollouts as a LeRobot v3.0 dataset",
    ),
    "train": ("nanovla.pipeline", "the main job: collect -> train a VLA policy by BC -> evaluate"),
    "eval": (
        "nanovla.eval.cli",
        "evaluate a checkpoint on fixed seeded episodes (95% Wilson intervals)",
    ),
    "report": (
        "nanovla.report.cli",
        "write RUN/report.html: command, dataset, curves, success table, rollout GIFs",
    ),
    "dagger": (
        "nanovla.il.dagger_command",
        "DAgger: learner rollouts labelled by the expert, aggregated, retrained (rounds.json)",
    ),
    "irl": (
        "nanovla.il.irl_command",
        "maximum-entropy inverse RL on a grid abstraction of reach/push (irl.json, reward plot)",
    ),
    "finetune": (
        "nanovla.il.regularized_command",
        "behavior-regularized fine-tuning on a new task (LwF, L2, replay); forgetting table",
    ),
    "il": (
        "nanovla.il.cli",
        "imitation-learning studies: `shift` measures BC's compounding error against the expert",
    ),
    "rl": (
        "nanovla.rl.cli",
        "reinforcement learning: `reinforce`, `ppo` (gymnasium ids, the world), `finetune` (BC -> RL)",
    ),
    "lab": (
        "nanovla.labs.cli",
        (
            "curriculum labs: basics, classify, transfer, segment, attention, clip, detect, translate, "
            "caption, vqa, memory"
        ),
    ),
    "vlm": (
        "nanovla.models.vlm.cli",
        "caption / answer questions about images with a VLM (nanovla, or a local HF BLIP / LLaVA)",
    ),
    "metaworld": (
        "nanovla.metaworld_command",
        "Meta-World MT10: `collect` expert demos, `train` a state-based multi-task policy, `eval`",
    ),
    "translate": (
        "nanovla.labs.translate_command",
        'English -> Korean: `nanovla translate "put the red box in the blue bowl"`',
    ),
}


def _join_docstring_lines(helptext: str) -> str:
    """Reflow a docstring for `--help`: single line breaks become spaces, blank lines and list
    items (`- `, `* `) stay.

    tyro keeps every line break of a field docstring whose continuation lines are indented (it
    tests for a letter before it dedents), so each option's help would break mid-sentence where
    the source wraps it. `nanovla` installs this in its place before any command parses."""
    paragraphs: list[str] = []
    for line in (raw.strip() for raw in helptext.split("\n")):
        if not line:
            paragraphs += ["\n", "\n"] if paragraphs and paragraphs[-1] != "\n" else []
        elif not paragraphs or paragraphs[-1] == "\n" or line.startswith(("- ", "* ")):
            paragraphs += (["\n"] if paragraphs and paragraphs[-1] != "\n" else []) + [line]
        else:
            paragraphs.append(" " + line)
    return "".join(paragraphs).strip()


def _reflow_help() -> None:
    """Use `_join_docstring_lines` for tyro's help text (tyro's own helper keeps the breaks)."""
    try:
        from tyro import _strings
    except ImportError:  # a tyro without the private module: help keeps its line breaks
        return
    if hasattr(_strings, "remove_single_line_breaks"):
        _strings.remove_single_line_breaks = _join_docstring_lines


def usage(prog: str, summary: str, commands: dict[str, tuple[str, str]], word: str) -> str:
    """The list `prog --help` prints: one line per (sub)command with its summary."""
    width = max(len(name) for name in commands)
    lines = [f"usage: {prog} {word.upper()} [ARGS...]", "", summary, "", f"{word}s:"]
    lines += [f"  {name:<{width}}  {line}" for name, (_, line) in commands.items()]
    lines += ["", f"`{prog} {word.upper()} --help` explains every option of a {word}."]
    return "\n".join(lines)


def dispatch(prog: str, summary: str, subcommands: dict[str, tuple[str, str]], argv: list[str]) -> int:  # fmt: skip
    """`prog SUBCOMMAND ARGS...` for a command with subcommands (`nanovla il`, `nanovla rl`):
    the list without a subcommand (stderr, exit 2) or with --help (stdout, exit 0), one line for
    an unknown name (exit 2), else the subcommand module's `main(ARGS)`, imported only then."""
    if not argv or argv[0] in ("-h", "--help"):
        print(
            usage(prog, summary, subcommands, "subcommand"), file=sys.stdout if argv else sys.stderr
        )
        return 0 if argv else 2
    if argv[0] not in subcommands:
        known = ", ".join(subcommands)
        print(f"{prog}: unknown subcommand {argv[0]!r}; choose one of: {known}", file=sys.stderr)
        return 2
    module = importlib.import_module(subcommands[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `nanovla` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:  # a command is required: show what there is, and fail like argparse does
        print(usage("nanovla", SUMMARY, COMMANDS, "command"), file=sys.stderr)
        return 2
    if args[0] in ("-h", "--help"):
        print(usage("nanovla", SUMMARY, COMMANDS, "command"))
        return 0
    if args[0] in ("-V", "--version"):
        from nanovla import __version__

        print(f"nanovla {__version__}")
        return 0
    name = args[0]
    if name not in COMMANDS:
        print(
            f"nanovla: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    _reflow_help()
    module = importlib.import_module(COMMANDS[name][0])
    from nanovla.errors import NanovlaError

    try:
        return int(module.main(args[1:]) or 0)
    except KeyboardInterrupt:
        print(f"nanovla {name}: interrupted", file=sys.stderr)
        return 130
    except NanovlaError as error:
        # Bad input is the user's to fix: one line naming what was wrong, not a traceback.
        # Anything else is a bug and keeps its traceback; NANOVLA_DEBUG=1 shows one here too.
        if os.environ.get("NANOVLA_DEBUG"):
            raise
        print(f"nanovla {name}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # A full disk, a quota, a read-only or forbidden directory: the user's to fix, so one
        # line naming the path and the errno (exit 1). Other OS errors keep their traceback.
        disk = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)
        if error.errno not in disk or os.environ.get("NANOVLA_DEBUG"):
            raise
        verb = "access" if error.errno == errno.EACCES else "write"
        where = f"cannot {verb} {error.filename}: " if error.filename is not None else ""
        print(
            f"nanovla {name}: error: {where}[Errno {error.errno}] {error.strerror}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
