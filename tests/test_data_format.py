"""LeRobotDataset v3.0 on disk: round trip, statistics, caching, atomic writes, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nanovla.data import DatasetWriter, EpisodeDataset, write_dataset
from nanovla.data.images import encode_png
from nanovla.data.synthetic import synthetic_episodes

DATA_FILE = "data/chunk-000/file-000.parquet"
EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"


@pytest.fixture()
def episodes():
    return synthetic_episodes(5, lengths=(3, 8), image_size=12, seed=1)


@pytest.fixture()
def root(tmp_path: Path, episodes) -> Path:
    return write_dataset(tmp_path / "ds", episodes, fps=15)


def test_round_trip_is_identical(root: Path, episodes) -> None:
    for cache in ("memory", "memmap"):
        dataset = EpisodeDataset(root, cache=cache, progress=False)
        np.testing.assert_array_equal(dataset.images, np.concatenate([e.images for e in episodes]))
        np.testing.assert_array_equal(dataset.states, np.concatenate([e.states for e in episodes]))
        np.testing.assert_array_equal(
            dataset.actions, np.concatenate([e.actions for e in episodes])
        )
        frame_tasks = [dataset.tasks[i] for i in dataset.task_index]
        assert frame_tasks == [e.task for e in episodes for _ in range(len(e.actions))]
    lengths = [len(e.actions) for e in episodes]
    assert dataset.num_episodes == 5 and dataset.num_frames == sum(lengths)
    np.testing.assert_array_equal(np.diff(dataset.episode_bounds, axis=1)[:, 0], lengths)
    assert dataset.fps == 15 and dataset.features["observation.image"]["dtype"] == "image"
    assert dataset[3]["frame_index"] == 3 and dataset[lengths[0]]["episode_index"] == 1


def test_info_and_columns_follow_lerobot_v3(root: Path) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["video_path"] is None
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["splits"] == {"train": "0:5"} and info["total_tasks"] == 3
    assert info["features"]["observation.state"] == {
        "dtype": "float32",
        "shape": [6],
        "names": [f"state_{i}" for i in range(6)],
    }
    schema = pq.read_schema(root / DATA_FILE)
    assert schema.field("observation.image").type == pa.struct(
        [("bytes", pa.binary()), ("path", pa.string())]
    )
    assert schema.field("action").type == pa.list_(pa.float32())
    for name in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert name in schema.names
    episodes = pq.read_table(root / EPISODES_FILE)
    for name in ("tasks", "length", "dataset_from_index", "dataset_to_index", "stats/action/mean"):
        assert name in episodes.column_names
    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert set(tasks.column_names) == {"task_index", "__index_level_0__"}


def test_stats_match_numpy(root: Path, episodes) -> None:
    stats = json.loads((root / "meta/stats.json").read_text())
    actions = np.concatenate([e.actions for e in episodes]).astype(np.float64)
    for name, reduce in (("min", np.min), ("max", np.max), ("mean", np.mean), ("std", np.std)):
        np.testing.assert_allclose(
            stats["action"][name], reduce(actions, axis=0), rtol=1e-6, atol=1e-9
        )
    pixels = np.concatenate([e.images for e in episodes]).reshape(-1, 3) / 255.0
    image = {name: np.asarray(value) for name, value in stats["observation.image"].items()}
    assert image["mean"].shape == (3, 1, 1)
    np.testing.assert_allclose(image["mean"][:, 0, 0], pixels.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(image["std"][:, 0, 0], pixels.std(axis=0), rtol=1e-6)
    np.testing.assert_allclose(image["max"][:, 0, 0], pixels.max(axis=0))
    assert stats["observation.state"]["count"] == [len(actions)]


def test_memmap_cache_is_reused_and_rebuilt_when_source_changes(root: Path) -> None:
    EpisodeDataset(root, cache="memmap", progress=False)
    cache = root / "cache" / "observation.image.uint8.npy"
    first = cache.stat().st_mtime_ns
    EpisodeDataset(root, cache="memmap", progress=False)
    assert cache.stat().st_mtime_ns == first
    source = root / DATA_FILE
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    EpisodeDataset(root, cache="memmap", progress=False)
    assert cache.stat().st_mtime_ns != first


def test_refuses_to_overwrite_and_replaces_atomically(root: Path, episodes) -> None:
    with pytest.raises(FileExistsError, match="ds"):
        write_dataset(root, episodes[:2], fps=15)
    write_dataset(root, episodes[:2], fps=15, overwrite=True)
    assert EpisodeDataset(root, progress=False).num_episodes == 2
    assert sorted(p.name for p in root.parent.iterdir()) == ["ds"]  # no temp dirs left


def test_overwrite_never_deletes_a_directory_that_is_not_a_dataset(
    tmp_path: Path, episodes
) -> None:
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="is not a dataset"):
        write_dataset(precious, episodes, fps=15, overwrite=True)
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_writer_discards_everything_on_error(tmp_path: Path, episodes) -> None:
    with pytest.raises(RuntimeError), DatasetWriter(tmp_path / "ds", fps=10) as writer:
        writer.add_episode(episodes[0])
        raise RuntimeError("collection crashed")
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_mismatched_episodes(tmp_path: Path, episodes) -> None:
    writer = DatasetWriter(tmp_path / "ds", fps=10)
    writer.add_episode(episodes[0])
    bad = synthetic_episodes(1, state_dim=4, image_size=12)[0]
    with pytest.raises(ValueError, match="observation.state"):
        writer.add_episode(bad)
    nan = synthetic_episodes(1, image_size=12)[0]
    nan.actions[0, 2] = np.nan
    with pytest.raises(ValueError, match="'action' contains NaN"):
        writer.add_episode(nan)


# ---- bad input: each error names the file and what is wrong ----


def _rewrite_parquet(path: Path, edit) -> None:
    table = pq.read_table(path)
    pq.write_table(edit(table), path)


def test_missing_info_json(root: Path) -> None:
    (root / "meta/info.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"meta/info\.json"):
        EpisodeDataset(root, progress=False)


def test_missing_dataset_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        EpisodeDataset(tmp_path / "nowhere", progress=False)


def test_wrong_codebase_version(root: Path) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    info["codebase_version"] = "v2.1"
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"info\.json: codebase_version 'v2.1' is not supported"):
        EpisodeDataset(root, progress=False)


def test_total_frames_disagreeing_with_episodes(root: Path) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    info["total_frames"] += 1
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(
        ValueError, match=r"meta/episodes: episodes cover \d+ frames but .*total_frames"
    ):
        EpisodeDataset(root, progress=False)


def test_truncated_parquet(root: Path) -> None:
    path = root / DATA_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"file-000\.parquet: not a readable parquet file"):
        EpisodeDataset(root, progress=False)


def test_nan_in_actions_names_file_and_episode(root: Path, episodes) -> None:
    row = len(episodes[0].actions) + 1  # episode 1, frame 1

    def poison(table: pa.Table) -> pa.Table:
        actions = table.column("action").to_pylist()
        actions[row][0] = float("nan")
        index = table.column_names.index("action")
        return table.set_column(index, "action", pa.array(actions, pa.list_(pa.float32())))

    _rewrite_parquet(root / DATA_FILE, poison)
    with pytest.raises(
        ValueError, match=r"file-000\.parquet: NaN or inf in 'action' at episode 1, frame 1"
    ):
        EpisodeDataset(root, progress=False)


def test_missing_feature_in_info(root: Path) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    del info["features"]["observation.state"]
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"info\.json: feature 'observation.state' not found"):
        EpisodeDataset(root, progress=False)
    with pytest.raises(ValueError, match=r"feature 'observation.images.top' not found"):
        EpisodeDataset(root, image_key="observation.images.top", progress=False)


def test_missing_column_in_data(root: Path) -> None:
    _rewrite_parquet(root / DATA_FILE, lambda table: table.drop_columns(["action"]))
    with pytest.raises(ValueError, match=r"file-000\.parquet: missing column\(s\) \['action'\]"):
        EpisodeDataset(root, progress=False)


def test_inconsistent_episode_index(root: Path, episodes) -> None:
    def shift(table: pa.Table) -> pa.Table:
        values = table.column("episode_index").to_numpy().copy()
        values[len(episodes[0].actions)] = 0  # first frame of episode 1 claims episode 0
        return table.set_column(
            table.column_names.index("episode_index"), "episode_index", pa.array(values)
        )

    _rewrite_parquet(root / DATA_FILE, shift)
    with pytest.raises(
        ValueError, match=r"file-000\.parquet: row \d+ has episode_index=0, expected 1"
    ):
        EpisodeDataset(root, progress=False)


def test_inconsistent_episode_lengths(root: Path) -> None:
    def grow(table: pa.Table) -> pa.Table:
        lengths = table.column("length").to_numpy().copy()
        lengths[2] += 1
        return table.set_column(table.column_names.index("length"), "length", pa.array(lengths))

    _rewrite_parquet(root / EPISODES_FILE, grow)
    with pytest.raises(ValueError, match=r"meta/episodes: episode 2 has length"):
        EpisodeDataset(root, progress=False)


# ---- a dataset as LeRobot 0.4 writes it (pandas tasks index, extra columns, other names) ----


def _write_lerobot_style(root: Path, task_column: str) -> tuple[np.ndarray, np.ndarray]:
    """Two episodes of 3 and 2 frames, camera `observation.images.top`, written with pyarrow."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 8, 10, 3), dtype=np.uint8)  # (N, H, W, 3)
    actions = rng.normal(size=(5, 2)).astype(np.float32)
    episode, frame = np.array([0, 0, 0, 1, 1]), np.array([0, 1, 2, 0, 1])
    data = pa.table(
        {
            "observation.images.top": pa.array(
                [
                    {"bytes": encode_png(f), "path": f"frame_{i:06d}.png"}
                    for i, f in enumerate(frames)
                ],
                pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
            ),
            "observation.state": pa.array(
                rng.normal(size=(5, 4)).astype(np.float32).tolist(), pa.list_(pa.float32(), 4)
            ),
            "action": pa.array(actions.tolist(), pa.list_(pa.float32(), 2)),
            "next.reward": pa.array(np.zeros(5, np.float32)),
            "next.done": pa.array([False, False, True, False, True]),
            "timestamp": pa.array((frame / 30).astype(np.float32)),
            "frame_index": pa.array(frame),
            "episode_index": pa.array(episode),
            "index": pa.array(np.arange(5)),
            "task_index": pa.array(np.array([1, 1, 1, 0, 0])),
        }
    )
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(data, root / DATA_FILE)
    _write_lerobot_meta(root, task_column)
    return frames, actions


