"""LeRobot v3.0 video features: camera frames stored as MP4, decoded once into the frame cache.

Layout (LeRobot's `DEFAULT_VIDEO_PATH`, https://github.com/huggingface/lerobot,
`src/lerobot/datasets/utils.py`):

```
videos/<video_key>/chunk-000/file-000.mp4     the episodes' frames back to back, constant fps
```

`meta/info.json` declares the feature with `"dtype": "video"`, its `[height, width, 3]` shape
and an `info` block (`video.height`, `video.width`, `video.codec`, `video.pix_fmt`, `video.fps`,
`video.channels`, `video.is_depth_map`, `has_audio`), and names the file template in
`video_path`. The data parquet has no column for a video feature; each row of
`meta/episodes/*.parquet` says where its episode lives: `videos/<key>/chunk_index`,
`videos/<key>/file_index`, and `videos/<key>/from_timestamp` / `to_timestamp` (seconds into that
file). Row `frame_index` of episode e is the video frame at `from_timestamp[e] + frame_index /
fps`, as LeRobot's `_query_videos` computes it.

Encoding and decoding go through imageio-ffmpeg's ffmpeg binary (the `video` extra). Departures
from LeRobot: the default codec is H.264 in 4:4:4 at CRF 0 instead of AV1 4:2:0 at CRF 30 (at
64x64 the world's sprites are a few pixels wide, and 4:2:0 chroma subsampling smears their color:
`benchmarks/video_vs_png.py` prints the pixel error of each setting); files roll over after
`max_frames_per_file` frames instead of a size in MB; and the loader decodes every file once,
front to back, into the uint8 frame cache (`EpisodeDataset`), instead of seeking per sample.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from nanovla.data.format import EPISODES_DIR, int_column, parquet_columns, read_parquet
from nanovla.errors import InputError, MissingError
from nanovla.progress import progress as progress_bar

VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
"""LeRobot v3.0's video file template (info.json `video_path`)"""


@dataclass
class VideoOptions:
    """How frames are encoded into MP4 (ffmpeg options)."""

    codec: str = "libx264"
    """ffmpeg encoder: libx264 (H.264), libsvtav1 (AV1, LeRobot's default), libx265, ..."""
    pix_fmt: str = "yuv444p"
    """pixel format of the stream: yuv444p keeps full color resolution; yuv420p (LeRobot's
    default) halves it in both directions"""
    crf: int = 0
    """constant rate factor: 0 is lossless in YUV for libx264 (RGB<->YUV rounding stays);
    higher is smaller and lossier (LeRobot uses 30 with AV1)"""
    gop: int = 2
    """keyframe interval in frames (LeRobot's g=2, so random access stays cheap for them)"""
    max_frames_per_file: int = 100_000
    """start the next file-XXX.mp4 once a file holds this many frames (episodes never split)"""


def _ffmpeg() -> Any:
    try:
        import imageio_ffmpeg
    except ImportError as error:
        raise InputError(
            "video features need imageio-ffmpeg: pip install 'nanovla[video]'"
        ) from error
    return imageio_ffmpeg


