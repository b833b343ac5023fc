"""Write episodes as a LeRobotDataset v3.0 (images as embedded PNG, one data file; or, with
`video=VideoOptions()`, as MP4 under `videos/` in LeRobot's video layout, see `data.video`).

`DatasetWriter` takes whole episodes as they finish (collection records many envs at once), keeps
their PNG bytes and vectors in memory, and writes everything on `finalize()` into a temporary
directory `<root>.tmp-<pid>-XXXX` that is then renamed to `<root>`: a crash, `kill -9` or Ctrl-C
never leaves a half-written dataset at `<root>`, and an existing dataset is replaced only with
`overwrite=True` (moved aside to `<root>.old-<pid>-XXXX` while the new one is renamed in).
What a killed writer leaves beside `<root>` is removed by `remove_unfinished(root)` (called by
every `finalize()` and at the start of a collection): its temporary directory is deleted, and an
old dataset it had moved aside is renamed back when nothing took its place. A failed write (a
full disk, a read-only directory) raises an OSError naming the path, and removes the temporary
directory. The staging and clean-up helpers live in `data.staging`.

With `frame_cache=True` the writer also spools every kept frame, raw, into a file in the staging
directory (created with the first episode) and turns it into the memmap frame cache on
`finalize()` (`data.frames.FrameSpool`): a fresh dataset's first memmap load decodes no PNG.

Departure from LeRobot: LeRobot writes each episode as it ends (and rolls files over at 100 MB);
our datasets are small (tens of MB), so one data file written at the end is simpler and atomic.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nanovla.data.format import (
    ACTION_KEY,
    DATA_PATH,
    EPISODES_PATH,
    IMAGE_KEY,
    INFO_PATH,
    STATE_KEY,
    STATS_PATH,
    TASKS_PATH,
    hf_features,
    make_info,
    tasks_table,
)
from nanovla.data.frames import FrameSpool, frame_cache_file
from nanovla.data.images import IMAGE_STRUCT, decode_image, encode_png
from nanovla.data.staging import (
    _ACTIVE,
    _refuse_existing,
    _replace_dir,
    _staging_prefix,
    remove_unfinished,
)
from nanovla.data.stats import Stats, aggregate_stats, image_stats, stats_to_json, vector_stats
from nanovla.data.video import VIDEO_PATH, VideoOptions, video_feature, write_videos
from nanovla.errors import InputError


@dataclass
class Episode:
    """One recorded episode: the frame observed at each step and the action taken there."""

    images: np.ndarray
    """(T, H, W, 3) uint8 camera frames"""
    states: np.ndarray
    """(T, D) float32 proprioceptive states"""
    actions: np.ndarray
    """(T, A) float32 actions taken at each frame"""
    task: str
    """the instruction given for the whole episode (LeRobot's task string)"""
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    """more (T, K) float32 features to store, e.g. `observation.environment_state` (subgoals)"""


class DatasetWriter:
    """Collects episodes and writes them atomically as a LeRobotDataset v3.0 at `root`.

    Use as a context manager (finalizes on a clean exit, discards on an exception) or call
    `finalize()` yourself. All episodes must share image shape, state/action sizes and extras.
    """

    def __init__(
        self,
        root: Path | str,
        fps: int,
        robot_type: str | None = "nanovla-tabletop",
        image_key: str = IMAGE_KEY,
        overwrite: bool = False,
        names: dict[str, list[str]] | None = None,
        source: dict[str, Any] | None = None,
        video: VideoOptions | None = None,
        frame_cache: bool = False,
    ) -> None:
        self.root = Path(root)
        self.video = video
        """store the frames as MP4 (LeRobot v3.0 video feature, `data.video`) instead of PNG"""
        self.frame_cache = frame_cache and video is None
        """also write the memmap frame cache (`data.frames.FrameSpool`) from the frames in hand,
        so the first `EpisodeDataset(cache="memmap")` decodes nothing (PNG datasets only; a
        writer that absorbs shards or is forked writes none)"""
        self._spool: FrameSpool | None = None
        self._spool_dir: Path | None = None  # the staging directory the spool lives in
        self._spool_cleanup: weakref.finalize | None = None
        self.source = dict(source or {})
        """how the dataset was made (task families, collection options), kept in
        meta/info.json under "nanovla"; LeRobot's readers ignore the key"""
        if fps <= 0:
            raise InputError(f"fps must be positive, got {fps}")
        _refuse_existing(self.root, overwrite)
        self.fps, self.robot_type, self.image_key = fps, robot_type, image_key
        self.overwrite = overwrite
        self.names = dict(names or {})
        self._pngs: list[list[bytes]] = []
        self._vectors: dict[str, list[np.ndarray]] = {}
        self._tasks: list[str] = []
        self._episode_stats: list[dict[str, Stats]] = []
        self._finalized = False

    @property
    def num_episodes(self) -> int:
        return len(self._pngs)

    @property
    def num_frames(self) -> int:
        return sum(len(pngs) for pngs in self._pngs)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        # Only the frame spool touches the disk before finalize(): discarding removes it.
        if exc_type is None and not self._finalized:
            self.finalize()
        elif not self._finalized:
            self._drop_spool()

    def _drop_spool(self) -> None:
        if self._spool is not None:
            self._spool.discard()
        if self._spool_dir is not None:
            shutil.rmtree(self._spool_dir, ignore_errors=True)
            _ACTIVE.discard(self._spool_dir)
        if self._spool_cleanup is not None:
            self._spool_cleanup.detach()
        self._spool, self._spool_dir, self.frame_cache = None, None, False
        self._spool_cleanup = None

    def _new_staging(self) -> Path:
        """A fresh `<root>.tmp-<pid>-XXXX` directory beside `root` (see `data.staging`)."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        return Path(
            tempfile.mkdtemp(prefix=_staging_prefix(self.root, "tmp"), dir=self.root.parent)
        )

    def _spool_frames(self, images: np.ndarray) -> None:
        """Append an episode's frames to the spool, started (in the staging directory
        `finalize` will use) with the first episode."""
        if self._spool is None:
            self._spool_dir = self._new_staging()
            _ACTIVE.add(self._spool_dir)
            # a writer dropped without finalize() or an exception (a failed collection) takes
            # its spool with it when collected; finalize() detaches this once renamed in
            self._spool_cleanup = weakref.finalize(
                self, shutil.rmtree, self._spool_dir, ignore_errors=True
            )
            self._spool = FrameSpool(self._spool_dir / "frames.spool", images.shape[1:])
        self._spool.append(images)

    def fork(self, source: dict[str, Any] | None = None) -> DatasetWriter:
        """A writer for the same root (replacing it when finalized) that already holds this
        writer's episodes, encoded: DAgger aggregates round after round without decoding and
        re-encoding every earlier frame. `source` replaces the "nanovla" record."""
        other = DatasetWriter(
            self.root, self.fps, self.robot_type, self.image_key, overwrite=True,
            names=self.names, source=self.source if source is None else source, video=self.video,
        )  # fmt: skip
        other._pngs = list(self._pngs)
        other._vectors = {key: list(chunks) for key, chunks in self._vectors.items()}
        other._tasks = list(self._tasks)
        other._episode_stats = list(self._episode_stats)
        if self._pngs:
            other._image_shape = self._image_shape
        return other

    def absorb(self, other: DatasetWriter) -> None:
        """Append `other`'s episodes, already encoded, after this writer's (shards recorded in
        other processes join one dataset in a fixed order; `nanovla.data.sharded`)."""
        if other.num_episodes == 0:
            return
        self._drop_spool()  # the shard's frames are encoded only: the dataset decodes them
        if self._pngs and (
            other._image_shape != self._image_shape
            or set(other._episode_stats[0]) != set(self._episode_stats[0])
        ):
            raise InputError(f"{self.root}: a shard's frames or features differ from the first's")
        if not self._pngs:
            self._image_shape = other._image_shape
        self._pngs += other._pngs
        for key, chunks in other._vectors.items():
            self._vectors.setdefault(key, []).extend(chunks)
        self._tasks += other._tasks
        self._episode_stats += other._episode_stats

    def add_episode(self, episode: Episode) -> int:
        """Encode and keep one episode; returns its episode_index."""
        if self._finalized:
            raise InputError(f"{self.root}: writer already finalized; create a new DatasetWriter")
        vectors = self._check_episode(episode)
        if self.frame_cache:
            self._spool_frames(episode.images)
        self._pngs.append([encode_png(frame) for frame in episode.images])
        for key, values in vectors.items():
            self._vectors.setdefault(key, []).append(values)
        self._tasks.append(episode.task)
        stats = {key: vector_stats(values) for key, values in vectors.items()}
        stats[self.image_key] = image_stats(episode.images)
        self._episode_stats.append(stats)
        return self.num_episodes - 1

    def _check_episode(self, episode: Episode) -> dict[str, np.ndarray]:
        """Validated float32 vectors of the episode keyed by feature name."""
        length = len(episode.images)
        if length == 0:
            raise InputError("episode has no frames")
        if (
            episode.images.dtype != np.uint8
            or episode.images.ndim != 4
            or episode.images.shape[-1] != 3
        ):
            raise InputError(
                f"episode images must be (T, H, W, 3) uint8, got {episode.images.shape}"
            )
        vectors = {STATE_KEY: episode.states, ACTION_KEY: episode.actions, **episode.extras}
        out = {}
        for key, values in vectors.items():
            values = np.asarray(values, dtype=np.float32)
            if values.ndim != 2 or len(values) != length:
                raise InputError(f"episode {key!r} must be ({length}, K), got shape {values.shape}")
            if not np.isfinite(values).all():
                raise InputError(f"episode {key!r} contains NaN or inf")
            out[key] = values
        if self._pngs:
            first = self._episode_stats[0]
            if set(out) != set(first) - {self.image_key}:
                raise InputError(f"episode features {sorted(out)} differ from the first episode's")
            for key, values in out.items():
                if values.shape[1] != len(first[key]["mean"]):
                    raise InputError(
                        f"episode {key!r} has width {values.shape[1]}, first episode had {len(first[key]['mean'])}"
                    )
            if episode.images.shape[1:] != self._image_shape:
                raise InputError(
                    f"episode images are {episode.images.shape[1:]}, first episode's were {self._image_shape}"
                )
        else:
            self._image_shape = episode.images.shape[1:]
        return out

    def finalize(self) -> Path:
        """Write every file into `<root>.tmp-XXXX`, then rename it to `root`; returns `root`."""
        if self.num_episodes == 0:
            raise InputError(f"{self.root}: no episodes to write")
        remove_unfinished(self.root)
        _refuse_existing(self.root, self.overwrite)
        staging = self._spool_dir or self._new_staging()
        _ACTIVE.add(staging)
        try:
            try:
                self._write_all(staging)
                if self._spool is not None:  # sources: the data file just written
                    data = staging / DATA_PATH.format(chunk_index=0, file_index=0)
                    self._spool.finish(frame_cache_file(staging, self.image_key), [data], staging)
            except OSError as error:  # a failed write() names no file: name the dataset
                if error.filename is not None or error.errno is None:
                    raise
                # (pyarrow's strerror is "Error writing bytes to file. Detail: ...")
                raise OSError(error.errno, os.strerror(error.errno), str(self.root)) from error
            _replace_dir(staging, self.root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            _ACTIVE.discard(staging)
            if self._spool is not None:
                self._spool.discard()  # (a no-op once finished: the file has moved)
            self._spool, self._spool_dir = None, None
        if self._spool_cleanup is not None:
            self._spool_cleanup.detach()
        self._finalized = True
        return self.root

    def _write_all(self, staging: Path) -> None:
        tasks = list(dict.fromkeys(self._tasks))
        task_index = {task: i for i, task in enumerate(tasks)}
        lengths = np.array([len(pngs) for pngs in self._pngs], dtype=np.int64)  # (E,)
        features = self._features()
        videos = self._write_videos(staging, lengths) if self.video else {}
        _write_parquet(
            staging / DATA_PATH.format(chunk_index=0, file_index=0),
            self._data_table(lengths, [task_index[t] for t in self._tasks]),
        )
        _write_parquet(
            staging / EPISODES_PATH.format(chunk_index=0, file_index=0),
            self._episodes_table(lengths, videos),
        )
        _write_parquet(staging / TASKS_PATH, tasks_table(tasks))
        keys = list(self._episode_stats[0])
        stats = {key: aggregate_stats([ep[key] for ep in self._episode_stats]) for key in keys}
        _write_json(staging / STATS_PATH, stats_to_json(stats))
        info = make_info(
            features, self.fps, self.num_episodes, int(lengths.sum()), len(tasks), self.robot_type
        )
        if self.video:
            info["video_path"] = VIDEO_PATH
        if self.source:
            info["nanovla"] = self.source
        _write_json(staging / INFO_PATH, info)

    def _write_videos(self, staging: Path, lengths: np.ndarray) -> dict[str, np.ndarray]:
        """MP4s of the kept PNG frames, one episode decoded at a time (memory stays that of
        the PNGs); returns the episodes' video location columns."""
        loads = [lambda pngs=pngs: np.stack([decode_image(p) for p in pngs]) for pngs in self._pngs]
        return write_videos(staging, self.image_key, loads, lengths.tolist(), self.fps, self.video)

    def _features(self) -> dict[str, dict[str, Any]]:
        height, width, channels = self._image_shape
        if self.video:
            spec = video_feature(self._image_shape, self.fps, self.video)
            return {self.image_key: spec, **self._vector_features()}
        return {
            self.image_key: {
                "dtype": "image",
                "shape": [height, width, channels],
                "names": ["height", "width", "channels"],
            },
            **self._vector_features(),
        }

    def _vector_features(self) -> dict[str, dict[str, Any]]:
        features: dict[str, dict[str, Any]] = {}
        for key, chunks in self._vectors.items():
            width_k = chunks[0].shape[1]
            names = self.names.get(key) or [f"{key.split('.')[-1]}_{i}" for i in range(width_k)]
            if len(names) != width_k:
                raise InputError(
                    f"names for {key!r} has {len(names)} entries, feature has {width_k}"
                )
            features[key] = {"dtype": "float32", "shape": [width_k], "names": list(names)}
        return features

    def _data_table(self, lengths: np.ndarray, task_indices: list[int]) -> pa.Table:
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # (E,)
        frame_index = np.arange(int(lengths.sum())) - np.repeat(starts, lengths)  # (N,)
        pngs = [png for episode in self._pngs for png in episode]
        columns: dict[str, pa.Array] = {}
        if not self.video:  # a video feature has no data column (its frames are in videos/)
            columns[self.image_key] = pa.array(
                [{"bytes": png, "path": None} for png in pngs], type=IMAGE_STRUCT
            )
        for key, chunks in self._vectors.items():
            values = np.concatenate(chunks)  # (N, K)
            columns[key] = pa.ListArray.from_arrays(
                pa.array(np.arange(0, values.size + 1, values.shape[1], dtype=np.int32)),
                pa.array(values.reshape(-1)),
            )
        columns["timestamp"] = pa.array((frame_index / self.fps).astype(np.float32))
        columns["frame_index"] = pa.array(frame_index.astype(np.int64))
        columns["episode_index"] = pa.array(
            np.repeat(np.arange(len(lengths)), lengths).astype(np.int64)
        )
        columns["index"] = pa.array(np.arange(int(lengths.sum()), dtype=np.int64))
        columns["task_index"] = pa.array(np.repeat(np.array(task_indices, np.int64), lengths))
        table = pa.table(columns)
        return table.replace_schema_metadata(
            {"huggingface": json.dumps(hf_features(table, self.image_key))}
        )

    def _episodes_table(self, lengths: np.ndarray, videos: dict[str, np.ndarray]) -> pa.Table:
        stops = np.cumsum(lengths)
        columns: dict[str, Any] = {
            "episode_index": np.arange(len(lengths), dtype=np.int64),
            "tasks": pa.array([[task] for task in self._tasks], type=pa.list_(pa.string())),
            "length": lengths,
            "data/chunk_index": np.zeros(len(lengths), np.int64),
            "data/file_index": np.zeros(len(lengths), np.int64),
            "dataset_from_index": stops - lengths,
            "dataset_to_index": stops,
            "meta/episodes/chunk_index": np.zeros(len(lengths), np.int64),
            "meta/episodes/file_index": np.zeros(len(lengths), np.int64),
            **videos,  # videos/<key>/chunk_index, file_index, from_timestamp, to_timestamp
        }
        for key in self._episode_stats[0]:
            for name in ("min", "max", "mean", "std", "count"):
                columns[f"stats/{key}/{name}"] = pa.array(
                    [ep[key][name].tolist() for ep in self._episode_stats]
                )
        return pa.table(columns)


def _write_parquet(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, write_page_checksum=True)  # a flipped bit fails to load


def _write_json(path: Path, content: Any) -> None:
    # into the staging directory, which finalize() renames into place as a whole
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")


def write_dataset(
    root: Path | str,
    episodes: list[Episode],
    fps: int,
    robot_type: str | None = "nanovla-tabletop",
    image_key: str = IMAGE_KEY,
    overwrite: bool = False,
    video: VideoOptions | None = None,
) -> Path:
    """Write `episodes` as a LeRobotDataset v3.0 at `root` in one go (frames as MP4 with
    `video`); returns `root`."""
    writer = DatasetWriter(
        root, fps, robot_type=robot_type, image_key=image_key, overwrite=overwrite, video=video
    )
    for episode in episodes:
        writer.add_episode(episode)
    return writer.finalize()
