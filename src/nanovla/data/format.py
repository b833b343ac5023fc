"""The LeRobotDataset v3.0 layout on disk: paths, `meta/info.json`, and validated meta reading.

```
<root>/
  meta/info.json                              schema, fps, totals, path templates, splits
  meta/stats.json                             min/max/mean/std/count per feature
  meta/tasks.parquet                          task string -> task_index
  meta/episodes/chunk-000/file-000.parquet    one row per episode: length, row range, tasks, stats
  data/chunk-000/file-000.parquet             one row per frame
```

Every reader here raises ONE clear error naming the file (and key, column or episode) on bad
input: `MissingError` (a FileNotFoundError) for missing files, `InputError` (a ValueError) for
anything unreadable, mistyped or inconsistent; pyarrow's and json's own errors never escape.
Parquet pages that carry a CRC are verified on read.
Readers are lenient the way LeRobot's own datasets need: features the loader does not use are
checked (declared, present, of the declared dtype) but not read, the bookkeeping columns may be
left out of `features`,
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
from nanovla.io import read_json

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


PARQUET_ERRORS = (pa.ArrowException, OSError, ValueError, TypeError, KeyError, IndexError)
"""What pyarrow raises on a damaged parquet file (thrift, footer, page and decoding errors)."""


def parquet_schema(path: Path) -> pa.Schema:
    """The arrow schema of a parquet file (footer only), errors naming the file."""
    if not path.is_file():
        raise MissingError(f"{path}: file not found")
    try:
        return pq.read_schema(path)
    except PARQUET_ERRORS as error:
        raise InputError(f"{path}: not a readable parquet file ({_one_line(error)})") from error


def parquet_columns(path: Path) -> list[str]:
    """Top-level column names of a parquet file (footer only), errors naming the file."""
    return parquet_schema(path).names


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """`pq.read_table` whose errors name the file: missing, truncated/corrupt, missing columns.

    Page checksums are verified where the writer stored them (`write_page_checksum=True`).
    """
    names = parquet_columns(path)
    if columns is not None:
        missing = [name for name in columns if name not in names]
        if missing:
            raise InputError(f"{path}: missing column(s) {missing}; present: {sorted(names)}")
    try:
        return pq.read_table(path, columns=columns, page_checksum_verification=True)
    except PARQUET_ERRORS as error:
        raise InputError(f"{path}: not a readable parquet file ({_one_line(error)})") from error


def _one_line(error: BaseException) -> str:
    """A library error's message on one line (pyarrow's often span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def int_column(table: pa.Table, name: str, path: Path) -> np.ndarray:
    """Integer column `name` of `table` as (N,) int64; another type or a null -> InputError."""
    column = table.column(name)
    if not pa.types.is_integer(column.type):
        raise InputError(f"{path}: column {name!r} has type {column.type}; expected integers")
    if column.null_count:
        raise InputError(f"{path}: column {name!r} has {column.null_count} missing (null) rows")
    return np.asarray(column.to_numpy(), dtype=np.int64)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_info(root: Path) -> dict[str, Any]:
    """`meta/info.json`, checked for the v3.0 codebase version and the fields the loader needs.

    Checked here (types only; what the files hold is checked by the loader against these):
    `fps` a positive number, `total_episodes` >= 1 and `total_frames` / `total_tasks` >= 0
    integers, `features` an object of `{"dtype": str, "shape": [positive ints]}` specs,
    `data_path` a template with `{chunk_index}` and `{file_index}`.
    """
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
    fps = info["fps"]
    if not (isinstance(fps, int | float) and not isinstance(fps, bool) and 0 < fps < 1e6):
        raise InputError(f"{path}: 'fps' must be a positive number, got {fps!r}")
    for key, least in (("total_episodes", 1), ("total_frames", 0), ("total_tasks", 0)):
        if key in info and not (_is_int(info[key]) and info[key] >= least):
            raise InputError(f"{path}: {key!r} must be an integer >= {least}, got {info[key]!r}")
    if not isinstance(info["features"], dict):
        raise InputError(f"{path}: 'features' must be an object of feature specs")
    for key, spec in info["features"].items():
        _check_spec(path, key, spec)
    template = info.get("data_path")
    if template is not None:
        try:
            if not isinstance(template, str):
                raise TypeError(f"a string, got {template!r}")
            template.format(chunk_index=0, file_index=0)
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as error:
            raise InputError(
                f"{path}: 'data_path' must be a template like {DATA_PATH!r} ({error})"
            ) from error
    return info


