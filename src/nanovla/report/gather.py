"""What a run directory holds, read leniently: each file that is missing or unreadable becomes a
sentence in `RunSummary.missing` and the rest is still read, so a half-finished run (no eval.json
yet, a log cut short by a crash) still gets a page.

Read here: `train_command.json` (the resolved command; the equivalent command line is rebuilt
from its differences to the defaults), `checkpoints/last/pretrained_model/run.json` (which
dataset the run trained on), the dataset's `meta/` (episodes, frames, tasks, instructions),
`logs/metrics.jsonl` (one JSON object per logged step) and `eval.json`.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanovla.constants import (
    CHECKPOINTS_DIR,
    COMMAND_FILE,
    EVAL_FILE,
    LAST_LINK,
    LOGS_DIR,
    PRETRAINED_DIR,
    RUN_RECORD_FILE,
)
from nanovla.errors import InputError, MissingError, NanovlaError
from nanovla.io import read_json_object

METRICS_FILE = "metrics.jsonl"
"""the JSONL log the training engine writes under `logs/`"""
EXAMPLES_PER_LANGUAGE = 4
"""instruction examples the dataset summary shows per language"""


@dataclass
class DatasetSummary:
    """The demonstrations a run trained on, from the dataset's `meta/` files only."""

    path: str
    episodes: int
    frames: int
    tasks: int
    fps: float
    families: list[str]
    instructions: str
    """the instruction templates it was recorded with (`train+ko`), "" when unrecorded"""
    examples: dict[str, list[str]]
    """language ("English", "Korean") -> the first distinct episode instructions in it"""
    episodes_per_language: dict[str, int]


@dataclass
class RunSummary:
    """Everything the page shows; None (with a sentence in `missing`) where a file is absent."""

    run: Path
    command: dict[str, Any] | None = None
    command_line: str | None = None
    record: dict[str, Any] | None = None
    dataset: DatasetSummary | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    eval: dict[str, Any] | None = None
    missing: list[str] = field(default_factory=list)


def is_korean(text: str) -> bool:
    """Whether `text` holds Hangul syllables (the world's Korean instructions)."""
    return any("\uac00" <= char <= "\ud7a3" for char in text)


