"""The memmapped frame cache: built once, reused while its sources are unchanged, and read
and written without mapping its pages into this process.

`EpisodeDataset(cache="memmap")` keeps its decoded frames in `<root>/cache/<key>.uint8.npy` and
exposes them as an `np.memmap`. Indexing that array maps the pages it touches into the process:
after one epoch of random batches every frame is resident, and the process's RSS has grown by the
whole file (1.4 GB for the default 6000 episodes, 14 GB for 60,000). The kernel may drop those
pages under pressure, but RSS, `VmHWM` and a container's memory limit count them.

`FrameFile` reads the rows of a batch with `os.preadv` into a fresh buffer instead: the file's
pages live in the OS page cache (shared, evictable, not this process's memory) and the process
holds only the batch it asked for. A batch of 256 frames is 256 reads of 12 KiB, well under a
millisecond on this machine next to a training step of ~100 ms (`benchmarks/train_throughput.py
--frame-cache memmap` prints the loader's share).
"""

from __future__ import annotations

import io
import json
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nanovla.errors import InputError


def is_frame_file(images: np.ndarray) -> bool:
    """Whether `images` is a C-contiguous (N, H, W, C) uint8 memmap spanning the rest of its
    file from its offset: the whole frame cache, not a slice of it (a slice keeps its parent's
    `offset`, so its rows could not be located in the file)."""
    if not isinstance(images, np.memmap) or images.filename is None:
        return False
    if images.dtype != np.uint8 or images.ndim != 4 or not images.flags.c_contiguous:
        return False
    try:
        return os.path.getsize(images.filename) == int(images.offset) + images.nbytes
    except OSError:
        return False


class FrameFile:
    """Rows of an (N, H, W, C) uint8 `np.memmap` read by `pread` (see the module docstring).

    Safe across `fork` (each process opens its own descriptor) and picklable (by path and offset).
    """

    def __init__(self, images: np.memmap) -> None:
        if not is_frame_file(images):
            raise InputError(
                "FrameFile needs the whole (N, H, W, C) uint8 np.memmap of a frame cache file, "
                f"got {type(images).__name__} {images.dtype} {images.shape}"
            )
        self.path = Path(images.filename)
        self.offset = int(images.offset)
        self.shape: tuple[int, ...] = tuple(images.shape)
        self.frame_bytes = int(np.prod(self.shape[1:]))
        self._fd: int | None = None
        self._pid = -1

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Close this process's descriptor (reads reopen it)."""
        # getattr: __del__ also runs on an instance whose __init__ raised before setting _fd
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def read(self, rows: np.ndarray) -> np.ndarray:
        """(B, H, W, C) uint8 copy of frames `rows` (any order, repeats allowed)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= self.shape[0]):
            raise InputError(f"{self.path}: frame rows must lie in [0, {self.shape[0]})")
        out = np.empty((rows.size, *self.shape[1:]), dtype=np.uint8)
        flat = out.reshape(rows.size, self.frame_bytes)
        fd, size = self._descriptor(), self.frame_bytes
        for i, row in enumerate(rows.tolist()):
            got = os.preadv(fd, [flat[i]], self.offset + row * size)
            if got != size:
                raise InputError(f"{self.path}: short read at frame {row} ({got} of {size} bytes)")
        return out


class FrameFileWriter:
    """Writes frames into a new (N, H, W, C) uint8 `.npy` file with `pwrite`, row by row
    (`writer[row] = frame`), so decoding a large cache never maps the file into the process
    (a `w+` memmap would hold every written page resident until it is unmapped)."""

    def __init__(self, path: str | Path, shape: tuple[int, ...]) -> None:
        self.path, self.shape = Path(path), tuple(int(n) for n in shape)
        header = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.uint8, shape=self.shape)
        self.offset = int(header.offset)  # the .npy header is written; the data is sparse
        del header
        self.frame_bytes = int(np.prod(self.shape[1:]))
        self._fd = os.open(self.path, os.O_WRONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __setitem__(self, row: int, frame: np.ndarray) -> None:
        if not 0 <= row < self.shape[0]:
            raise InputError(f"{self.path}: frame row {row} outside [0, {self.shape[0]})")
        data = np.ascontiguousarray(frame, dtype=np.uint8)
        if data.shape != self.shape[1:]:
            raise InputError(f"{self.path}: frame of shape {data.shape}, expected {self.shape[1:]}")
        os.pwrite(self._fd, data, self.offset + row * self.frame_bytes)

    def flush(self) -> None:
        """Write everything to disk and close the file (the writer cannot be used after)."""
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)
            self._fd = -1


def cached_frames(
    array_path: Path,
    shape: tuple[int, ...],
    sources: list[Path],
    root: Path,
    decode_into: Callable[[Callable[[], FrameFileWriter]], FrameFileWriter],
) -> np.memmap:
    """The (N, H, W, C) uint8 frame cache at `array_path`, decoded once by `decode_into(allocate)`
    (which fills the writer `allocate()` returns) and reused while the `sources` (paths under
    `root`) keep their size and modification time and the file still has the CRC-32 recorded
    when it was written (a damaged cache is rebuilt, never trusted). The record lies beside it
    (`<key>.uint8.json`); a build goes to `<name>.tmp-<pid>` and is renamed into place, so a
    reader never sees half a cache, and the leftovers of killed builds are removed."""
    record_path = record_path_of(array_path)
    record = _record(shape, sources, root)
    if array_path.is_file() and record_path.is_file():
        try:
            saved = json.loads(record_path.read_text())
            crc = saved.pop("crc32", None) if isinstance(saved, dict) else None
            if saved == record and crc == _file_crc32(array_path):
                # Copy-on-write: writable for torch, the file itself stays untouched.
                cached = np.load(array_path, mmap_mode="c")
                if cached.shape == tuple(shape) and cached.dtype == np.uint8:
                    return cached
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError, OSError):
            pass  # a stale or damaged cache is rebuilt below
    _remove_stale_staging(array_path)
    staging = array_path.with_name(f"{array_path.name}.tmp-{os.getpid()}")

    def allocate() -> FrameFileWriter:  # pwrite, not a w+ memmap: RSS stays flat
        array_path.parent.mkdir(exist_ok=True)
        return FrameFileWriter(staging, shape)

    try:
        frames = decode_into(allocate)
        frames.flush()
        del frames
        os.replace(staging, array_path)
    finally:
        staging.unlink(missing_ok=True)
    record_path.write_text(json.dumps({**record, "crc32": _file_crc32(array_path)}))
    return np.load(array_path, mmap_mode="c")


def frame_cache_file(root: Path, image_key: str) -> Path:
    """Where the memmap frame cache of dataset `root`'s image feature `image_key` lives."""
    return Path(root) / "cache" / f"{image_key}.uint8.npy"


