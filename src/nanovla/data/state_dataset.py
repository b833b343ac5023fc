"""State-only LeRobotDataset v3.0: episodes without a camera, written and read back.

Simulators such as Meta-World give a full state vector for free while each camera frame costs a
MuJoCo offscreen render (~9 frames/s at 64x64 here, see `benchmarks/metaworld_render.py`), so
their demonstrations are recorded without images. `DatasetWriter` and `EpisodeDataset` are
image-first (every nanovla world frame has a picture); this module adds the state-only case
around them instead of changing them:

- `StateDatasetWriter`: `DatasetWriter` whose episodes carry no frames: the same atomic
  staging-directory write, parquet layout, stats and `meta/` files, minus the image feature
  (LeRobot reads such datasets too; its state-only datasets have no camera either).
- `StateDataset`: reads `observation.state`, `action`, the tasks and the episode table of any
  v3.0 dataset (an image column, if present, is not decoded), with the attributes
  `BatchLoader` needs. Its `images` are (N, 0, 0, 3): zero-pixel frames, so the loader's frame
  path costs nothing and every batch still has its usual keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from nanovla.data.dataset import _vector_column
from nanovla.data.format import (
    ACTION_KEY,
    STATE_KEY,
    STATS_PATH,
    hf_features,
    int_column,
    read_info,
    read_json,
    read_parquet,
    require_feature,
)
from nanovla.data.meta import data_files, read_episodes, read_tasks
from nanovla.data.stats import Stats, stats_from_json, vector_stats
from nanovla.data.writer import DatasetWriter, Episode
from nanovla.errors import InputError

NO_FRAMES = (0, 0, 3)
"""the (H, W, 3) of a state-only episode's `images`: no pixels"""


def state_episode(
    states: np.ndarray, actions: np.ndarray, task: str, **extras: np.ndarray
) -> Episode:
    """An `Episode` with no camera frames: `states` (T, D), `actions` (T, A), the instruction."""
    length = len(states)
    return Episode(np.zeros((length, *NO_FRAMES), np.uint8), states, actions, task, dict(extras))


class StateDatasetWriter(DatasetWriter):
    """`DatasetWriter` for episodes made by `state_episode` (no image feature is written)."""

    def __init__(self, root: Path | str, fps: int, **kwargs: Any) -> None:
        kwargs.setdefault("robot_type", None)
        super().__init__(root, fps, **kwargs)

    def add_episode(self, episode: Episode) -> int:
        """Keep one state-only episode; returns its episode_index."""
        if self._finalized:
            raise InputError(f"{self.root}: writer already finalized; create a new DatasetWriter")
        if episode.images.shape[1:] != NO_FRAMES:
            raise InputError(
                f"StateDatasetWriter takes episodes without frames (state_episode); got "
                f"images of shape {episode.images.shape}"
            )
        vectors = self._check_episode(episode)
        self._pngs.append([b""] * len(episode.images))  # the frame count, nothing to encode
        for key, values in vectors.items():
            self._vectors.setdefault(key, []).append(values)
        self._tasks.append(episode.task)
        self._episode_stats.append({key: vector_stats(v) for key, v in vectors.items()})
        return self.num_episodes - 1

    def _features(self) -> dict[str, dict[str, Any]]:
        features = super()._features()
        del features[self.image_key]
        return features

    def _data_table(self, lengths: np.ndarray, task_indices: list[int]) -> pa.Table:
        table = super()._data_table(lengths, task_indices).drop_columns([self.image_key])
        return table.replace_schema_metadata(
            {"huggingface": json.dumps(hf_features(table, self.image_key))}
        )


class StateDataset:
    """States, actions, tasks and episode bounds of a v3.0 dataset, as `BatchLoader` uses them.

    Attributes as `EpisodeDataset`'s: `states` (N, D) and `actions` (N, A) float32,
    `episode_index` / `frame_index` / `task_index` (N,) int64, `tasks`, `episode_bounds` (E, 2),
    `stats` (state and action; computed when meta/stats.json lacks them), `fps`, `info`;
    `images` is (N, 0, 0, 3) and `env_states` None.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.info: dict[str, Any] = read_info(self.root)
        self.fps = float(self.info["fps"])
        for key in (STATE_KEY, ACTION_KEY):
            require_feature(self.info, self.root, key, ("float32", "float64"))
        episodes = read_episodes(
            self.root, int(self.info["total_episodes"]), int(self.info["total_frames"])
        )
        self.episode_bounds = np.stack(
            [episodes["dataset_from_index"], episodes["dataset_to_index"]], axis=1
        )  # (E, 2)
        self.tasks: list[str] = read_tasks(self.root, self.info.get("total_tasks"))
        columns: dict[str, list[np.ndarray]] = {}
        for path in data_files(self.root, self.info, episodes):
            table = read_parquet(path, columns=[STATE_KEY, ACTION_KEY, *BOOK])
            for key in (STATE_KEY, ACTION_KEY):
                columns.setdefault(key, []).append(_vector_column(table.column(key), path, key))
            for key in BOOK:
                columns.setdefault(key, []).append(int_column(table, key, path))
        merged = {key: np.concatenate(parts) for key, parts in columns.items()}
        self.states, self.actions = merged[STATE_KEY], merged[ACTION_KEY]
        self.episode_index, self.frame_index = merged["episode_index"], merged["frame_index"]
        self.task_index = merged["task_index"]
        self._check(episodes)
        self.images = np.zeros((len(self.states), *NO_FRAMES), np.uint8)
        self.env_states: np.ndarray | None = None
        self.stats = self._load_stats()

    def _check(self, episodes: dict[str, np.ndarray]) -> None:
        """Rows in episode order, lengths as meta/episodes lists, finite values, known tasks."""
        lengths = episodes["length"]
        expected = np.repeat(np.arange(len(lengths)), lengths)
        if len(self.episode_index) != len(expected) or (self.episode_index != expected).any():
            raise InputError(
                f"{self.root}: data rows do not follow the episodes of meta/episodes "
                f"({len(self.episode_index)} rows, {int(lengths.sum())} listed)"
            )
        for key, values in ((STATE_KEY, self.states), (ACTION_KEY, self.actions)):
            bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
            if len(bad):
                raise InputError(
                    f"{self.root}: NaN or inf in {key!r} at episode "
                    f"{self.episode_index[bad[0]]}, frame {self.frame_index[bad[0]]}"
                )
        if len(self.task_index) and not 0 <= self.task_index.min() <= self.task_index.max() < len(
            self.tasks
        ):
            raise InputError(f"{self.root}: task_index outside meta/tasks.parquet")

    def _load_stats(self) -> dict[str, Stats]:
        path = self.root / STATS_PATH
        stats = stats_from_json(read_json(path), str(path)) if path.is_file() else {}
        for key, values in ((STATE_KEY, self.states), (ACTION_KEY, self.actions)):
            if not {"mean", "std", "min", "max"} <= set(stats.get(key, {})):
                stats[key] = vector_stats(values)
        return stats

    @property
    def num_episodes(self) -> int:
        return len(self.episode_bounds)

    @property
    def num_frames(self) -> int:
        return len(self.actions)

    @property
    def state_dim(self) -> int:
        return self.states.shape[1]

    @property
    def action_dim(self) -> int:
        return self.actions.shape[1]

    def episode_tasks(self) -> list[str]:
        """The instruction of each episode, in episode order."""
        starts = self.episode_bounds[:, 0]
        return [self.tasks[int(i)] for i in self.task_index[starts]]


BOOK = ("episode_index", "frame_index", "task_index")