def video_columns(key: str) -> tuple[str, str, str, str]:
    """The per-episode columns of `meta/episodes` that locate feature `key`'s frames."""
    prefix = f"videos/{key}/"
    return tuple(prefix + n for n in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"))  # type: ignore[return-value]  # fmt: skip


def video_feature(shape: tuple[int, int, int], fps: int, options: VideoOptions) -> dict[str, Any]:
    """The info.json spec of a video feature of (H, W, 3) frames."""
    height, width, channels = shape
    codec = {"libx264": "h264", "libx264rgb": "h264", "libsvtav1": "av1", "libaom-av1": "av1", "libx265": "hevc"}  # fmt: skip
    return {
        "dtype": "video",
        "shape": [height, width, channels],
        "names": ["height", "width", "channels"],
        "info": {
            "video.height": height,
            "video.width": width,
            "video.codec": codec.get(options.codec, options.codec),
            "video.pix_fmt": options.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": fps,
            "video.channels": channels,
            "video.g": options.gop,
            "video.crf": options.crf,
            "has_audio": False,
        },
    }


def encode_video(path: Path, frames: Iterable[np.ndarray], size: tuple[int, int], fps: int, options: VideoOptions) -> int:  # fmt: skip
    """Encode (H, W, 3) uint8 `frames` of `size` (H, W) into the MP4 `path`; returns the count."""
    ffmpeg = _ffmpeg()
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner past ffmpeg's log level
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = size
    params = ["-g", str(options.gop), "-crf", str(options.crf)]
    writer = ffmpeg.write_frames(
        str(path), (width, height), fps=fps, codec=options.codec, pix_fmt_in="rgb24",
        pix_fmt_out=options.pix_fmt, macro_block_size=1, quality=None,
        output_params=params, ffmpeg_log_level="error",
    )  # fmt: skip
    writer.send(None)
    count = 0
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
            count += 1
    finally:
        writer.close()
    return count


def write_videos(
    root: Path,
    key: str,
    episodes: list[Callable[[], np.ndarray]],
    lengths: list[int],
    fps: int,
    options: VideoOptions,
) -> dict[str, np.ndarray]:
    """Encode each episode's frames (`episodes[e]()` returns its (lengths[e], H, W, 3) uint8
    frames) into `root/videos/<key>/...mp4`, back to back, a new file after
    `options.max_frames_per_file` frames; returns the per-episode columns of `meta/episodes`
    (`video_columns(key)`)."""
    chunk_col, file_col, from_col, to_col = video_columns(key)
    out: dict[str, list[Any]] = {chunk_col: [], file_col: [], from_col: [], to_col: []}
    groups: list[list[int]] = [[]]
    counted = 0
    for index, length in enumerate(lengths):
        if groups[-1] and counted + length > options.max_frames_per_file:
            groups.append([])
            counted = 0
        groups[-1].append(index)
        counted += length
    for file_number, members in enumerate(groups):
        chunk, file_index = divmod(file_number, 1000)  # 1000 files per chunk, as LeRobot
        path = root / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file_index)
        first = episodes[members[0]]()
        frames = (f for e in members for f in (first if e == members[0] else episodes[e]()))
        written = encode_video(path, frames, first.shape[1:3], fps, options)
        if written != sum(lengths[e] for e in members):
            raise InputError(f"{path}: wrote {written} frames, the episodes hold more or fewer")
        start = 0
        for e in members:
            out[chunk_col].append(chunk)
            out[file_col].append(file_index)
            out[from_col].append(start / fps)
            out[to_col].append((start + lengths[e]) / fps)
            start += lengths[e]
    return {
        name: np.asarray(values, np.int64 if name in (chunk_col, file_col) else np.float64)
        for name, values in out.items()
    }


def read_video_index(root: Path, key: str, num_episodes: int) -> dict[str, np.ndarray]:
    """The per-episode location columns of video feature `key`, ordered by episode_index."""
    chunk_col, file_col, from_col, to_col = video_columns(key)
    files = sorted((root / EPISODES_DIR).glob("*/*.parquet"))
    parts: dict[str, list[np.ndarray]] = {}
    for path in files:
        names = parquet_columns(path)
        missing = [c for c in (chunk_col, file_col, from_col) if c not in names]
        if missing:
            raise InputError(f"{path}: video feature {key!r} needs column(s) {missing}")
        table = read_parquet(path, columns=["episode_index", chunk_col, file_col, from_col])
        parts.setdefault("episode_index", []).append(int_column(table, "episode_index", path))
        for name in (chunk_col, file_col):
            parts.setdefault(name, []).append(int_column(table, name, path))
        column = table.column(from_col)
        if column.null_count or not pa.types.is_floating(column.type):
            raise InputError(f"{path}: column {from_col!r} must hold seconds (floats, no nulls)")
        parts.setdefault(from_col, []).append(np.asarray(column.to_numpy(), np.float64))
    index = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    order = np.argsort(index["episode_index"], kind="stable")
    if len(order) != num_episodes:
        raise InputError(f"{root / EPISODES_DIR}: {len(order)} episodes, expected {num_episodes}")
    return {name: values[order] for name, values in index.items()}


