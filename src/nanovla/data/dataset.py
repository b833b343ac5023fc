"""`EpisodeDataset`: a LeRobotDataset v3.0 loaded into arrays, frames decoded once to uint8.

Everything the loader needs lives in contiguous arrays indexed by the global frame index:
images (N, H, W, 3) uint8, states (N, D) and actions (N, A) float32, and the bookkeeping
columns. PNG frames are decoded exactly once, either into memory (`cache="memory"`) or into a
memmap file beside the dataset (`cache="memmap"`, `<root>/cache/<image_key>.uint8.npy`) that
later runs reuse while the data files it came from keep their size and modification time.

Departure from the seed's `CustomRobotDataset` (a `torch.utils.data.Dataset` that preprocesses
per sample in `__getitem__`): per-sample Python is the bottleneck of small-model training on a
CPU, so batches are built from these arrays by tensor indexing in `BatchLoader` instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nanovla.data.format import (
    ACTION_KEY,
    ENV_STATE_KEY,
    IMAGE_KEY,
    STATE_KEY,
    STATS_PATH,
    data_files,
    read_episodes,
    read_info,
    read_json,
    read_parquet,
    read_tasks,
    require_feature,
)
from nanovla.data.images import decode_image, image_cell_bytes
from nanovla.data.stats import STAT_NAMES, Stats, image_stats, stats_from_json, vector_stats
from nanovla.errors import InputError
from nanovla.progress import progress as progress_bar

CacheMode = Literal["memory", "memmap"]
BOOK_COLUMNS = ("episode_index", "frame_index", "index", "task_index")
"""Integer bookkeeping columns read from every data file."""


class EpisodeDataset:
    """A LeRobotDataset v3.0 (image features, not video) as validated numpy arrays.

    Attributes: `images` (N, H, W, 3) uint8, `states` (N, D) float32, `actions` (N, A) float32,
    `episode_index` / `frame_index` / `task_index` (N,) int64, `tasks` (task strings by
    task_index), `stats` (feature -> stat -> array), `episode_bounds` (E, 2) int64 rows
    [from, to) of each episode, `fps`, `features` (info.json's feature specs), `info`.
    """

    def __init__(
        self,
        root: Path | str,
        image_key: str = IMAGE_KEY,
        state_key: str = STATE_KEY,
        action_key: str = ACTION_KEY,
        cache: CacheMode = "memory",
        progress: bool = True,
    ) -> None:
        if cache not in ("memory", "memmap"):
            raise InputError(f"cache must be 'memory' or 'memmap', got {cache!r}")
        self.root = Path(root)
        self.image_key, self.state_key, self.action_key = image_key, state_key, action_key
        self.info: dict[str, Any] = read_info(self.root)
        self.fps = float(self.info["fps"])
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        require_feature(self.info, self.root, image_key, ("image",))
        require_feature(self.info, self.root, state_key, ("float32", "float64"))
        require_feature(self.info, self.root, action_key, ("float32", "float64"))
        episodes = read_episodes(
            self.root, int(self.info["total_episodes"]), int(self.info["total_frames"])
        )
        self.episode_bounds = np.stack(
            [episodes["dataset_from_index"], episodes["dataset_to_index"]], axis=1
        )  # (E, 2)
        self.tasks: list[str] = read_tasks(self.root)
        stats_path = self.root / STATS_PATH
        self.stats: dict[str, Stats] = (
            stats_from_json(read_json(stats_path), str(stats_path)) if stats_path.is_file() else {}
        )
        self._files = data_files(self.root, self.info, episodes)
        self._load_vectors(episodes)
        self.images = self._load_images(cache, progress)  # (N, H, W, 3) uint8
        self._complete_stats()

    def _complete_stats(self) -> None:
        """Compute the statistics of the three features the policy normalizes with where
        `meta/stats.json` lacks them (or is absent, as in some hand-made LeRobot datasets)."""
        computed = {
            self.state_key: lambda: vector_stats(self.states),
            self.action_key: lambda: vector_stats(self.actions),
            self.image_key: lambda: image_stats(np.asarray(self.images)),
        }
        for key, compute in computed.items():
            if not set(STAT_NAMES) <= set(self.stats.get(key, {})):
                self.stats[key] = {**compute(), **self.stats.get(key, {})}

    @property
    def num_episodes(self) -> int:
        return len(self.episode_bounds)

    @property
    def num_frames(self) -> int:
        return len(self.actions)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, 3) of every frame."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def state_dim(self) -> int:
        return self.states.shape[1]

    @property
    def action_dim(self) -> int:
        return self.actions.shape[1]

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One frame as numpy values (for inspection; training batches come from `BatchLoader`)."""
        if not -self.num_frames <= index < self.num_frames:
            raise IndexError(f"frame index {index} out of range for {self.num_frames} frames")
        return {
            self.image_key: self.images[index],
            self.state_key: self.states[index],
            self.action_key: self.actions[index],
            "task": self.tasks[int(self.task_index[index])],
            "task_index": int(self.task_index[index]),
            "episode_index": int(self.episode_index[index]),
            "frame_index": int(self.frame_index[index]),
        }

    def _load_vectors(self, episodes: dict[str, np.ndarray]) -> None:
        """States, actions and bookkeeping columns of every data file, validated."""
        parts: dict[str, list[np.ndarray]] = {}
        # The privileged subgoal feature is optional: loaded when the dataset has it.
        optional = (ENV_STATE_KEY,) if ENV_STATE_KEY in self.features else ()
        keys = (self.state_key, self.action_key, *optional)
        self._row_counts = []
        for path in self._files:
            table = read_parquet(path, columns=[*keys, *BOOK_COLUMNS])
            self._row_counts.append(len(table))
            for key in keys:
                parts.setdefault(key, []).append(_vector_column(table.column(key), path, key))
            for key in BOOK_COLUMNS:
                parts.setdefault(key, []).append(np.asarray(table.column(key).to_numpy(), np.int64))
        columns = {key: np.concatenate(chunks) for key, chunks in parts.items()}
        self.states, self.actions = columns[self.state_key], columns[self.action_key]
        self.env_states: np.ndarray | None = columns.get(ENV_STATE_KEY)  # (N, K) or None
        self.episode_index, self.frame_index = columns["episode_index"], columns["frame_index"]
        self.task_index = columns["task_index"]
        self._check_rows(columns, episodes)

    def _file_of_row(self, row: int) -> Path:
        return self._files[int(np.searchsorted(np.cumsum(self._row_counts), row, side="right"))]

    def _check_rows(self, columns: dict[str, np.ndarray], episodes: dict[str, np.ndarray]) -> None:
        """Rows must match the episode table; no NaN/inf in vectors; task indices in range."""
        lengths, starts = episodes["length"], episodes["dataset_from_index"]
        total = int(lengths.sum())
        if len(self.actions) != total:
            raise InputError(
                f"{self._files[0].parent}: data files hold {len(self.actions)} frames but "
                f"meta/episodes lists {total}"
            )
        expected = {
            "episode_index": np.repeat(np.arange(len(lengths)), lengths),
            "frame_index": np.arange(total) - np.repeat(starts, lengths),
            "index": np.arange(total),
        }
        for key, want in expected.items():
            bad = np.flatnonzero(columns[key] != want)
            if len(bad):
                row = int(bad[0])
                raise InputError(
                    f"{self._file_of_row(row)}: row {row} has {key}={columns[key][row]}, expected "
                    f"{want[row]} (episode {expected['episode_index'][row]} per meta/episodes)"
                )
        for key, values in ((self.state_key, self.states), (self.action_key, self.actions)):
            bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
            if len(bad):
                row = int(bad[0])
                raise InputError(
                    f"{self._file_of_row(row)}: NaN or inf in {key!r} at episode "
                    f"{self.episode_index[row]}, frame {self.frame_index[row]}"
                )
        bad = np.flatnonzero((self.task_index < 0) | (self.task_index >= len(self.tasks)))
        if len(bad):
            row = int(bad[0])
            raise InputError(
                f"{self._file_of_row(row)}: task_index {self.task_index[row]} at episode "
                f"{self.episode_index[row]} is not in meta/tasks.parquet ({len(self.tasks)} tasks)"
            )

    def _load_images(self, cache: CacheMode, progress: bool) -> np.ndarray:
        spec = self.features[self.image_key]
        shape = tuple(int(s) for s in spec["shape"])
        if spec.get("names") and list(spec["names"])[0] in ("channels", "channel"):
            shape = (shape[1], shape[2], shape[0])  # (C, H, W) spec -> (H, W, C) frames
        full_shape = (self.num_frames, *shape)
        if cache == "memory":
            frames = np.empty(full_shape, dtype=np.uint8)
            self._decode_into(frames, progress)
            return frames
        return self._memmap_images(full_shape, progress)

    def _memmap_images(self, full_shape: tuple[int, ...], progress: bool) -> np.ndarray:
        """Decode into `<root>/cache/<key>.uint8.npy` once; reuse it while the sources are unchanged."""
        cache_dir = self.root / "cache"
        array_path = cache_dir / f"{self.image_key}.uint8.npy"
        record_path = cache_dir / f"{self.image_key}.uint8.json"
        record = {
            "shape": list(full_shape),
            "sources": [_source_record(p, self.root) for p in self._files],
        }
        if array_path.is_file() and record_path.is_file():
            try:
                if json.loads(record_path.read_text()) == record:
                    # Copy-on-write: writable for torch, the file itself stays untouched.
                    return np.load(array_path, mmap_mode="c")
            except (json.JSONDecodeError, ValueError, OSError):
                pass  # a stale or damaged cache is rebuilt below
        cache_dir.mkdir(exist_ok=True)
        staging = array_path.with_name(f"{array_path.name}.tmp-{os.getpid()}")
        frames = np.lib.format.open_memmap(staging, mode="w+", dtype=np.uint8, shape=full_shape)
        try:
            self._decode_into(frames, progress)
            frames.flush()
            del frames
            os.replace(staging, array_path)
        finally:
            staging.unlink(missing_ok=True)
        record_path.write_text(json.dumps(record))
        return np.load(array_path, mmap_mode="c")

    def _decode_into(self, frames: np.ndarray, progress: bool) -> None:
        """Decode every PNG cell of the image column into `frames` (N, H, W, 3), in row order."""
        bar = progress_bar(
            total=len(frames), desc=f"decode {self.image_key}", unit="frame", enabled=progress
        )
        row = 0
        for path in self._files:
            column = read_parquet(path, columns=[self.image_key]).column(self.image_key)
            for data in image_cell_bytes(column, self.root, path):
                frame = _decode_checked(data, path, row, frames.shape[1:], self.episode_index)
                frames[row] = frame
                row += 1
                bar.update(1)
        bar.close()


def _decode_checked(
    data: bytes, path: Path, row: int, shape: tuple[int, ...], episode_index: np.ndarray
) -> np.ndarray:
    try:
        frame = decode_image(data)
    except OSError as error:
        raise InputError(
            f"{path}: undecodable image at episode {episode_index[row]} ({error})"
        ) from error
    if frame.shape != shape:
        raise InputError(
            f"{path}: image at episode {episode_index[row]} is {frame.shape}, info.json says {shape}"
        )
    return frame


def _vector_column(column: pa.ChunkedArray, path: Path, key: str) -> np.ndarray:
    """A list<float> / fixed_size_list<float> column as a (N, D) float32 array."""
    column = column.combine_chunks()
    kind = column.type
    if not (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    ):
        raise InputError(f"{path}: column {key!r} has type {kind}; expected a list of floats")
    if column.null_count:
        raise InputError(f"{path}: column {key!r} has {column.null_count} missing rows")
    widths = pc.list_value_length(column)
    if len(column) == 0 or pc.min(widths).as_py() != pc.max(widths).as_py():
        raise InputError(f"{path}: rows of column {key!r} do not all have the same length")
    flat = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    return flat.reshape(len(column), -1)


def _source_record(path: Path, root: Path) -> dict[str, Any]:
    status = path.stat()
    return {
        "path": str(path.relative_to(root)),
        "size": status.st_size,
        "mtime_ns": status.st_mtime_ns,
    }
