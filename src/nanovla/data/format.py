"""The LeRobotDataset v3.0 layout on disk: paths, `meta/info.json`, and validated meta reading.

```
<root>/
  meta/info.json                              schema, fps, totals, path templates, splits
  meta/stats.json                             min/max/mean/std/count per feature
  meta/tasks.parquet                          task string -> task_index
  meta/episodes/chunk-000/file-000.parquet    one row per episode: length, row range, tasks, stats
  data/chunk-000/file-000.parquet             one row per frame
```

Every reader here raises ONE clear error naming the file (and key or episode) on bad input:
FileNotFoundError for missing files, ValueError for anything unreadable or inconsistent.
Readers are lenient the way LeRobot's own datasets need: extra columns and features are ignored,
`tasks.parquet` may hold the task string as a pandas index (`__index_level_0__` or a named index)
or as a `task` column, and vector columns may be `list` or `fixed_size_list`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nanovla.errors import InputError, MissingError

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
EPISODES_PATH = EPISODES_DIR + "/" + CHUNK_FILE + ".parquet"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
DEFAULT_CHUNK_SIZE = 1000
"""Files per chunk directory, as LeRobot."""

IMAGE_KEY = "observation.image"
STATE_KEY = "observation.state"
ACTION_KEY = "action"
ENV_STATE_KEY = "observation.environment_state"
"""Optional feature (LeRobot's name for privileged simulator state); nanovla records the world's
subgoal positions (object x, y, place x, y) here as an auxiliary training target."""

DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
"""The bookkeeping columns every LeRobot frame carries."""

EPISODE_COLUMNS = ("episode_index", "length", "dataset_from_index", "dataset_to_index")
"""Columns of `meta/episodes/*.parquet` the reader needs."""


def read_json(path: Path) -> Any:
    """Parsed JSON of `path`, or FileNotFoundError / ValueError naming it."""
    if not path.is_file():
        raise MissingError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not valid JSON ({error})") from error


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """`pq.read_table` whose errors name the file: missing, truncated/corrupt, missing columns."""
    if not path.is_file():
        raise MissingError(f"{path}: file not found")
    try:
        schema = pq.read_schema(path)
        if columns is not None:
            missing = [name for name in columns if name not in schema.names]
            if missing:
                raise InputError(
                    f"{path}: missing column(s) {missing}; present: {sorted(schema.names)}"
                )
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as error:
        raise InputError(f"{path}: not a readable parquet file ({error})") from error


def read_info(root: Path) -> dict[str, Any]:
    """`meta/info.json`, checked for the v3.0 codebase version and the fields the loader needs."""
    root = Path(root)
    if not root.is_dir():
        raise MissingError(f"{root}: dataset directory not found")
    path = root / INFO_PATH
    if not path.is_file():
        raise MissingError(
            f"{path}: file not found; {root} is not a LeRobotDataset (record one with `nanovla collect`)"
        )
    info = read_json(path)
    if not isinstance(info, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(info).__name__}")
    version = info.get("codebase_version")
    if version != CODEBASE_VERSION:
        raise InputError(
            f"{path}: codebase_version {version!r} is not supported; this loader reads "
            f"{CODEBASE_VERSION!r} (convert older datasets with LeRobot's v3.0 converter)"
        )
    for key in ("fps", "features", "total_episodes", "total_frames"):
        if key not in info:
            raise InputError(f"{path}: missing key {key!r}")
    if not isinstance(info["features"], dict):
        raise InputError(f"{path}: 'features' must be an object of feature specs")
    return info


def require_feature(info: dict[str, Any], root: Path, key: str, dtypes: tuple[str, ...]) -> dict:
    """The spec of feature `key` from info.json, checked to have one of `dtypes`."""
    features = info["features"]
    if key not in features:
        raise InputError(
            f"{root / INFO_PATH}: feature {key!r} not found; features present: {sorted(features)}"
        )
    spec = features[key]
    if spec.get("dtype") not in dtypes:
        raise InputError(
            f"{root / INFO_PATH}: feature {key!r} has dtype {spec.get('dtype')!r}; expected one of {dtypes}"
        )
    return spec


def read_tasks(root: Path) -> list[str]:
    """Task strings ordered by task_index, from `meta/tasks.parquet`."""
    path = Path(root) / TASKS_PATH
    table = read_parquet(path)
    if "task_index" not in table.column_names:
        raise InputError(f"{path}: missing column 'task_index'; present: {table.column_names}")
    key = _task_string_column(table)
    if key is None:
        raise InputError(
            f"{path}: no task strings found (expected a 'task' column or a pandas string index)"
        )
    tasks = table.column(key).to_pylist()
    indices = np.asarray(table.column("task_index").to_numpy(), dtype=np.int64)
    if sorted(indices.tolist()) != list(range(len(tasks))):
        raise InputError(f"{path}: task_index must be 0..{len(tasks) - 1} each once, got {indices}")
    ordered = [""] * len(tasks)
    for index, task in zip(indices.tolist(), tasks):
        ordered[index] = task
    return ordered


def _task_string_column(table: pa.Table) -> str | None:
    """Which column holds the task strings: `task`, the pandas index, or `__index_level_0__`."""
    if "task" in table.column_names:
        return "task"
    pandas_meta = (table.schema.metadata or {}).get(b"pandas")
    if pandas_meta:
        index_columns = json.loads(pandas_meta).get("index_columns", [])
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
    `data/chunk_index`, `data/file_index` (the last two default to 0 when absent).
    """
    root = Path(root)
    files = sorted((root / EPISODES_DIR).glob("*/*.parquet"))
    if not files:
        raise MissingError(f"{root / EPISODES_DIR}: no episode parquet files found")
    parts: dict[str, list[np.ndarray]] = {}
    for path in files:
        schema_names = _schema_names(path)
        columns = list(EPISODE_COLUMNS) + [
            name for name in ("data/chunk_index", "data/file_index") if name in schema_names
        ]
        table = read_parquet(path, columns=columns)
        for name in ("data/chunk_index", "data/file_index"):
            if name not in table.column_names:
                table = table.append_column(name, pa.array(np.zeros(len(table), np.int64)))
        for name in table.column_names:
            parts.setdefault(name, []).append(np.asarray(table.column(name).to_numpy(), np.int64))
    episodes = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    order = np.argsort(episodes["episode_index"], kind="stable")
    episodes = {name: values[order] for name, values in episodes.items()}
    _check_episode_tiling(episodes, root / EPISODES_DIR, total_episodes)
    covered = int(episodes["dataset_to_index"][-1])
    if total_frames is not None and covered != total_frames:
        raise InputError(
            f"{root / EPISODES_DIR}: episodes cover {covered} frames but {root / INFO_PATH} says "
            f"total_frames={total_frames}"
        )
    return episodes


def _schema_names(path: Path) -> list[str]:
    try:
        return pq.read_schema(path).names
    except (pa.ArrowException, OSError) as error:
        raise InputError(f"{path}: not a readable parquet file ({error})") from error


def _check_episode_tiling(episodes: dict[str, np.ndarray], where: Path, total: int) -> None:
    """Episodes must be 0..E-1, each covering rows [from, to) back to back with to - from = length."""
    index = episodes["episode_index"]
    if len(index) != total:
        raise InputError(
            f"{where}: {len(index)} episodes listed but info.json says total_episodes={total}"
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
    return [Path(root) / template.format(chunk_index=c, file_index=f) for c, f in pairs]


def make_info(
    features: dict[str, dict[str, Any]],
    fps: int,
    total_episodes: int,
    total_frames: int,
    total_tasks: int,
    robot_type: str | None,
) -> dict[str, Any]:
    """The content of `meta/info.json` for an image (not video) dataset in one data file."""
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": total_episodes,
        "total_frames": total_frames,
        "total_tasks": total_tasks,
        "chunks_size": DEFAULT_CHUNK_SIZE,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500,
        "fps": fps,
        "splits": {"train": f"0:{total_episodes}"},
        "data_path": DATA_PATH,
        "video_path": None,
        "features": {**features, **DEFAULT_FEATURES},
    }