def _write_lerobot_meta(root: Path, task_column: str) -> None:
    """meta/ of the dataset above: episodes with a video column, tasks, info, partial stats."""
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "episode_index": [0, 1],
                "tasks": [["pick the cube"], ["open the drawer"]],
                "length": [3, 2],
                "data/chunk_index": [0, 0],
                "data/file_index": [0, 0],
                "dataset_from_index": [0, 3],
                "dataset_to_index": [3, 5],
                "videos/observation.images.top/chunk_index": [None, None],
            }
        ),
        root / EPISODES_FILE,
    )
    pq.write_table(
        pa.table({"task_index": [0, 1], task_column: ["open the drawer", "pick the cube"]}),
        root / "meta/tasks.parquet",
    )
    features = {
        "observation.images.top": {
            "dtype": "image",
            "shape": [8, 10, 3],
            "names": ["height", "width", "channel"],
        },
        "observation.state": {"dtype": "float32", "shape": [4], "names": None},
        "action": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
        "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
    }
    info = {
        "codebase_version": "v3.0",
        "robot_type": "aloha",
        "fps": 30,
        "total_episodes": 2,
        "total_frames": 5,
        "total_tasks": 2,
        "chunks_size": 1000,
        "features": features,
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": None,
    }
    (root / "meta/info.json").write_text(json.dumps(info))
    (root / "meta/stats.json").write_text(
        json.dumps({"action": {"mean": [0.0, 0.0], "std": [1.0, 1.0]}})
    )


@pytest.mark.parametrize("task_column", ["__index_level_0__", "task"])
def test_loads_lerobot_04_style_dataset(tmp_path: Path, task_column: str) -> None:
    frames, actions = _write_lerobot_style(tmp_path, task_column)
    dataset = EpisodeDataset(tmp_path, image_key="observation.images.top", progress=False)
    np.testing.assert_array_equal(dataset.images, frames)
    np.testing.assert_array_equal(dataset.actions, actions)
    assert dataset.tasks == ["open the drawer", "pick the cube"]
    assert dataset[0]["task"] == "pick the cube" and dataset[4]["task"] == "open the drawer"
    assert dataset.state_dim == 4 and dataset.fps == 30
    # stats.json held only action mean/std: kept as given, the rest computed from the data.
    assert dataset.stats["action"]["mean"].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(dataset.stats["action"]["max"], actions.max(axis=0))
    assert dataset.stats["observation.images.top"]["mean"].shape == (3, 1, 1)
