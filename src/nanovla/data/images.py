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


IMAGE_FORMATS = ("PNG", "JPEG")
"""Encodings the decoder accepts (what HF datasets' `Image` feature writes); other Pillow
plugins are never tried on dataset bytes."""


def decode_image(data: bytes, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Decode PNG (or JPEG) bytes into an RGB frame (H, W, 3) uint8.

    Every PNG chunk's CRC is verified first, so a flipped bit is an error rather than a wrong
    pixel. With `shape` (H, W, 3) the size in the header is checked before any pixel is
    decoded (a corrupt header cannot make it allocate a huge frame). Only RGB images are
    accepted (a grayscale, palette or RGBA frame is not what a 3-channel feature declares).
    Any failure is an InputError (its message says what is wrong, the caller names the file).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InputError(f"image cell holds {type(data).__name__}, expected encoded bytes")
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            kind, size, mode = image.format, image.size, image.mode
            if kind == "PNG":
                image.verify()  # every chunk's CRC; the image must be reopened after this
    except Exception as error:  # Pillow raises many types (SyntaxError, struct.error, ...)
        raise InputError(f"not a readable PNG/JPEG image ({_one_line(error)})") from error
    if shape is not None and (size[1], size[0], 3) != tuple(shape):
        raise InputError(f"image is {size[1]}x{size[0]}, expected {shape[0]}x{shape[1]}")
    if mode != "RGB":
        raise InputError(f"image has mode {mode!r}, expected 'RGB' (3 channels)")
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            image.load()
            frame = np.asarray(image)
    except Exception as error:
        raise InputError(f"undecodable image ({_one_line(error)})") from error
    if frame.dtype != np.uint8 or frame.shape != (size[1], size[0], 3):
        raise InputError(f"image decodes to {frame.shape} {frame.dtype}, expected (H, W, 3) uint8")
    return frame


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def image_cell_bytes(column: pa.ChunkedArray | pa.Array, root: Path, source: Path) -> list[bytes]:
    """The encoded bytes of every cell of an image column, in row order.

    Accepts the HF struct form `{bytes, path}` (embedded bytes, or a path relative to `root` when
    bytes are null) and a plain binary column. `source` names the parquet file in errors; a
    path must stay inside `root`.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    binary = (pa.types.is_binary, pa.types.is_large_binary)
    strings = (pa.types.is_string, pa.types.is_large_string)
    if any(check(column.type) for check in binary):
        cells = column.to_pylist()
        paths: list[str | None] = [None] * len(cells)
    elif pa.types.is_struct(column.type) and column.type.get_field_index("bytes") >= 0:
        if not any(check(column.type.field("bytes").type) for check in binary):
            raise InputError(
                f"{source}: image field 'bytes' has type {column.type.field('bytes').type}; "
                "expected binary"
            )
        has_path = column.type.get_field_index("path") >= 0
        if has_path and not any(check(column.type.field("path").type) for check in strings):
            raise InputError(
                f"{source}: image field 'path' has type {column.type.field('path').type}; "
                "expected string"
            )
        cells = column.field("bytes").to_pylist()
        paths = column.field("path").to_pylist() if has_path else [None] * len(cells)
        if column.null_count:
            nulls = column.is_null().to_pylist()
            cells = [None if null else cell for null, cell in zip(nulls, cells)]
            paths = [None if null else path for null, path in zip(nulls, paths)]
    else:
        raise InputError(
            f"{source}: image column has type {column.type}; expected struct<bytes, path> "
            "(HF datasets Image) or binary"
        )
    out: list[bytes] = []
    resolved_root = root.resolve()
    for row, (data, path) in enumerate(zip(cells, paths)):
        if data is None:
            file = (root / path).resolve() if path else None
            if file is None or not file.is_relative_to(resolved_root) or not file.is_file():
                raise InputError(
                    f"{source}: image at row {row} has no bytes and no readable path inside "
                    f"{root} (path {path!r})"
                )
            data = file.read_bytes()
        out.append(data)
    return out
