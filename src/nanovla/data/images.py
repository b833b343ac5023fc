"""PNG encoding and decoding of frames, the way HF datasets' `Image` feature stores them.

A LeRobot image feature is a parquet struct column `{bytes: binary, path: string}`: the PNG bytes
are embedded (path is informational) or, in datasets written with unembedded images, `bytes` is
null and `path` points to a PNG file relative to the dataset root.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from nanovla.errors import InputError

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
"""Arrow type of an image cell, identical to HF datasets' `Image()` feature."""

PNG_COMPRESS_LEVEL = 1
"""zlib level 1: rendered frames are flat-shaded, so level 1 is ~3x faster than 6 and barely larger."""


def encode_png(frame: np.ndarray) -> bytes:
    """PNG bytes of one RGB frame (H, W, 3) uint8."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(
            f"frame must be a (H, W, 3) uint8 array, got shape {frame.shape} dtype {frame.dtype}"
        )
    buffer = io.BytesIO()
    Image.fromarray(frame, mode="RGB").save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """Decode PNG (or any Pillow-readable) bytes into an RGB frame (H, W, 3) uint8."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def image_cell_bytes(column: pa.ChunkedArray | pa.Array, root: Path, source: Path) -> list[bytes]:
    """The encoded bytes of every cell of an image column, in row order.

    Accepts the HF struct form `{bytes, path}` (embedded bytes, or a path relative to `root` when
    bytes are null) and a plain binary column. `source` names the parquet file in errors.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        cells = column.to_pylist()
        paths: list[str | None] = [None] * len(cells)
    elif pa.types.is_struct(column.type) and column.type.get_field_index("bytes") >= 0:
        cells = column.field("bytes").to_pylist()
        has_path = column.type.get_field_index("path") >= 0
        paths = column.field("path").to_pylist() if has_path else [None] * len(cells)
    else:
        raise InputError(
            f"{source}: image column has type {column.type}; expected struct<bytes, path> "
            "(HF datasets Image) or binary"
        )
    out: list[bytes] = []
    for row, (data, path) in enumerate(zip(cells, paths)):
        if data is None:
            if path is None or not (root / path).is_file():
                raise InputError(f"{source}: image at row {row} has no bytes and no readable path")
            data = (root / path).read_bytes()
        out.append(data)
    return out