def video_files(root: Path, info: dict[str, Any], key: str, index: dict[str, np.ndarray]) -> list[Path]:  # fmt: skip
    """The MP4 files feature `key` is stored in, in (chunk, file) order; a missing one is named."""
    chunk_col, file_col = video_columns(key)[:2]
    template = info.get("video_path") or VIDEO_PATH
    pairs = sorted(set(zip(index[chunk_col].tolist(), index[file_col].tolist())))
    paths = []
    for chunk, file_index in pairs:
        try:
            path = root / template.format(video_key=key, chunk_index=chunk, file_index=file_index)
        except (KeyError, IndexError, ValueError, AttributeError) as error:
            raise InputError(f"{root / 'meta/info.json'}: bad 'video_path' {template!r} ({error})") from error  # fmt: skip
        if not path.is_file():
            raise MissingError(f"{path}: video file of feature {key!r} not found")
        paths.append(path)
    return paths


def _frames(path: Path, shape: tuple[int, int, int]) -> Iterator[np.ndarray]:
    """Every frame of the MP4 `path`, in order, as (H, W, 3) uint8 (its size checked first)."""
    ffmpeg = _ffmpeg()
    try:
        reader = ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as error:
        raise InputError(f"{path}: not a readable video ({' '.join(str(error).split())[:300]})") from error  # fmt: skip
    width, height = meta["size"]
    if (height, width, 3) != tuple(shape):
        reader.close()
        raise InputError(f"{path}: video is {height}x{width}, the feature declares {list(shape)}")
    try:
        for data in reader:
            yield np.frombuffer(data, np.uint8).reshape(shape)
    except RuntimeError as error:
        raise InputError(f"{path}: damaged video ({' '.join(str(error).split())[:300]})") from error  # fmt: skip
    finally:
        reader.close()


def decode_videos(
    root: Path,
    info: dict[str, Any],
    key: str,
    episode_index: np.ndarray,
    frame_index: np.ndarray,
    shape: tuple[int, int, int],
    allocate: Callable[[], np.ndarray],
    progress: bool = True,
) -> np.ndarray:
    """Decode video feature `key` of (H, W, 3) = `shape` frames once into the (N, H, W, 3)
    array `allocate()` returns: row r
    (episode e = episode_index[r]) gets the frame at `from_timestamp[e] + frame_index[r] / fps`
    of e's file. Every file is read front to back exactly once; a row whose frame the file does
    not hold is an InputError naming the file and the episode."""
    fps = float(info["fps"])
    spec = info["features"][key]
    declared = (spec.get("info") or {}).get("video.fps")
    if declared is not None and abs(float(declared) - fps) > 1e-6:
        raise InputError(
            f"{root / 'meta/info.json'}: feature {key!r} has video.fps {declared}, the dataset "
            f"fps {info['fps']} (frames would be read at the wrong times)"
        )
    num_episodes = int(info["total_episodes"])
    index = read_video_index(root, key, num_episodes)
    chunk_col, file_col, from_col, _ = video_columns(key)
    paths = video_files(root, info, key, index)
    first_frame = np.rint(index[from_col] * fps).astype(np.int64)  # (E,)
    target = first_frame[episode_index] + frame_index  # (N,) frame number within its file
    file_of_episode = index[chunk_col] * 1000 + index[file_col]
    file_of_row = file_of_episode[episode_index]
    frames = allocate()
    bar = progress_bar(
        total=len(target), desc=f"decode {key} (video)", unit="frame", enabled=progress
    )
    for path, (chunk, file_index) in zip(paths, sorted(set(zip(index[chunk_col].tolist(), index[file_col].tolist())))):  # fmt: skip
        rows = np.flatnonzero(file_of_row == chunk * 1000 + file_index)
        rows = rows[np.argsort(target[rows], kind="stable")]
        wanted = target[rows]
        position = 0
        with closing(_frames(path, shape)) as stream:
            for number, frame in enumerate(stream):
                while position < len(rows) and wanted[position] == number:
                    frames[rows[position]] = frame
                    position += 1
                    bar.update(1)
                if position == len(rows):
                    break
        if position < len(rows):
            row = int(rows[position])
            raise InputError(
                f"{path}: holds no frame {wanted[position]} (episode {episode_index[row]}, frame "
                f"{frame_index[row]} at {wanted[position] / fps:.3f} s); the video is shorter "
                "than meta/episodes says"
            )
    bar.close()
    return frames
