"""`nanovla world show|demo`: look at the tabletop world.

nanovla world show --task pick_place --seed 3     # -> outputs/scene-pick_place-3.png
nanovla world demo --task sort --episodes 2       # -> outputs/demo-sort-0.gif

Without `--out`, files go under `outputs/` (which .gitignore ignores), named by task and seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import tyro

from nanovla.constants import OBS_FAMILY
from nanovla.errors import InputError
from nanovla.progress import progress
from nanovla.world.core import World, make_world
from nanovla.world.render import GRIPPER_ID
from nanovla.world.tasks import TASK_FAMILIES


@dataclass
class ShowConfig:
    """Write a PNG of one scene (image, instance masks, boxes) and print its instruction in
    English and Korean."""

    task: str = "pick_place"
    """task family: reach, push, pick_place, sort (or suite for a random one)"""
    seed: int = 0
    """scene seed (the same seed always gives the same scene)"""
    out: Annotated[
        Path | None, tyro.conf.arg(help_behavior_hint="(default: outputs/scene-<task>-<seed>.png)")
    ] = None
    """PNG file to write"""
    image_size: int = 64
    """rendered image side in pixels (64, 96, 128, 224, ...; at least 32)"""
    instructions: str = "train"
    """paraphrase split: train (Korean: ko) or heldout (Korean: ko_heldout)"""


@dataclass
class DemoConfig:
    """Record the scripted expert solving episodes as an animated GIF."""

    task: str = "sort"
    """task family: reach, push, pick_place, sort (or suite to mix them)"""
    out: Annotated[
        Path | None, tyro.conf.arg(help_behavior_hint="(default: outputs/demo-<task>-<seed>.gif)")
    ] = None
    """GIF file to write"""
    episodes: int = 2
    """episodes to record, one after another"""
    seed: int = 0
    """seed of the first scene"""
    image_size: int = 64
    """rendered image side in pixels before upscaling"""
    scale: int = 4
    """nearest-neighbour upscaling factor so a person can see the frames"""
    fps: int = 8
    """GIF frames per second"""
    noise: float = 0.0
    """std of Gaussian noise on the expert's motion (dx, dy; the grip stays clean), the noise
    DART collection executes (`World.perturb`)"""


OUTPUTS_DIR = Path("outputs")
"""where `world show` and `world demo` write when no --out is given (ignored by git)"""


def _out_path(out: Path | None, kind: str, task: str, seed: int, suffix: str) -> Path:
    """`out`, checked to end in `suffix`, or OUTPUTS_DIR/<kind>-<task>-<seed><suffix>."""
    if out is None:
        return OUTPUTS_DIR / f"{kind}-{task}-{seed}{suffix}"
    if out.suffix.lower() != suffix:
        raise InputError(f"--out: {str(out)!r} must end in {suffix}")
    return out


def _bilingual(config: ShowConfig) -> tuple[World, str]:
    """The scene's world (English split) and its Korean instruction for the same scene."""
    if config.instructions not in ("train", "heldout"):
        raise InputError(
            f"--instructions: got {config.instructions!r}; choose 'train' or 'heldout'"
        )
    world = make_world(
        config.task, 1, config.image_size, config.seed, instructions=config.instructions
    )
    korean_split = "ko_heldout" if config.instructions == "heldout" else "ko"
    korean = make_world(config.task, 1, config.image_size, config.seed, instructions=korean_split)
    # Scenes are drawn before instructions, so both worlds hold the same scene.
    return world, korean.instructions[0]