def record_path_of(array_path: Path) -> Path:
    """`<key>.uint8.json` beside the cache `<key>.uint8.npy`: its shape, sources and CRC-32."""
    return array_path.with_name(array_path.name.removesuffix(".npy") + ".json")


def _record(shape: tuple[int, ...], sources: list[Path], root: Path) -> dict[str, Any]:
    return {"shape": list(shape), "sources": [_source_record(p, root) for p in sources]}


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """The .npy (version 1.0) header of a C-ordered uint8 array of `shape`. numpy pads it so
    the first dimension may grow to 21 digits without changing its length."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "|u1", "fortran_order": False, "shape": tuple(shape)}
    )
    return buffer.getvalue()


class FrameSpool:
    """The frame cache written while a dataset is recorded, from the frames in hand: a
    `DatasetWriter(frame_cache=True)` appends every episode's (T, H, W, C) frames as it keeps
    them, and `finish` turns the file into the cache `cached_frames` would have decoded, with
    its record, so the first memmap load of a fresh dataset decodes no PNG (on the default run,
    ~15 s of decoding 110k frames that were encoded seconds before).

    The frames are appended after a placeholder .npy header of the final length (numpy's
    header does not grow with the frame count), which `finish` overwrites: no copy of the data.
    """

    def __init__(self, path: str | Path, frame_shape: tuple[int, ...]) -> None:
        self.path, self.frame_shape = Path(path), tuple(int(n) for n in frame_shape)
        self.count = 0
        self._header_bytes = len(_npy_header((0, *self.frame_shape)))
        self._file: io.BufferedWriter | None = open(self.path, "wb")  # noqa: SIM115
        self._file.write(b"\0" * self._header_bytes)

    def append(self, frames: np.ndarray) -> None:
        """Append frames (T, H, W, C) uint8 after those appended before."""
        if self._file is None:
            raise InputError(f"{self.path}: the frame spool is closed")
        if frames.dtype != np.uint8 or tuple(frames.shape[1:]) != self.frame_shape:
            raise InputError(
                f"{self.path}: frames {frames.dtype} {tuple(frames.shape)}, expected uint8 "
                f"(T, {', '.join(map(str, self.frame_shape))})"
            )
        self._file.write(np.ascontiguousarray(frames).data)
        self.count += len(frames)

    def finish(self, array_path: Path, sources: list[Path], root: Path) -> None:
        """Write the real header, move the file to `array_path` (same file system) and write
        its record: `cached_frames(array_path, shape, sources, root, ...)` then reuses it."""
        if self._file is None:
            raise InputError(f"{self.path}: the frame spool is closed")
        shape = (self.count, *self.frame_shape)
        header = _npy_header(shape)
        if len(header) != self._header_bytes:  # numpy changed its padding rule: not the cache
            raise InputError(f"{self.path}: .npy header of {shape} is {len(header)} bytes")
        self._file.seek(0)
        self._file.write(header)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        array_path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, array_path)
        record = {**_record(shape, sources, root), "crc32": _file_crc32(array_path)}
        record_path_of(array_path).write_text(json.dumps(record))

    def discard(self) -> None:
        """Close and delete the spool (the dataset will decode its frames when loaded)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)


def _remove_stale_staging(array_path: Path) -> None:
    """Delete `<cache>.tmp-<pid>` files whose process is gone (a build killed by a signal never
    reached its `finally`); a build still running in another process keeps its file."""
    for stale in array_path.parent.glob(f"{array_path.name}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except PermissionError:
            pass  # another user's live process


def _file_crc32(path: Path, chunk: int = 1 << 24) -> int:
    """CRC-32 of a file, read in 16 MiB chunks (plain reads: page cache, not this process's RSS)."""
    crc = 0
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as file:
        while count := file.readinto(buffer):
            crc = zlib.crc32(view[:count], crc)
    return crc


def _source_record(path: Path, root: Path) -> dict[str, Any]:
    status = path.stat()
    return {
        "path": str(path.relative_to(root)),
        "size": status.st_size,
        "mtime_ns": status.st_mtime_ns,
    }