def _check_spec(path: Path, key: str, spec: Any) -> None:
    """One feature spec of info.json: an object with a dtype string and a shape of positive ints."""
    if not isinstance(spec, dict):
        raise InputError(f"{path}: feature {key!r} must be an object, got {spec!r}")
    if not isinstance(spec.get("dtype"), str):
        raise InputError(
            f"{path}: feature {key!r} has no 'dtype' string (got {spec.get('dtype')!r})"
        )
    shape = spec.get("shape")
    if not (isinstance(shape, list) and shape and all(_is_int(s) and s >= 1 for s in shape)):
        raise InputError(
            f"{path}: feature {key!r} 'shape' must be a list of positive integers, got {shape!r}"
        )
    names = spec.get("names")
    if names is not None and not isinstance(names, list | dict):
        raise InputError(f"{path}: feature {key!r} 'names' must be a list or null, got {names!r}")


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


ARROW_DTYPES: dict[str, tuple[pa.DataType, ...]] = {
    "float16": (pa.float16(),),
    "float32": (pa.float32(),),
    "float64": (pa.float64(),),
    "int8": (pa.int8(),),
    "int16": (pa.int16(),),
    "int32": (pa.int32(),),
    "int64": (pa.int64(),),
    "uint8": (pa.uint8(),),
    "uint16": (pa.uint16(),),
    "uint32": (pa.uint32(),),
    "uint64": (pa.uint64(),),
    "bool": (pa.bool_(),),
    "string": (pa.string(), pa.large_string()),
}
"""Arrow value types that hold each info.json dtype."""


def check_declared_columns(
    schema: pa.Schema, features: dict[str, dict[str, Any]], path: Path, info_path: Path
) -> None:
    """Every feature info.json declares (videos aside) is a column of the data file `path`, of
    the declared dtype: a scalar column for shape [1] or a list column of that dtype; an image
    is a `struct<bytes, path>` or binary column. Every column of the file is declared, except
    LeRobot's bookkeeping columns (`DEFAULT_FEATURES`), which older info.json files omit."""
    missing = [
        k for k, spec in features.items() if spec["dtype"] != "video" and k not in schema.names
    ]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {missing}, declared as features in {info_path}; "
            f"present: {sorted(schema.names)}"
        )
    undeclared = [n for n in schema.names if n not in features and n not in DEFAULT_FEATURES]
    if undeclared:
        raise InputError(
            f"{path}: column(s) {undeclared} are not declared as features in {info_path} "
            "(declare them, or drop them from the file)"
        )
    for key, spec in features.items():
        dtype = spec["dtype"]
        if dtype == "video":
            continue
        kind = schema.field(key).type
        if dtype == "image":
            ok = (
                pa.types.is_struct(kind)
                or pa.types.is_binary(kind)
                or pa.types.is_large_binary(kind)
            )
        elif dtype in ARROW_DTYPES:
            value = kind
            if (
                pa.types.is_list(kind)
                or pa.types.is_large_list(kind)
                or pa.types.is_fixed_size_list(kind)
            ):
                value = kind.value_type
            elif spec["shape"] != [1]:
                value = None  # a non-scalar feature must be a list column
            ok = value in ARROW_DTYPES[dtype]
        else:
            continue  # a dtype this loader does not know (LeRobot extensions): not read
        if not ok:
            raise InputError(
                f"{path}: column {key!r} has type {kind}, but {info_path} declares dtype "
                f"{dtype!r} with shape {spec['shape']}"
            )


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
