"""Dataset size and decode time of camera frames stored as PNG (in the parquet) vs MP4 (LeRobot
v3.0 video feature), and how much the lossy encodings change the pixels.

    .venv/bin/python benchmarks/video_vs_png.py                          # records 300 episodes
    .venv/bin/python benchmarks/video_vs_png.py --dataset data/reach-push-3000ep-3436446d

The PNG dataset (recorded with `nanovla collect`, or an existing one given with --dataset) is
rewritten with the same episodes as MP4 for each encoder setting, then every version is loaded
with `EpisodeDataset(cache="memory")`: "decode" is that wall time (the frames decoded once into
the frame cache, plus the parquet and checks, which are the same for all). Pixel error is
against the PNG frames (which are exact): the mean absolute difference in 0..255 levels, the
largest one, and the share of pixel values that differ at all. One torch thread; ffmpeg runs as
a subprocess (it may use a second core).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import tyro  # noqa: E402

from nanovla.data import EpisodeDataset  # noqa: E402
from nanovla.data.collect import CollectConfig, collect  # noqa: E402
from nanovla.data.format import ENV_STATE_KEY  # noqa: E402
from nanovla.data.video import VideoOptions  # noqa: E402
from nanovla.data.writer import DatasetWriter, Episode  # noqa: E402

SETTINGS: dict[str, VideoOptions] = {
    "h264 4:4:4 crf 0 (default)": VideoOptions(),
    "h264 4:4:4 crf 18": VideoOptions(crf=18),
    "h264 4:2:0 crf 23": VideoOptions(pix_fmt="yuv420p", crf=23),
    "av1 4:2:0 crf 30 (LeRobot)": VideoOptions(codec="libsvtav1", pix_fmt="yuv420p", crf=30),
}


@dataclass
class Options:
    """Compare PNG and MP4 storage of the same frames."""

    dataset: Path | None = None
    """an existing PNG dataset to compare on (default: record --episodes fresh ones)"""
    episodes: int = 300
    """episodes to record when no --dataset is given (reach, push, pick_place)"""
    keep: bool = False
    """keep the written datasets (under a temporary directory, printed)"""


def directory_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def rewrite(source: EpisodeDataset, root: Path, video: VideoOptions | None) -> float:
    """Write `source`'s episodes again (as MP4 with `video`); returns the write time in s."""
    started = time.perf_counter()
    writer = DatasetWriter(root, int(source.fps), video=video, source=source.info.get("nanovla"))
    for start, stop in source.episode_bounds.tolist():
        extras = {} if source.env_states is None else {ENV_STATE_KEY: source.env_states[start:stop]}
        writer.add_episode(
            Episode(
                images=np.asarray(source.images[start:stop]),
                states=source.states[start:stop],
                actions=source.actions[start:stop],
                task=source.tasks[int(source.task_index[start])],
                extras=extras,
            )
        )
    writer.finalize()
    return time.perf_counter() - started


def pixel_error(decoded: np.ndarray, exact: np.ndarray, block: int = 4096) -> tuple[float, int, float]:  # fmt: skip
    """(mean |difference|, max |difference|, share of values that differ), in blocks of frames."""
    total, largest, changed = 0.0, 0, 0
    for start in range(0, len(exact), block):
        error = np.abs(decoded[start : start + block].astype(np.int16) - exact[start : start + block])  # fmt: skip
        total += float(error.sum())
        largest = max(largest, int(error.max()))
        changed += int(np.count_nonzero(error))
    return total / exact.size, largest, changed / exact.size


def load(root: Path) -> tuple[EpisodeDataset, float]:
    started = time.perf_counter()
    dataset = EpisodeDataset(root, cache="memory", progress=False)
    return dataset, time.perf_counter() - started


def main(options: Options) -> None:
    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="video_vs_png-"))
    try:
        png_root = work / "png"
        if options.dataset is None:
            collect(CollectConfig(task="reach,push,pick_place", episodes=options.episodes, out=png_root, progress=False))  # fmt: skip
        else:
            source = EpisodeDataset(options.dataset, cache="memory", progress=False)
            rewrite(source, png_root, None)  # the same writer for both, so sizes compare
        png, png_time = load(png_root)
        frames = png.images
        print(f"{png.num_episodes} episodes, {png.num_frames} frames of {frames.shape[1]}x{frames.shape[2]}")  # fmt: skip
        header = f"{'storage':<28} {'size MB':>8} {'decode s':>9} {'frames/s':>9} {'write s':>8} {'mean err':>9} {'max err':>8} {'changed':>8}"  # fmt: skip
        print(header)
        print("-" * len(header))
        size = directory_bytes(png_root) / 1e6
        print(f"{'png (in parquet)':<28} {size:>8.2f} {png_time:>9.2f} {png.num_frames / png_time:>9.0f} {'':>8} {0:>9.3f} {0:>8d} {0:>8.2%}")  # fmt: skip
        for name, video in SETTINGS.items():
            root = work / name.split(" (")[0].replace(" ", "_").replace(":", "")
            written = rewrite(png, root, video)
            dataset, seconds = load(root)
            mean, largest, changed = pixel_error(dataset.images, frames)
            size = directory_bytes(root) / 1e6
            print(
                f"{name:<28} {size:>8.2f} {seconds:>9.2f} {dataset.num_frames / seconds:>9.0f} "
                f"{written:>8.1f} {mean:>9.3f} {largest:>8d} {changed:>8.2%}"
            )
            del dataset
        _, again = load(png_root)  # the machine's load changes over minutes: time PNG again
        print(f"{'png again (after the MP4s)':<28} {'':>8} {again:>9.2f} {png.num_frames / again:>9.0f}")  # fmt: skip
        print(f"(wall times on a shared machine; data in {work})" if options.keep else "(wall times on a shared machine)")  # fmt: skip
    finally:
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(tyro.cli(Options))
