"""`EpisodeDataset`: a LeRobotDataset v3.0 loaded into arrays, frames decoded once to uint8.

Everything the loader needs lives in contiguous arrays indexed by the global frame index:
images (N, H, W, 3) uint8, states (N, D) and actions (N, A) float32, and the bookkeeping
columns. PNG frames (or a video feature's MP4s, `data.video`) are decoded exactly once,
either into memory (`cache="memory"`) or into a memmap file beside the dataset
(`cache="memmap"`, `<root>/cache/<image_key>.uint8.npy`) that later runs reuse while the files
it came from keep their size and modification time. `cache="auto"` picks the memmap once the
decoded frames would exceed `AUTO_MEMMAP_BYTES` (2 GiB).

Departure from the seed's `CustomRobotDataset` (a `torch.utils.data.Dataset` that preprocesses
per sample in `__getitem__`): per-sample Python is the bottleneck of small-model training on a
CPU, so batches are built from these arrays by tensor indexing in `BatchLoader` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from nanovla.data import video
from nanovla.data.columns import _timestamp_column, _vector_column
from nanovla.data.format import (
    ACTION_KEY,
    ENV_STATE_KEY,
    IMAGE_KEY,
    INFO_PATH,
    STATE_KEY,
    STATS_PATH,
    check_declared_columns,
    int_column,
    parquet_schema,
    read_info,
    read_json,
    read_parquet,
    require_feature,
)
from nanovla.data.frames import FrameFileWriter, cached_frames, frame_cache_file
from nanovla.data.images import decode_image, image_cell_bytes
from nanovla.data.meta import data_files, read_episodes, read_tasks
from nanovla.data.stats import STAT_NAMES, Stats, image_stats, stats_from_json, vector_stats
from nanovla.errors import InputError
from nanovla.progress import progress as progress_bar

CacheMode = Literal["memory", "memmap", "auto"]
AUTO_MEMMAP_BYTES = 2 * 1024**3
"""`cache="auto"` decodes frames into memory up to this many bytes, into the memmap beyond"""
BOOK_COLUMNS = ("episode_index", "frame_index", "index", "task_index")
"""Integer bookkeeping columns read from every data file."""
TIMESTAMP_TOLERANCE_S = 1e-4
"""How far a frame's `timestamp` may be from frame_index / fps (LeRobot's tolerance_s)."""


class EpisodeDataset:
    """A LeRobotDataset v3.0 (an image or video camera feature) as validated numpy arrays.

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
        if cache not in ("memory", "memmap", "auto"):
            raise InputError(f"cache must be 'memory', 'memmap' or 'auto', got {cache!r}")
        self.root = Path(root)
        self.image_key, self.state_key, self.action_key = image_key, state_key, action_key
        self.info: dict[str, Any] = read_info(self.root)
        self._info_path = self.root / INFO_PATH
        self.fps = float(self.info["fps"])
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        require_feature(self.info, self.root, image_key, ("image", "video"))
        require_feature(self.info, self.root, state_key, ("float32", "float64"))
        require_feature(self.info, self.root, action_key, ("float32", "float64"))
        self._image_shape = self._declared_image_shape()
        episodes = read_episodes(
            self.root, int(self.info["total_episodes"]), int(self.info["total_frames"])
        )
        self.episode_bounds = np.stack(
            [episodes["dataset_from_index"], episodes["dataset_to_index"]], axis=1
        )  # (E, 2)
        self.tasks: list[str] = read_tasks(self.root, self.info.get("total_tasks"))
        stats_path = self.root / STATS_PATH
        self.stats: dict[str, Stats] = (
            stats_from_json(read_json(stats_path), str(stats_path)) if stats_path.is_file() else {}
        )
        self._files = data_files(self.root, self.info, episodes)
        self._load_vectors(episodes)
        self.images = self._load_images(cache, progress)  # (N, H, W, 3) uint8
        pa.default_memory_pool().release_unused()  # parquet read buffers (~230 MB at 1M frames)
        self._check_stats(stats_path)
        self._complete_stats()

    def _declared_image_shape(self) -> tuple[int, int, int]:
        """(H, W, 3) of the frames as info.json declares the image feature."""
        spec = self.features[self.image_key]
        shape = tuple(spec["shape"])
        names = spec.get("names")
        if isinstance(names, list) and names and names[0] in ("channels", "channel"):
            shape = shape[1:] + shape[:1]  # (C, H, W) spec -> (H, W, C) frames
        if len(shape) != 3 or shape[2] != 3:
            raise InputError(
                f"{self._info_path}: feature {self.image_key!r} has shape {spec['shape']}; "
                "expected [height, width, 3] RGB frames"
            )
        return shape  # type: ignore[return-value]

    def _check_stats(self, path: Path) -> None:
        """What `meta/stats.json` holds for the loaded features must fit the data: shapes (D,)
        for vectors and (3, 1, 1) for the image, finite values, std >= 0, min <= max, a count
        equal to the frames, and vector min / max equal to the data's (stale stats are an
        error: delete the entry or the file and the loader computes them)."""
        vectors = {self.state_key: self.states, self.action_key: self.actions}
        if self.env_states is not None:
            vectors[ENV_STATE_KEY] = self.env_states
        shapes = {key: (values.shape[1],) for key, values in vectors.items()}
        shapes[self.image_key] = (3, 1, 1)
        for key, shape in shapes.items():
            stats = self.stats.get(key, {})
            for name, value in stats.items():
                if name not in STAT_NAMES:
                    continue  # quantiles and other extras are not used
                want = (1,) if name == "count" else shape
                if value.size != int(np.prod(want)):
                    raise InputError(
                        f"{path}: {key}/{name} has shape {value.shape}, but the data's "
                        f"{key!r} needs {want}"
                    )
                stats[name] = value = value.reshape(want)
                if not np.isfinite(value).all():
                    raise InputError(f"{path}: {key}/{name} holds NaN or inf")
            if "std" in stats and (stats["std"] < 0).any():
                raise InputError(f"{path}: {key}/std is negative")
            if "min" in stats and "max" in stats and (stats["min"] > stats["max"]).any():
                raise InputError(f"{path}: {key}/min exceeds {key}/max")
            if "count" in stats and int(stats["count"][0]) != self.num_frames:
                raise InputError(
                    f"{path}: {key}/count is {stats['count'][0]:g}, but the data holds "
                    f"{self.num_frames} frames"
                )
            if key in vectors:
                for name, reduce in (("min", np.min), ("max", np.max)):
                    if name in stats:
                        actual = reduce(vectors[key], axis=0).astype(np.float64)
                        if not np.allclose(stats[name], actual, rtol=1e-6, atol=1e-6):
                            files = self._files[0] if len(self._files) == 1 else self._files
                            raise InputError(
                                f"{path}: {key}/{name} is {stats[name].tolist()}, but the data "
                                f"in {files} has {actual.tolist()} (stale stats, or changed "
                                "data? delete the entry and the loader computes it)"
                            )

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

    def read_feature(self, key: str) -> np.ndarray:
        """(N, K) float32 values of the declared vector feature `key` for every frame: the
        extras that are not loaded up front (e.g. DAgger's `action.executed`)."""
        require_feature(self.info, self.root, key, ("float32", "float64"))
        parts = [
            _vector_column(read_parquet(path, columns=[key]).column(key), path, key)
            for path in self._files
        ]
        return np.concatenate(parts).astype(np.float32, copy=False)

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
        """States, actions and bookkeeping columns of every data file, validated against
        info.json (every declared feature a column of the declared dtype, vector widths as
        declared, timestamps at the declared fps)."""
        parts: dict[str, list[np.ndarray]] = {}
        # The privileged subgoal feature is optional: loaded when the dataset has it.
        optional = (ENV_STATE_KEY,) if ENV_STATE_KEY in self.features else ()
        keys = (self.state_key, self.action_key, *optional)
        self._row_counts = []
        for path in self._files:
            schema = parquet_schema(path)
            check_declared_columns(schema, self.features, path, self._info_path)
            timestamp = ("timestamp",) if "timestamp" in schema.names else ()
            table = read_parquet(path, columns=[*keys, *BOOK_COLUMNS, *timestamp])
            self._row_counts.append(len(table))
            for key in keys:
                values = _vector_column(table.column(key), path, key)
                declared = self.features[key]["shape"]
                if len(declared) != 1 or values.shape[1] != declared[0]:
                    raise InputError(
                        f"{path}: column {key!r} holds {values.shape[1]} values per frame, but "
                        f"{self._info_path} declares feature {key!r} with shape {declared}"
                    )
                parts.setdefault(key, []).append(values)
            for key in BOOK_COLUMNS:
                parts.setdefault(key, []).append(int_column(table, key, path))
            if timestamp:
                parts.setdefault("timestamp", []).append(_timestamp_column(table, path))
            else:
                parts.setdefault("timestamp", []).append(np.full(len(table), np.nan))
        columns = {key: np.concatenate(chunks) for key, chunks in parts.items()}
        self.states, self.actions = columns[self.state_key], columns[self.action_key]
        self.env_states: np.ndarray | None = columns.get(ENV_STATE_KEY)  # (N, K) or None
        self.episode_index, self.frame_index = columns["episode_index"], columns["frame_index"]
        self.task_index = columns["task_index"]
        self._check_rows(columns, episodes)
        self._check_timestamps(columns["timestamp"])

    def _check_timestamps(self, timestamps: np.ndarray) -> None:
        """Each frame's timestamp (where the files hold one) is frame_index / fps."""
        expected = self.frame_index / self.fps
        tolerance = TIMESTAMP_TOLERANCE_S + 1e-6 * np.abs(expected)
        bad = np.flatnonzero(~np.isnan(timestamps) & ~(np.abs(timestamps - expected) <= tolerance))
        if len(bad):
            row = int(bad[0])
            raise InputError(
                f"{self._file_of_row(row)}: timestamp {timestamps[row]:.6g} s at episode "
                f"{self.episode_index[row]}, frame {self.frame_index[row]} does not match "
                f"fps={self.info['fps']} declared in {self._info_path} (expected "
                f"{expected[row]:.6g} s)"
            )

    def _file_of_row(self, row: int) -> Path:
        return self._files[int(np.searchsorted(np.cumsum(self._row_counts), row, side="right"))]

    def _check_rows(self, columns: dict[str, np.ndarray], episodes: dict[str, np.ndarray]) -> None:
        """Rows must match the episode table; no NaN/inf in vectors; task indices in range."""
        lengths, starts = episodes["length"], episodes["dataset_from_index"]
        total = int(lengths.sum())
        if len(self.actions) != total:
            files = self._files[0] if len(self._files) == 1 else self._files[0].parent
            raise InputError(
                f"{files}: data files hold {len(self.actions)} frames but "
                f"{self.root / 'meta/episodes'} lists {total}"
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
        if "tasks" in episodes:  # LeRobot's per-episode task list: the frames must agree
            pairs = np.unique(np.stack([self.episode_index, self.task_index], axis=1), axis=0)
            for episode, task in pairs.tolist():
                if self.tasks[task] not in episodes["tasks"][episode]:
                    row = int(np.flatnonzero(self.episode_index == episode)[0])
                    raise InputError(
                        f"{self._file_of_row(row)}: episode {episode} has frames of task "
                        f"{self.tasks[task]!r} (task_index {task} in meta/tasks.parquet), but "
                        f"meta/episodes lists its tasks as {list(episodes['tasks'][episode])}"
                    )

    def _load_images(self, cache: CacheMode, progress: bool) -> np.ndarray:
        full_shape = (self.num_frames, *self._image_shape)
        if cache == "auto":
            cache = "memmap" if int(np.prod(full_shape)) > AUTO_MEMMAP_BYTES else "memory"
        if cache == "memory":
            return self._decode_into(lambda: np.empty(full_shape, dtype=np.uint8), progress)
        return self._memmap_images(full_shape, progress)

    def _memmap_images(self, full_shape: tuple[int, ...], progress: bool) -> np.ndarray:
        """The frames decoded once into `<root>/cache/<key>.uint8.npy` (`data/frames.py`)."""
        return cached_frames(
            frame_cache_file(self.root, self.image_key),
            full_shape,
            self._frame_sources(),
            self.root,
            lambda allocate: self._decode_into(allocate, progress),
        )

    def _is_video(self) -> bool:
        return self.features[self.image_key]["dtype"] == "video"

    def _frame_sources(self) -> list[Path]:
        """The files the frames are decoded from (the data files, and the MP4s of a video)."""
        if not self._is_video():
            return self._files
        index = video.read_video_index(self.root, self.image_key, self.num_episodes)
        return self._files + video.video_files(self.root, self.info, self.image_key, index)

    def _decode_into(
        self, allocate: Callable[[], np.ndarray | FrameFileWriter], progress: bool
    ) -> np.ndarray | FrameFileWriter:
        """Decode every image cell (or a video feature's MP4 frames) into the (N, H, W, 3)
        array `allocate()` returns, in row order; a PNG array is allocated only after the first
        frame proved the declared shape."""
        if self._is_video():
            return video.decode_videos(
                self.root, self.info, self.image_key, self.episode_index, self.frame_index,
                self._image_shape, allocate, progress,
            )  # fmt: skip
        bar = progress_bar(
            total=self.num_frames, desc=f"decode {self.image_key}", unit="frame", enabled=progress
        )
        frames: np.ndarray | None = None
        row = 0
        for path, count in zip(self._files, self._row_counts):
            column = read_parquet(path, columns=[self.image_key]).column(self.image_key)
            cells = image_cell_bytes(column, self.root, path)
            if len(cells) != count:
                raise InputError(f"{path}: {len(cells)} image cells for {count} rows")
            for data in cells:
                frame = self._decode_checked(data, path, row)
                if frames is None:
                    frames = allocate()
                frames[row] = frame
                row += 1
                bar.update(1)
        bar.close()
        assert frames is not None  # read_info insists on total_episodes >= 1
        return frames

    def _decode_checked(self, data: bytes, path: Path, row: int) -> np.ndarray:
        try:
            return decode_image(data, self._image_shape)
        except InputError as error:
            raise InputError(
                f"{path}: column {self.image_key!r} at episode {self.episode_index[row]}, frame "
                f"{self.frame_index[row]}: {error} ({self._info_path} declares "
                f"{list(self._image_shape)})"
            ) from error