def show(config: ShowConfig) -> int:
    """Writes the scene PNG and prints the instructions."""
    out = _out_path(config.out, "scene", config.task, config.seed, ".png")
    world, korean = _bilingual(config)
    try:
        import matplotlib
    except ImportError as error:
        raise InputError(
            "world show draws with matplotlib, which is not installed: pip install 'nanovla[plots]'"
        ) from error

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    image = world.render()[0]
    notes = world.annotations()
    figure, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    axes[0].imshow(image, interpolation="nearest")
    axes[0].set_title(f"{world.image_size}x{world.image_size} RGB")
    # Background white, then one distinct color per instance id (objects, bowls, gripper).
    colors = ["white", *plt.get_cmap("tab10").colors]
    cmap = matplotlib.colors.ListedColormap(colors[: GRIPPER_ID + 1])
    axes[1].imshow(notes["masks"][0], interpolation="nearest", cmap=cmap, vmin=0, vmax=GRIPPER_ID)
    axes[1].set_title("instance masks")
    axes[2].imshow(image, interpolation="nearest")
    axes[2].set_title("boxes")
    for name, x0, y0, x1, y1 in notes["boxes"][0]:
        corner = (x0 - 0.5, y0 - 0.5)
        axes[2].add_patch(Rectangle(corner, x1 - x0, y1 - y0, fill=False, ec="black", lw=1))
        axes[2].text(x0 - 0.5, y0 - 1.0, name, fontsize=7, color="black")
    for axis in axes:
        axis.set_axis_off()
    task = TASK_FAMILIES[int(world.state.family[0])]
    figure.suptitle(f"{task}: {world.instructions[0]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(figure)
    print(f"task:     {task}")
    print(f"english:  {world.instructions[0]}")
    print(f"korean:   {korean}")
    print(f"caption:  {notes['caption_en'][0]}")
    print(f"설명:     {notes['caption_ko'][0]}")
    print(f"wrote {out}")
    return 0


def _caption_strip(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """frame (H, W, 3) with a white strip of text lines below it (PIL's built-in font)."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (frame.shape[1], 12 * len(lines) + 4), "white")
    draw = ImageDraw.Draw(strip)
    for i, line in enumerate(lines):
        draw.text((3, 2 + 12 * i), line, fill=(0, 0, 0))
    return np.concatenate([frame, np.asarray(strip)], axis=0)


def _record(world: World, config: DemoConfig) -> tuple[list[np.ndarray], int]:
    """Frames (upscaled, captioned) of the expert's first `config.episodes` episodes in a world
    without auto-reset (so each episode's last frame is shown), and how many succeeded."""
    frames, successes = [], 0
    obs = world.reset(seed=config.seed)
    for _ in progress(range(config.episodes), desc="demo", unit="episode"):
        caption = _wrap(
            f"{obs[OBS_FAMILY][0]}: {obs['instruction'][0]}", world.image_size * config.scale
        )
        for _ in range(max(world.max_steps.values())):
            big = obs["image"][0].repeat(config.scale, 0).repeat(config.scale, 1)
            frames.append(_caption_strip(big, [*caption, ""]))
            obs, _, terminated, truncated, info = world.step(world.expert_action())
            if terminated[0] or truncated[0]:
                break
        solved = bool(info["success"][0])
        successes += solved
        big = obs["image"][0].repeat(config.scale, 0).repeat(config.scale, 1)
        frames += [_caption_strip(big, [*caption, "success" if solved else "failed"])] * 4
        world.restart(np.arange(1))
        obs = world.observe()
    return frames, successes


def demo(config: DemoConfig) -> int:
    """Runs the expert for `episodes` episodes in one env and writes the frames as a GIF."""
    out = _out_path(config.out, "demo", config.task, config.seed, ".gif")
    for name, value in (
        ("episodes", config.episodes),
        ("scale", config.scale),
        ("fps", config.fps),
    ):
        if value < 1:
            raise InputError(f"--{name}: must be >= 1, got {value}")
    import imageio.v3 as iio

    world = World(
        config.task, 1, config.image_size, config.seed, expert_noise=config.noise, autoreset=False
    )
    frames, successes = _record(world, config)
    height = max(frame.shape[0] for frame in frames)  # captions may wrap to more lines
    frames = [
        np.pad(f, ((0, height - len(f)), (0, 0), (0, 0)), constant_values=255) for f in frames
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, np.stack(frames), duration=1000 / config.fps, loop=0)
    print(f"{successes}/{config.episodes} episodes solved; wrote {len(frames)} frames to {out}")
    return 0


def _wrap(text: str, width_px: int, char_px: int = 6) -> list[str]:
    """Greedy word wrap for PIL's built-in ~6 px wide font."""
    limit, lines, line = max(8, width_px // char_px - 1), [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > limit:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line]


def main(argv: list[str]) -> int:
    """Entry point of `nanovla world`."""
    config = tyro.extras.subcommand_cli_from_dict(
        {"show": ShowConfig, "demo": DemoConfig},
        args=argv,
        prog="nanovla world",
        description=f"Look at the tabletop world. Task families: {', '.join(TASK_FAMILIES)}.",
    )
    return show(config) if isinstance(config, ShowConfig) else demo(config)
