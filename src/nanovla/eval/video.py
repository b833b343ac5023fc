"""Rollout videos: frames upscaled (nearest) so a person can see a 64x64 scene, written as GIF/MP4.

`write_video(..., success=...)` marks the outcome as `nanovla world demo` does: a status strip
under every frame stays black while the episode runs and, on the final frame (held for `hold`
frames so a viewer sees it), turns green with "success" or red with "failure".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nanovla.errors import InputError

SUCCESS_RGB = (0, 150, 0)
"""status strip color of the final frame of a successful episode"""
FAILURE_RGB = (190, 0, 0)
"""status strip color of the final frame of a failed episode"""
STRIP_HEIGHT = 14
"""pixel height of a caption or status strip (PIL's built-in font is ~11 px tall)"""


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscale of (..., H, W, 3) frames by an integer `factor`."""
    if factor < 1:
        raise InputError(f"upscale factor must be >= 1, got {factor}")
    return frames.repeat(factor, axis=-3).repeat(factor, axis=-2)


def _strip(width: int, text: str, background: tuple[int, int, int], height: int) -> np.ndarray:
    """(height, width, 3) uint8: `text` in white on `background` (ASCII shown as is)."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, height), background)
    if text:
        ImageDraw.Draw(strip).text((2, 1), text, fill=(255, 255, 255))
    return np.asarray(strip)


def add_caption(frames: np.ndarray, text: str, height: int = STRIP_HEIGHT) -> np.ndarray:
    """Append a black strip with `text` under every (T, H, W, 3) frame (ASCII shown as is)."""
    strip = _strip(frames.shape[2], text, (0, 0, 0), height)
    strips = np.broadcast_to(strip, (frames.shape[0], *strip.shape))
    return np.concatenate([frames, strips], axis=1)


def mark_outcome(
    frames: np.ndarray, success: bool, hold: int = 5, height: int = STRIP_HEIGHT
) -> np.ndarray:
    """(T + hold - 1, H + height, W, 3): a status strip under every (T, H, W, 3) frame, black
    except under the final frame, which says "success" on green or "failure" on red and is
    repeated to show `hold` times."""
    if hold < 1:
        raise InputError(f"hold must be >= 1, got {hold}")
    if len(frames) == 0:
        raise InputError("mark_outcome needs at least one frame")
    width = frames.shape[2]
    running = _strip(width, "", (0, 0, 0), height)
    verdict = (
        _strip(width, "success", SUCCESS_RGB, height)
        if success
        else _strip(width, "failure", FAILURE_RGB, height)
    )
    strips = np.concatenate(
        [np.broadcast_to(running, (len(frames) - 1, *running.shape)), verdict[None]]
    )
    marked = np.concatenate([frames, strips], axis=1)
    return np.concatenate([marked, np.repeat(marked[-1:], hold - 1, axis=0)])


def write_video(
    frames: np.ndarray,
    path: str | Path,
    fps: int = 10,
    scale: int = 4,
    caption: str = "",
    success: bool | None = None,
    hold: int = 5,
) -> Path:
    """Write (T, H, W, 3) uint8 `frames` to `path` (.gif, or .mp4 with imageio-ffmpeg).

    `caption` goes in a strip under every frame; `success` (None: unmarked) marks the final
    frame as `mark_outcome` does, holding it for `hold` frames. The file is written beside its
    final name and renamed, so a reader never sees half a video.
    """
    path = Path(path)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if path.suffix.lower() not in (".gif", ".mp4"):
        raise InputError(f"video path {str(path)!r} must end in .gif or .mp4")
    if path.suffix.lower() == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError as error:
            raise InputError(
                f"{path}: MP4 videos need imageio-ffmpeg: pip install 'nanovla[video]' "
                "(or write a .gif)"
            ) from error
    import imageio.v3 as iio

    frames = upscale(frames, scale)
    if caption:
        frames = add_caption(frames, caption.encode("ascii", "replace").decode())
    if success is not None:
        frames = mark_outcome(frames, success, hold)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        if path.suffix.lower() == ".gif":
            iio.imwrite(temporary, frames, duration=1000 / fps, loop=0)
        else:
            iio.imwrite(temporary, frames, fps=fps)  # needs the `video` extra (imageio-ffmpeg)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
