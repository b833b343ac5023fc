"""The rollout GIFs of a run, with the instruction each episode was given.

The evaluation writes `videos/<family>_<index>_<success|failure>.gif` for the first episodes of
each family's seen-instruction batch, the instruction burnt into a caption strip. eval.json
lists the files but not their instructions, so the report re-creates each family's evaluation
scenes (the world reset with the evaluation seed, as `eval.rollout.run_episodes` does) and
takes episode `index`'s instruction from there, keeping it only if that scene renders the GIF's
first frame (so a world that changed since the run cannot mislabel a video).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nanovla.constants import VIDEOS_DIR

VIDEO_NAME = re.compile(r"^(?P<family>.+)_(?P<index>\d+)_(?P<outcome>success|failure)\.gif$")
GIF_SCALE = 4
"""the nearest-neighbour upscale the evaluation writes GIFs with (eval.video.write_video)"""
FRAME_TOLERANCE = 8.0
"""mean absolute pixel difference (0..255) allowed between a re-created scene and the GIF's
first frame (GIF palettes quantize colors a little)"""


@dataclass
class Rollout:
    """One rollout GIF of the run."""

    path: Path
    family: str
    index: int
    success: bool
    instruction: str | None = None
    """the episode's instruction, when the evaluation scene was re-created and matched"""


def find_rollouts(run: Path, result: dict[str, Any] | None) -> list[Rollout]:
    """The run's rollout GIFs: every `<family>_<index>_<outcome>.gif` under RUN/videos/ (those
    eval.json lists are looked up there by name, as the listed paths are relative to wherever
    the run was started); ordered by family as evaluated, then episode."""
    names = sorted(p.name for p in (run / VIDEOS_DIR).glob("*.gif"))
    families = list(result.get("families", [])) if result else []
    rollouts = []
    for name in names:
        match = VIDEO_NAME.match(name)
        path = run / VIDEOS_DIR / name
        if match is None or not path.is_file():
            continue
        rollouts.append(
            Rollout(path, match["family"], int(match["index"]), match["outcome"] == "success")
        )

    def order(rollout: Rollout) -> tuple[int, str, int]:
        known = families.index(rollout.family) if rollout.family in families else len(families)
        return known, rollout.family, rollout.index

    return sorted(rollouts, key=order)


def first_frame(path: Path) -> np.ndarray | None:
    """The first frame of a GIF as (H, W, 3) uint8, or None when it cannot be read."""
    try:
        import imageio.v3 as iio

        frame = np.asarray(iio.imread(path, index=0))
    except Exception:  # noqa: BLE001 - any unreadable GIF just goes without its instruction
        return None
    return frame[..., :3] if frame.ndim == 3 else None


def scene_matches(gif_frame: np.ndarray, scene: np.ndarray) -> bool:
    """Whether `scene` (H, W, 3) is the top of `gif_frame` upscaled by GIF_SCALE."""
    height, width = scene.shape[:2]
    top = gif_frame[: height * GIF_SCALE : GIF_SCALE, : width * GIF_SCALE : GIF_SCALE]
    if top.shape != scene.shape:
        return False
    return float(np.abs(top.astype(np.int16) - scene.astype(np.int16)).mean()) <= FRAME_TOLERANCE


def attach_instructions(rollouts: list[Rollout], result: dict[str, Any], image_size: int) -> None:
    """Fill `instruction` of each rollout from its re-created evaluation scene (seen split)."""
    from nanovla.eval.evaluate import SPLIT_TEMPLATES, scene_seed
    from nanovla.world import make_world

    episodes, seed = result.get("episodes_per_task"), result.get("seed")
    if not isinstance(episodes, int) or not isinstance(seed, int):
        return
    for family in dict.fromkeys(r.family for r in rollouts):
        try:
            world = make_world(
                family,
                num_envs=episodes,
                image_size=image_size,
                seed=scene_seed(seed, family),
                instructions=SPLIT_TEMPLATES["seen"],
                targets=str(result.get("targets", "all")),
            )
            obs = world.reset(seed=scene_seed(seed, family))
        except Exception:  # noqa: BLE001 - a family this world no longer knows: no instruction
            continue
        for rollout in (r for r in rollouts if r.family == family and r.index < episodes):
            frame = first_frame(rollout.path)
            if frame is not None and scene_matches(frame, obs["image"][rollout.index]):
                rollout.instruction = str(obs["instruction"][rollout.index])