def _json_or_note(path: Path, summary: RunSummary, what: str) -> dict[str, Any] | None:
    try:
        return read_json_object(path)
    except MissingError:
        summary.missing.append(f"{path} not found: {what}")
    except InputError as error:
        summary.missing.append(f"{error}: {what}")
    return None


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The JSONL log's rows sorted by step (a step logged twice, as after a resume, keeps its
    last row) and the number of lines that are not a JSON object with an integer `step` (a line
    cut short by a crash)."""
    rows: dict[tuple[int, tuple[str, ...]], dict[str, Any]] = {}
    bad = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            bad += 1
            continue
        rows[(row["step"], tuple(sorted(row)))] = row
    return [rows[key] for key in sorted(rows)], bad


def command_line(saved: dict[str, Any]) -> str | None:
    """`nanovla train` with the options whose values differ from the defaults (`--quick`'s
    defaults for a quick run): a command that starts the same run. None when the saved command
    no longer parses (written by another version)."""
    from nanovla.codec import field_differences, from_json
    from nanovla.train_command import TrainCommand, quick_command

    try:
        command = from_json(TrainCommand, saved, source=COMMAND_FILE)
    except (NanovlaError, TypeError, ValueError):
        return None
    base = quick_command() if command.quick else TrainCommand()
    words = ["nanovla", "train"] + (["--quick"] if command.quick else [])
    words += ["--out", str(command.out)]
    for name in field_differences(base, command):
        if name in ("out", "resume", "quick"):
            continue
        value = _attribute(command, name)
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            *head, last = name.split(".")
            words.append(
                flag if value else "--" + ".".join([*head, "no-" + last]).replace("_", "-")
            )
        elif isinstance(value, list | tuple):
            words += [flag, *(str(item) for item in value)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def _attribute(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def dataset_path(run: Path, command: dict[str, Any] | None, record: dict[str, Any] | None) -> Path | None:  # fmt: skip
    """The dataset the run trained on: run.json's record, else the command's `--dataset`, else
    where `nanovla train` caches the demonstrations for that command."""
    if record and isinstance(record.get("dataset"), str):
        return Path(record["dataset"])
    if command is None:
        return None
    if command.get("dataset"):
        return Path(command["dataset"])
    from nanovla.codec import from_json
    from nanovla.pipeline import dataset_dir
    from nanovla.train_command import TrainCommand

    try:
        return dataset_dir(from_json(TrainCommand, command, source=COMMAND_FILE))
    except (NanovlaError, TypeError, ValueError):
        return None


def summarize_dataset(root: Path) -> DatasetSummary:
    """Episodes, frames, tasks and instruction examples of a LeRobot v3.0 dataset (meta only)."""
    from nanovla.data.format import read_info
    from nanovla.data.meta import read_episodes, read_tasks

    info = read_info(root)
    tasks = read_tasks(root, info.get("total_tasks"))
    episodes = read_episodes(root, int(info["total_episodes"]))
    first_tasks = (
        [tuple(t)[0] for t in episodes["tasks"] if t]
        if "tasks" in episodes
        else list(tasks)  # no per-episode tasks column: the task table's order
    )
    examples: dict[str, list[str]] = {"English": [], "Korean": []}
    counts = {"English": 0, "Korean": 0}
    for text in first_tasks:
        language = "Korean" if is_korean(text) else "English"
        counts[language] += 1
        if len(examples[language]) < EXAMPLES_PER_LANGUAGE and text not in examples[language]:
            examples[language].append(text)
    recorded = info.get("nanovla", {}) if isinstance(info.get("nanovla"), dict) else {}
    return DatasetSummary(
        path=str(root),
        episodes=int(info["total_episodes"]),
        frames=int(info["total_frames"]),
        tasks=len(tasks),
        fps=float(info["fps"]),
        families=list(recorded.get("families", [])),
        instructions=str(recorded.get("instructions", "")),
        examples={k: v for k, v in examples.items() if v},
        episodes_per_language={k: v for k, v in counts.items() if v},
    )


def gather(run: Path | str) -> RunSummary:
    """Read what `run` holds. A path that is not a directory, or a directory with none of a
    run's files, is an error; anything less than a whole run is noted in `missing`."""
    run = Path(run)
    if not run.is_dir():
        raise MissingError(f"{run}: run directory not found")
    known = (COMMAND_FILE, EVAL_FILE, LOGS_DIR, CHECKPOINTS_DIR)
    if not any((run / name).exists() for name in known):
        raise InputError(
            f"{run}: not a run directory (none of {', '.join(known)} is there); pass the --out "
            "directory of a `nanovla train` run"
        )
    summary = RunSummary(run=run)
    summary.command = _json_or_note(run / COMMAND_FILE, summary, "the command is not shown")
    if summary.command is not None:
        summary.command_line = command_line(summary.command)
    record_path = run / CHECKPOINTS_DIR / LAST_LINK / PRETRAINED_DIR / RUN_RECORD_FILE
    if record_path.is_file():
        summary.record = _json_or_note(
            record_path, summary, "the dataset is found from the command"
        )
    _gather_dataset(summary)
    _gather_metrics(summary)
    summary.eval = _json_or_note(
        run / EVAL_FILE,
        summary,
        "no success table or rollouts (the run has not finished its evaluation; "
        f"`nanovla eval --checkpoint {run / CHECKPOINTS_DIR / LAST_LINK}` evaluates a checkpoint)",
    )
    return summary


def launch_dir(run: Path, out: Any) -> Path | None:
    """The directory `nanovla train` ran in: `run` without the parts of its relative `--out`."""
    if not isinstance(out, str) or Path(out).is_absolute():
        return None
    parts, resolved = Path(out).parts, run.resolve()
    if not parts or resolved.parts[-len(parts) :] != Path(os.path.normpath(out)).parts:
        return None
    return resolved.parents[len(parts) - 1]


def _gather_dataset(summary: RunSummary) -> None:
    path = dataset_path(summary.run, summary.command, summary.record)
    if path is not None and not path.is_absolute() and not path.exists() and summary.command:
        base = launch_dir(summary.run, summary.command.get("out"))  # relative to where it ran
        path = base / path if base is not None and (base / path).exists() else path
    if path is None:
        summary.missing.append("no dataset path known (no train_command.json or run.json)")
        return
    try:
        summary.dataset = summarize_dataset(path)
        tasks = (summary.command or {}).get("tasks")
        if not summary.dataset.families and isinstance(tasks, list):  # an older dataset
            summary.dataset.families = [f"{', '.join(map(str, tasks))} (the command's --tasks)"]
    except NanovlaError as error:
        summary.missing.append(f"dataset {path}: {error}; no dataset summary")


def _gather_metrics(summary: RunSummary) -> None:
    path = summary.run / LOGS_DIR / METRICS_FILE
    if not path.is_file():
        summary.missing.append(f"{path} not found: no training curves")
        return
    summary.metrics, bad = read_metrics(path)
    if bad:
        summary.missing.append(f"{path}: {bad} unreadable line(s) skipped (cut short by a crash?)")
    if not summary.metrics:
        summary.missing.append(f"{path} holds no logged step: no training curves")


__all__ = [
    "DatasetSummary",
    "RunSummary",
    "command_line",
    "gather",
    "read_metrics",
    "summarize_dataset",
]
