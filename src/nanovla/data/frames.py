"""Reading rows of the memmapped frame cache without mapping them into this process.

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

import os
from pathlib import Path

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
        if self._fd is not None and self._pid == os.getpid():
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
