"""What `nanovla lab caption` and `nanovla lab vqa` share: the training loop of a `VLM` on
batches drawn on the fly, exact-match scoring, and the grid of images with generated text.

Training: AdamW (decoupled weight decay on matrices only, `train.optim.build_optimizer`) with
linear warmup and cosine decay (`train.schedules`), gradient-norm clipping at 1.0, one batch of
fresh examples per step from `next_batch(step)`; a progress line reports the running loss.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nanovla.errors import InputError
from nanovla.labs.common import LabConfig, pyplot, save_figure
from nanovla.models.vlm import VLM, VLMConfig
from nanovla.models.vlm.layers import clip_vision_config, load_clip_vision
from nanovla.models.vlm.text import VLMTokenizer, normalize
from nanovla.progress import note, progress
from nanovla.train.optim import build_optimizer
from nanovla.train.schedules import build_scheduler

Batch = tuple[np.ndarray, list[str], list[str]] | tuple[np.ndarray, list[str], list[str], Any]
"""(images (B, H, W, 3) uint8, prompts, targets[, cell tags (B, h*w, 4) long or None])"""


@dataclass
class VLMLabConfig(LabConfig):
    """The options `nanovla lab caption` and `nanovla lab vqa` share: optimisation and model."""

    lr: float = 1e-3
    """peak AdamW learning rate (linear warmup, cosine decay to 5 %)"""
    warmup: int = 200
    """warmup steps"""
    d_model: int = 128
    """text model width"""
    num_layers: int = 3
    """text model layers"""
    vision_widths: tuple[int, ...] = (32, 64, 64)
    """vla_cnn widths: a stride-4 stem, then one stride-2 stage per further width; (32, 64, 64)
    gives 4x4 image tokens at 64x64, (32, 64) 8x8"""
    vision_init: Path | None = None
    """initialise the image tower from a CLIP model directory (`nanovla lab clip --out DIR`:
    DIR/model; a vla_cnn tower), as LLaVA starts from CLIP; its grid is pooled by
    --vision-pool, and --vision-widths / --image-size come from the CLIP"""
    vision_pool: int = 1
    """average-pool the image token grid by this factor per side"""
    image_size: int = 64
    """rendered image side in pixels"""


@dataclass
class TrainResult:
    losses: list[float]  # running mean loss, one value per `log_every` steps
    wall_time_s: float


def train(
    model: VLM,
    next_batch: Callable[[int], Batch],
    steps: int,
    lr: float,
    warmup: int,
    weight_decay: float = 0.01,
    log_every: int = 50,
    desc: str = "train",
    probe: Callable[[], str] | None = None,
    probe_every: int = 0,
    tag_weight: float = 1.0,
) -> TrainResult:
    """`steps` AdamW steps of `model.loss` on `next_batch(step)`; returns the loss curve.
    Every `probe_every` steps (0: never) `probe()` runs in eval mode and its line is printed.
    A batch's fourth item (cell tags, or None) goes to the loss with `tag_weight`."""
    optimizer = build_optimizer(model, lr, weight_decay, (0.9, 0.98))
    scheduler = build_scheduler(optimizer, "cosine", steps, min(warmup, steps - 1), 0.05)
    model.train()
    losses, window = [], []
    start = time.perf_counter()
    bar = progress(range(steps), desc=desc, unit="step")
    for step in bar:
        images, prompts, targets, *rest = next_batch(step)
        tags = rest[0] if rest else None
        loss, _ = model.loss(images, prompts, targets, tags=tags, tag_weight=tag_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        window.append(loss.item())
        if len(window) == log_every or step == steps - 1:
            losses.append(float(np.mean(window)))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            window = []
        if probe is not None and probe_every and (step + 1) % probe_every == 0 and step + 1 < steps:
            model.eval()
            note(f"step {step + 1}: {probe()}")
            model.train()
    bar.close()
    model.eval()
    return TrainResult(losses, time.perf_counter() - start)


def build_model(config: Any, tokenizer: VLMTokenizer, max_text_len: int, **fixed: Any) -> VLM:
    """The lab's VLM from its options (arch, sizes, vision widths / pool, --vision-init);
    `fixed`: further `VLMConfig` fields."""
    fields: dict[str, Any] = dict(
        arch=config.arch, image_size=config.image_size, vision_widths=config.vision_widths,
        vision_pool=config.vision_pool, d_model=config.d_model, num_layers=config.num_layers,
        max_text_len=max_text_len, **fixed,
    )  # fmt: skip
    if config.vision_init is not None:
        tower = clip_vision_config(str(config.vision_init))
        if tower["image_size"] != config.image_size:
            raise InputError(f"--image-size: {config.image_size}, but the CLIP in --vision-init takes {tower['image_size']}x{tower['image_size']} images")  # fmt: skip
        fields |= tower
    model = VLM(VLMConfig(**fields), tokenizer)
    if config.vision_init is not None:
        load_clip_vision(model.net.image, str(config.vision_init))
    return model


def exact_match(
    model: VLM, predictions: Sequence[str], truths: Sequence[str], groups: Sequence[str]
) -> dict[str, float]:
    """Fraction of normalized predictions equal to the normalized truth, per group and "all"."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for predicted, truth, group in zip(predictions, truths, groups, strict=True):
        hit = normalize(model.tokenizer, predicted) == normalize(model.tokenizer, truth)
        hits[group].append(hit)
        hits["all"].append(hit)
    return {group: float(np.mean(values)) for group, values in sorted(hits.items())}


def _hangul_fonts() -> list[str]:
    """Installed font families with Hangul (Nanum, Noto CJK, ...), registered with matplotlib,
    so Korean text is drawn as text (DejaVu Sans has no Hangul); none found -> []."""
    from matplotlib import font_manager

    names = []
    for path in font_manager.findSystemFonts():
        if any(key in Path(path).name for key in ("Nanum", "NotoSansCJK", "NotoSansKR")):
            try:
                font_manager.fontManager.addfont(path)
                names.append(font_manager.FontProperties(fname=path).get_name())
            except (OSError, RuntimeError, ValueError):
                continue
    return list(dict.fromkeys(names))[:2]


def plot_grid(
    path: Path, images: np.ndarray, lines: Sequence[Sequence[tuple[str, bool]]], title: str
) -> Path:
    """Images in a grid, each with text lines below it (lines marked False are drawn red)."""
    plt = pyplot()
    plt.rcParams["font.family"] = ["DejaVu Sans", *_hangul_fonts()]
    columns = min(4, len(images))
    rows = (len(images) + columns - 1) // columns
    lines = [[(part, ok) for line, ok in text for part in wrap(line, 52)] for text in lines]
    most = max(len(text) for text in lines)
    height = 2.6 + 0.17 * most
    figure, axes = plt.subplots(
        rows, columns, figsize=(3.6 * columns, height * rows), squeeze=False
    )
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, text in zip(axes.flat, images, lines):
        axis.imshow(image, interpolation="nearest")
        for k, (line, ok) in enumerate(text):
            axis.text(0.0, -0.03 - 0.062 * k, line, transform=axis.transAxes, va="top",
                      fontsize=6.5, color="black" if ok else "red")  # fmt: skip
    figure.suptitle(title)
    figure.subplots_adjust(hspace=0.25 + 0.09 * most, wspace=0.15)
    return save_figure(figure, path)


def wrap(text: str, width: int = 58) -> list[str]:
    """Greedy word wrap of `text` into lines of at most `width` characters."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines
