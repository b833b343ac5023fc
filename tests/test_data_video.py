"""LeRobot v3.0 video features: MP4 frames written by `nanovla collect --video` or by hand in
LeRobot's own layout load into the same frame cache as PNG frames."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_run import nanovla

from nanovla.data import EpisodeDataset
from nanovla.data.synthetic import synthetic_episodes
from nanovla.data.video import VideoOptions, encode_video
from nanovla.data.writer import write_dataset
from nanovla.errors import InputError, MissingError

KEY = "observation.images.top"
FPS = 10
SIZE = 64
LENGTHS = (7, 5, 9)
FILES = ((0, 0), (0, 0), (0, 1))  # (chunk, file) of each episode: two share file-000
LEROBOT = VideoOptions(codec="libsvtav1", pix_fmt="yuv420p", crf=30, gop=2)
"""what LeRobot encodes with by default"""


def _episode_frames(episode: int, length: int) -> np.ndarray:
    """A flat color per episode and a bright 16x16 square whose column encodes the frame."""
    frames = np.zeros((length, SIZE, SIZE, 3), np.uint8)
    frames[:] = [(200, 40, 40), (40, 200, 40), (40, 40, 200)][episode]
    for t in range(length):
        frames[t, 24:40, 4 * t : 4 * t + 16] = 255
    return frames


def _lerobot_dataset(root: Path) -> dict[int, np.ndarray]:
    """Write a dataset the way LeRobot lays one out (by hand, not with our writer)."""
    frames = {e: _episode_frames(e, n) for e, n in enumerate(LENGTHS)}
    starts = np.concatenate([[0], np.cumsum(LENGTHS)[:-1]])
    offsets: dict[tuple[int, int], int] = {}
    episode_rows = []
    for e, (chunk, file) in enumerate(FILES):
        start = offsets.get((chunk, file), 0)
        offsets[(chunk, file)] = start + LENGTHS[e]
        episode_rows.append(
            {
                "episode_index": e, "tasks": [f"task {e % 2}"], "length": LENGTHS[e],
                "data/chunk_index": 0, "data/file_index": 0,
                "dataset_from_index": int(starts[e]), "dataset_to_index": int(starts[e] + LENGTHS[e]),
                f"videos/{KEY}/chunk_index": chunk, f"videos/{KEY}/file_index": file,
                f"videos/{KEY}/from_timestamp": start / FPS,
                f"videos/{KEY}/to_timestamp": (start + LENGTHS[e]) / FPS,
                "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
            }
        )  # fmt: skip
    for chunk, file in sorted(set(FILES)):
        members = [e for e, where in enumerate(FILES) if where == (chunk, file)]
        path = root / f"videos/{KEY}/chunk-{chunk:03d}/file-{file:03d}.mp4"
        encode_video(path, (f for e in members for f in frames[e]), (SIZE, SIZE), FPS, LEROBOT)
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(episode_rows), root / "meta/episodes/chunk-000/file-000.parquet")  # fmt: skip
    tasks = pa.table({"task_index": [0, 1], "__index_level_0__": ["task 0", "task 1"]})
    pq.write_table(tasks, root / "meta/tasks.parquet")
    n = sum(LENGTHS)
    episode_index = np.repeat(np.arange(3), LENGTHS)
    frame_index = np.arange(n) - np.repeat(starts, LENGTHS)
    data = {
        "observation.state": pa.array([[i, 0.0] for i in range(n)], pa.list_(pa.float32())),
        "action": pa.array([[i] for i in range(n)], pa.list_(pa.float32())),
        "timestamp": (frame_index / FPS).astype(np.float32), "frame_index": frame_index,
        "episode_index": episode_index, "index": np.arange(n), "task_index": episode_index % 2,
    }  # fmt: skip
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(pa.table(data), root / "data/chunk-000/file-000.parquet")
    info = {
        "codebase_version": "v3.0", "robot_type": "so100", "total_episodes": 3,
        "total_frames": n, "total_tasks": 2, "chunks_size": 1000, "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200, "fps": FPS, "splits": {"train": "0:3"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": {
            KEY: {
                "dtype": "video", "shape": [SIZE, SIZE, 3], "names": ["height", "width", "channels"],
                "info": {"video.height": SIZE, "video.width": SIZE, "video.codec": "av1",
                         "video.pix_fmt": "yuv420p", "video.is_depth_map": False,
                         "video.fps": FPS, "video.channels": 3, "has_audio": False},
            },
            "observation.state": {"dtype": "float32", "shape": [2], "names": ["a", "b"]},
            "action": {"dtype": "float32", "shape": [1], "names": ["x"]},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
        },
    }  # fmt: skip
    (root / "meta/info.json").write_text(json.dumps(info))
    return frames


@pytest.fixture
def lerobot_root(tmp_path) -> tuple[Path, dict[int, np.ndarray]]:
    return tmp_path / "ds", _lerobot_dataset(tmp_path / "ds")


def test_a_lerobot_video_dataset_loads_frame_by_frame(lerobot_root):
    root, frames = lerobot_root
    dataset = EpisodeDataset(root, image_key=KEY, progress=False)
    assert dataset.images.shape == (sum(LENGTHS), SIZE, SIZE, 3)
    for e, (start, stop) in enumerate(dataset.episode_bounds):
        decoded = dataset.images[start:stop].astype(np.int16)
        # lossy AV1 4:2:0: colors come back within a few levels, the square in its place
        assert np.abs(decoded - frames[e]).mean() < 6
        columns = (decoded[:, 32].min(axis=-1) > 180).argmax(axis=1)  # first bright column
        assert np.abs(columns - 4 * np.arange(stop - start)).max() <= 1
    assert dataset[8]["task"] == "task 1" and dataset.states[8, 0] == 8


def test_a_missing_or_short_video_is_named(lerobot_root):
    root, _ = lerobot_root
    second = root / f"videos/{KEY}/chunk-000/file-001.mp4"
    second.unlink()
    with pytest.raises(MissingError, match="file-001.mp4: video file"):
        EpisodeDataset(root, image_key=KEY, progress=False)
    encode_video(second, _episode_frames(2, 4), (SIZE, SIZE), FPS, LEROBOT)  # 4 of 9 frames
    with pytest.raises(InputError, match="file-001.mp4: holds no frame 4 .episode 2"):
        EpisodeDataset(root, image_key=KEY, progress=False)


def test_a_video_fps_other_than_the_dataset_fps_is_refused(lerobot_root):
    root, _ = lerobot_root
    info = json.loads((root / "meta/info.json").read_text())
    info["features"][KEY]["info"]["video.fps"] = 30
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(InputError, match="has video.fps 30, the dataset fps 10"):
        EpisodeDataset(root, image_key=KEY, progress=False)


def test_writer_video_round_trip_matches_png_and_memmap(tmp_path):
    episodes = synthetic_episodes(5, image_size=16, seed=1)
    write_dataset(tmp_path / "png", episodes, fps=FPS)
    write_dataset(tmp_path / "mp4", episodes, fps=FPS, video=VideoOptions(max_frames_per_file=20))
    png = EpisodeDataset(tmp_path / "png", progress=False)
    mp4 = EpisodeDataset(tmp_path / "mp4", cache="memmap", progress=False)
    info = json.loads((tmp_path / "mp4/meta/info.json").read_text())
    assert info["features"]["observation.image"]["dtype"] == "video"
    assert len(list((tmp_path / "mp4/videos/observation.image/chunk-000").glob("file-*.mp4"))) > 1
    assert "observation.image" not in pq.read_schema(tmp_path / "mp4/data/chunk-000/file-000.parquet").names  # fmt: skip
    # H.264 4:4:4 at CRF 0: lossless in YUV, only RGB<->YUV rounding (at most 1 level) stays
    assert np.abs(mp4.images.astype(int) - png.images.astype(int)).max() <= 1
    np.testing.assert_array_equal(mp4.actions, png.actions)
    again = EpisodeDataset(tmp_path / "mp4", cache="memmap", progress=False)  # reuses the cache
    np.testing.assert_array_equal(again.images, mp4.images)


def test_collect_video_flag_writes_the_video_layout(tmp_path):
    result = nanovla(
        "collect", "--task", "reach", "--episodes", "3", "--num-envs", "3", "--out", "d",
        "--video", "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "d/videos/observation.image/chunk-000/file-000.mp4").is_file()
    dataset = EpisodeDataset(tmp_path / "d", progress=False)
    assert dataset.num_episodes == 3 and dataset.images.std() > 10
