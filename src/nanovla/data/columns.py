"""Arrow columns of a LeRobot data file as numpy arrays, with errors naming the file and column
(moved out of `dataset.py`, which reads every data file through these)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nanovla.errors import InputError


def _vector_column(column: pa.ChunkedArray, path: Path, key: str) -> np.ndarray:
    """A list<float> / fixed_size_list<float> column as a (N, D) float32 array."""
    column = column.combine_chunks()
    kind = column.type
    if not (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    ) or not pa.types.is_floating(kind.value_type):
        raise InputError(f"{path}: column {key!r} has type {kind}; expected a list of floats")
    if column.null_count:
        raise InputError(f"{path}: column {key!r} has {column.null_count} missing rows")
    if len(column) == 0:
        raise InputError(f"{path}: column {key!r} has no rows")
    widths = pc.list_value_length(column)
    if pc.min(widths).as_py() != pc.max(widths).as_py() or pc.min(widths).as_py() == 0:
        raise InputError(f"{path}: rows of column {key!r} do not all have the same length")
    values = column.flatten()
    if values.null_count:
        raise InputError(f"{path}: column {key!r} has {values.null_count} missing (null) values")
    flat = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32)
    return flat.reshape(len(column), -1)


def _timestamp_column(table: pa.Table, path: Path) -> np.ndarray:
    """The `timestamp` column (seconds) as (N,) float64; another type or a null -> InputError."""
    column = table.column("timestamp")
    if not pa.types.is_floating(column.type):
        raise InputError(f"{path}: column 'timestamp' has type {column.type}; expected floats")
    if column.null_count:
        raise InputError(f"{path}: column 'timestamp' has {column.null_count} missing rows")
    values = np.asarray(column.to_numpy(), dtype=np.float64)
    if not np.isfinite(values).all():
        raise InputError(f"{path}: column 'timestamp' holds NaN or inf")
    return values
