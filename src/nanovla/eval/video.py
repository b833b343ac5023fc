"""Rollout videos: frames upscaled (nearest) so a person can see a 64x64 scene, written as GIF/MP4."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nanovla.errors import InputError


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscale of (..., H, W, 3) frames by an integer `factor`."""
    if factor < 1:
        raise InputError(f"upscale factor must be >= 1, got {factor}")
    return frames.repeat(factor, axis=-3).repeat(factor, axis=-2)


def add_caption(frames: np.ndarray, text: str, height: int = 14) -> np.ndarray:
    """Append a black strip with `text` under every (T, H, W, 3) frame (ASCII shown as is)."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (frames.shape[2], height))
    ImageDraw.Draw(strip).text((2, 1), text, fill=(255, 255, 255))
    strip_pixels = np.broadcast_to(np.asarray(strip), (frames.shape[0], height, frames.shape[2], 3))
    return np.concatenate([frames, strip_pixels], axis=1)


def write_video(
    frames: np.ndarray, path: str | Path, fps: int = 10, scale: int = 4, caption: str = ""
) -> Path:
    """Write (T, H, W, 3) uint8 `frames` to `path` (.gif, or .mp4 with imageio-ffmpeg).

    The file is written beside its final name and renamed, so a reader never sees half a video.
    """
    path = Path(path)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    import imageio.v3 as iio

    frames = upscale(frames, scale)
    if caption:
        frames = add_caption(frames, caption.encode("ascii", "replace").decode())
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    if path.suffix.lower() == ".gif":
        iio.imwrite(temporary, frames, duration=1000 / fps, loop=0)
    elif path.suffix.lower() == ".mp4":
        iio.imwrite(temporary, frames, fps=fps)  # needs the `video` extra (imageio-ffmpeg)
    else:
        raise InputError(f"video path {str(path)!r} must end in .gif or .mp4")
    temporary.replace(path)
    return path
