"""Reading the LeRobotDataset v3.0 meta files beyond `info.json`: `meta/tasks.parquet`,
`meta/episodes/` (row ranges, tasks, tiling) and the list of data files the episodes name.

Same rules as `data/format.py`: one error naming the file (and column or episode) on bad input,
lenient where LeRobot's own datasets need it (a pandas index or a `task` column for the task
string).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from nanovla.data.format import (
    DATA_PATH,
    EPISODE_COLUMNS,
    EPISODES_DIR,
    INFO_PATH,
    TASKS_PATH,
    int_column,
    parquet_columns,
    read_parquet,
)
from nanovla.errors import InputError, MissingError


def read_tasks(root: Path, total_tasks: int | None = None) -> list[str]:
    """Task strings ordered by task_index, from `meta/tasks.parquet`.

    `task_index` must be integers 0..T-1 each once and the strings non-null; with
    `total_tasks` (info.json's), T must equal it.
    """
    path = Path(root) / TASKS_PATH
    table = read_parquet(path)
    if "task_index" not in table.column_names:
        raise InputError(f"{path}: missing column 'task_index'; present: {table.column_names}")
    key = _task_string_column(table, path)
    if key is None:
        raise InputError(
            f"{path}: no task strings found (expected a 'task' column or a pandas string index)"
        )
    column = table.column(key)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise InputError(f"{path}: column {key!r} has type {column.type}; expected task strings")
    if column.null_count:
        raise InputError(f"{path}: column {key!r} has {column.null_count} missing task strings")
    tasks = column.to_pylist()
    indices = int_column(table, "task_index", path)
    if sorted(indices.tolist()) != list(range(len(tasks))):
        raise InputError(f"{path}: task_index must be 0..{len(tasks) - 1} each once, got {indices}")
    if total_tasks is not None and len(tasks) != total_tasks:
        raise InputError(
            f"{path}: holds {len(tasks)} tasks but {Path(root) / INFO_PATH} says "
            f"total_tasks={total_tasks}"
        )
    ordered = [""] * len(tasks)
    for index, task in zip(indices.tolist(), tasks):
        ordered[index] = task
    return ordered


def _task_string_column(table: pa.Table, path: Path) -> str | None:
    """Which column holds the task strings: `task`, the pandas index, or `__index_level_0__`."""
    if "task" in table.column_names:
        return "task"
    pandas_meta = (table.schema.metadata or {}).get(b"pandas")
    if pandas_meta:
        try:
            index_columns = json.loads(pandas_meta).get("index_columns", [])
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
            raise InputError(f"{path}: unreadable 'pandas' schema metadata ({error})") from error
        if not isinstance(index_columns, list):
            raise InputError(f"{path}: 'pandas' schema metadata has no list of index_columns")
        named = [name for name in index_columns if isinstance(name, str)]
        if named and named[0] in table.column_names:
            return named[0]
    if "__index_level_0__" in table.column_names:
        return "__index_level_0__"
    strings = [
        f.name
        for f in table.schema
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
    ]
    return strings[0] if len(strings) == 1 else None


def read_episodes(
    root: Path, total_episodes: int, total_frames: int | None = None
) -> dict[str, np.ndarray]:
    """Episode table (int64 arrays keyed by column), validated to tile the frame rows in order.

    Returns `episode_index`, `length`, `dataset_from_index`, `dataset_to_index`,
    `data/chunk_index`, `data/file_index` (the last two default to 0 when absent) and, when
    the files have LeRobot's `tasks` column, `tasks` (object array of each episode's task
    strings, as tuples). Every
    column must be integers without nulls; the episodes must be 0..E-1 with E =
    `total_episodes`, their row ranges back to back from 0, covering `total_frames` rows.
    """
    root = Path(root)
    files = sorted((root / EPISODES_DIR).glob("*/*.parquet"))
    if not files:
        raise MissingError(f"{root / EPISODES_DIR}: no episode parquet files found")
    parts: dict[str, list[np.ndarray]] = {}
    for path in files:
        schema_names = parquet_columns(path)
        columns = list(EPISODE_COLUMNS) + [
            name for name in ("data/chunk_index", "data/file_index") if name in schema_names
        ]
        table = read_parquet(path, columns=columns)
        for name in ("data/chunk_index", "data/file_index"):
            values = (
                int_column(table, name, path)
                if name in table.column_names
                else np.zeros(len(table), np.int64)
            )
            if (values < 0).any():
                raise InputError(f"{path}: column {name!r} holds a negative index")
            parts.setdefault(name, []).append(values)
        for name in EPISODE_COLUMNS:
            parts.setdefault(name, []).append(int_column(table, name, path))
        if "tasks" in schema_names:
            parts.setdefault("tasks", []).append(_episode_tasks(path, len(table)))
    if "tasks" in parts and len(parts["tasks"]) != len(files):
        raise InputError(f"{root / EPISODES_DIR}: some episode files lack the 'tasks' column")
    episodes = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    order = np.argsort(episodes["episode_index"], kind="stable")
    episodes = {name: values[order] for name, values in episodes.items()}
    _check_episode_tiling(episodes, root / EPISODES_DIR, total_episodes, root / INFO_PATH)
    covered = int(episodes["dataset_to_index"][-1])
    if total_frames is not None and covered != total_frames:
        raise InputError(
            f"{root / EPISODES_DIR}: episodes cover {covered} frames but {root / INFO_PATH} says "
            f"total_frames={total_frames}"
        )
    return episodes


def _episode_tasks(path: Path, rows: int) -> np.ndarray:
    """The `tasks` column (list of task strings per episode) as an object array of tuples."""
    column = read_parquet(path, columns=["tasks"]).column("tasks")
    kind = column.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) or not (
        pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)
    ):
        raise InputError(f"{path}: column 'tasks' has type {kind}; expected lists of strings")
    values = column.to_pylist()
    if len(values) != rows or any(v is None or None in v for v in values):
        raise InputError(f"{path}: column 'tasks' has missing (null) task strings")
    out = np.empty(rows, dtype=object)
    out[:] = [tuple(v) for v in values]
    return out


def _check_episode_tiling(
    episodes: dict[str, np.ndarray], where: Path, total: int, info_path: Path
) -> None:
    """Episodes must be 0..E-1, each covering rows [from, to) back to back with to - from = length."""
    index = episodes["episode_index"]
    if len(index) != total:
        raise InputError(
            f"{where}: {len(index)} episodes listed but {info_path} says total_episodes={total}"
        )
    expected = np.arange(len(index))
    if not np.array_equal(index, expected):
        bad = int(index[np.flatnonzero(index != expected)[0]])
        raise InputError(
            f"{where}: episode indices must be 0..{total - 1} each once; episode {bad} breaks that"
        )
    start, stop, length = (
        episodes["dataset_from_index"],
        episodes["dataset_to_index"],
        episodes["length"],
    )
    previous_stop = np.concatenate([[0], stop[:-1]])
    broken = np.flatnonzero((stop - start != length) | (start != previous_stop) | (length <= 0))
    if len(broken):
        e = int(broken[0])
        raise InputError(
            f"{where}: episode {e} has length {length[e]} and rows [{start[e]}, {stop[e]}), "
            f"which do not follow the previous episode's end {previous_stop[e]}"
        )


def data_files(root: Path, info: dict[str, Any], episodes: dict[str, np.ndarray]) -> list[Path]:
    """The data parquet files in row order, from the episodes' chunk/file indices."""
    template = info.get("data_path") or DATA_PATH
    pairs = list(
        dict.fromkeys(
            zip(episodes["data/chunk_index"].tolist(), episodes["data/file_index"].tolist())
        )
    )
    if pairs != sorted(pairs):
        raise InputError(
            f"{Path(root) / EPISODES_DIR}: episodes' data/chunk_index, data/file_index are not "
            "in row order (a data file's rows must follow the previous file's)"
        )
    paths = [Path(root) / template.format(chunk_index=c, file_index=f) for c, f in pairs]
    for path in paths:
        if not path.is_file():
            raise MissingError(
                f"{path}: data file not found (named by 'data_path' of {Path(root) / INFO_PATH} "
                f"and the data/chunk_index, data/file_index of {Path(root) / EPISODES_DIR})"
            )
    return paths
