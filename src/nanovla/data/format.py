"""The LeRobotDataset v3.0 layout on disk: paths, feature keys, `meta/info.json` reading and
checking (the other meta files: `data/meta.py`).

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


def tasks_table(tasks: list[str]) -> pa.Table:
    """`meta/tasks.parquet` as pandas writes LeRobot's DataFrame(task_index, index=task strings):
    the strings in `__index_level_0__`, and the `pandas` schema note that makes
    `pd.read_parquet` restore them as the index (written by hand: pandas is not a dependency)."""
    table = pa.table(
        {
            "task_index": pa.array(np.arange(len(tasks), dtype=np.int64)),
            "__index_level_0__": pa.array(tasks, type=pa.string()),
        }
    )
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": None,
                "field_name": "__index_level_0__",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
    }
    return table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})


def hf_features(table: pa.Table, image_key: str) -> dict[str, Any]:
    """HF datasets' schema note, so `datasets.load_dataset` decodes images as PIL like LeRobot's."""
    features: dict[str, Any] = {}
    for column in table.schema:
        if column.name == image_key:
            features[column.name] = {"_type": "Image"}
        elif pa.types.is_list(column.type):
            value = {"dtype": hf_dtype(column.type.value_type), "_type": "Value"}
            features[column.name] = {"feature": value, "_type": "Sequence"}
        else:
            features[column.name] = {"dtype": hf_dtype(column.type), "_type": "Value"}
    return {"info": {"features": features}}


def hf_dtype(arrow_type: pa.DataType) -> str:
    """HF `Value` dtype name of an arrow type (arrow says "float" where HF says "float32")."""
    return {"float": "float32", "double": "float64", "halffloat": "float16"}.get(
        str(arrow_type), str(arrow_type)
    )
