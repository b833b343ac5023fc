"""`nanovla lab clip`: train a CLIP on the world's image-caption pairs, then measure it.

    make_captions("train", ...): single-object images (half, by default) and full scenes, each
        with scene / object / relation captions in English and Korean (training templates)
    -> batches of `batch_size` (image, caption) pairs, the caption's style and language drawn at
       random per pair; pairs whose caption text repeats one already in the batch are dropped (a
       repeated caption would be a false negative for InfoNCE)
    -> CLIP (`nanovla.models.clip`) trained with symmetric InfoNCE, AdamW (weight decay 0.1 on
       matrices), warmup + cosine, gradient clipping, the logit scale clamped after each step
    -> `nanovla.labs.clip_eval`: zero-shot colour / kind / size by prompt ensembles on held-out
       scenes and held-out (kind, color) combos (never shown in training: no green ball and no
       purple box is in any training image), retrieval recall@1/5/10 both ways on held-out
       scenes with held-out caption templates, and a PCA plot of both embeddings

Writes OUT/metrics.json ("zero_shot" per attribute, "recall_at_1", ...), OUT/model/ (the CLIP,
`CLIP.from_pretrained(OUT/model)`; the VLA takes it with `--policy.vision clip:OUT/model`),
OUT/pca.png and OUT/loss.png. The default image tower is `two_stream_cnn`
(models/vision/two_stream.py): the default `nanovla train` policy's encoder (vla_cnn, widths
(32,)) on a hue-blind chroma map, beside a shape-blind 1x1 colour stream. With vla_cnn itself
(`--vision vla_cnn`, what the policy trains from scratch) every green ball, a combination no
training image holds, is read as a box (held-out combos' kind 0.524); with the two streams
0.997 (README, "lab clip"). A CLIP-initialised policy then has the two-stream encoder.
The tokenizer's vocabulary is that of the training captions plus the world's training
instructions (English and Korean), so a CLIP text tower in the VLA knows the instruction verbs'
ids (their embeddings are only trained there).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from nanovla.data.captions import (
    LANGUAGES,
    STYLES,
    CaptionSet,
    make_captions,
)
from nanovla.errors import InputError
from nanovla.labs.clip_eval import evaluate, plot_embeddings
from nanovla.labs.clip_pairs import PairSampler
from nanovla.labs.common import LabConfig, check_positive, plot_curves, setup, write_metrics
from nanovla.models.clip import CLIP, CLIPConfig, clip_tokenizer
from nanovla.progress import progress
from nanovla.train.optim import build_optimizer
from nanovla.train.schedules import build_scheduler
from nanovla.world.instructions import (
    resolve_templates,
    sample_instructions,
)
from nanovla.world.scene import allowed_target_combos, sample_scenes
from nanovla.world.tasks import TASK_FAMILIES


@dataclass
class ClipConfig(LabConfig):
    """Train a CLIP on the world's image-caption pairs (English + Korean) and report zero-shot
    colour / kind / size accuracy on held-out scenes and held-out attribute combinations,
    retrieval recall@1/5/10 on a held-out caption set and a PCA plot of the embeddings."""

    out: Path = Path("runs/lab-clip")
    """output directory: metrics.json, model/, pca.png, loss.png"""
    vision: str = "two_stream_cnn"
    """image tower: a zoo name (two_stream_cnn: hue-blind shape stream + colour stream;
    vla_cnn: the default policy's encoder; resnet18; vit_tiny_patch16_224 for a CLIP-style ViT)"""
    vision_widths: tuple[int, ...] = (32,)
    """vla_cnn / two_stream_cnn channel widths ((32,) = the default nanovla train policy's)"""
    embed_dim: int = 128
    """joint embedding size"""
    text_width: int = 96
    """text Transformer width"""
    text_layers: int = 2
    """text Transformer layers"""
    tokenizer_level: Literal["word", "char", "particle"] = "word"
    """caption tokenizer: word, char or particle (Korean particles split off)"""
    steps: int = 3300
    """optimizer steps (two_stream_cnn's size reading needs them: held-out scenes' size with
    --seed 1 0.946 at 2200 steps, 0.967 at 3300; README, "lab clip")"""
    batch_size: int = 192
    """pairs per batch (before dropping repeated captions); every other pair is a negative"""
    lr: float = 2e-3
    """peak learning rate (AdamW, warmup + cosine)"""
    weight_decay: float = 0.1
    """AdamW weight decay on weight matrices (not on norms, biases or the logit scale)"""
    warmup_steps: int = 100
    """linear warmup steps"""
    train_images: int = 12000
    """training images generated once (single-object and full scenes together)"""
    single_object_fraction: float = 0.5
    """fraction of the training images that show one object and no bowl"""
    eval_images: int = 1000
    """single-object images per zero-shot split (held-out scenes, held-out combos)"""
    gallery: int = 500
    """images (and captions) in the retrieval gallery"""
    styles: tuple[str, ...] = STYLES
    """caption styles trained on: scene, object, relation"""
    languages: tuple[str, ...] = LANGUAGES
    """caption languages trained on: en, ko"""
    grayscale: float = 0.2
    """probability that a single-object training image is shown grey with a colour-free
    caption (see PairSampler); 0 = off"""
    grey: Literal["luminance", "channel", "permute", "hue"] = "luminance"
    """how the colour-free view is made: grey by "luminance" (0.299 R + 0.587 G + 0.114 B), grey
    by "channel" (one of R, G, B drawn per image: the world's green is visible against the
    table in R and G, not in luminance), or "permute": not grey, the R, G, B channels swapped
    by one of the five non-identity permutations drawn per image (a red ball turns green-ish,
    a green box red-ish), so the shape keeps its full contrast while its colour says nothing
    about its kind; or "hue": every colour rotated about the grey axis by an angle drawn
    uniformly per image (the near-grey table stays, the objects take any hue)"""
    grey_when_colour_free: bool = False
    """show the image grey whenever its drawn caption names no colour ("a photo of a small
    ball"), so a kind or size word is only ever paired with the shape, never with the colours
    the training combos happen to give that kind (see PairSampler; measured not to help)"""
    hard_negatives: float = 0.25
    """fraction of each batch drawn as contrast groups of single-object images that differ in
    one attribute: one kind and colour at every size, or one colour and size as every kind,
    each captioned by a phrase naming what differs ("a small red ball" beside "a large red
    ball"); see PairSampler. 0 = off. Grouped images are never grey"""
    decorrelate: bool = False
    """never pair a caption that names no colour ("a ball", "a small box") with an object whose
    colour comes with one kind only in the training images (there: green, only boxes; purple,
    only balls); such a caption names the colour too ("a small green box"). Counted from the
    training labels, not from the held-out list. Measured, it does not help: held-out combos'
    kind 0.524 with it and without (runs/clip-dc against runs/clip-n25)"""
    shared_captions: bool = True
    """keep the images of a batch whose drawn captions are the same text, each a positive of
    that text (`info_nce_shared`), instead of dropping all but the first (see PairSampler);
    measured: per-attribute size on held-out scenes 0.986 with it (runs/clip-sc) against 0.958
    without (runs/clip-n25)"""
    progress: bool = True
    """progress bar while training"""


def _check(config: ClipConfig) -> None:
    check_positive(
        steps=config.steps, batch_size=config.batch_size, lr=config.lr,
        train_images=config.train_images, eval_images=config.eval_images, gallery=config.gallery,
    )  # fmt: skip
    if config.batch_size < 2:
        raise_input("batch-size", "must be >= 2 (InfoNCE needs negatives)", config.batch_size)
    if not 0 <= config.warmup_steps < config.steps:
        raise_input("warmup-steps", f"must be in [0, --steps={config.steps})", config.warmup_steps)
    if not 0.0 <= config.grayscale <= 1.0:
        raise_input("grayscale", "must be in [0, 1]", config.grayscale)
    if not 0.0 <= config.hard_negatives < 1.0:
        raise_input("hard-negatives", "must be in [0, 1)", config.hard_negatives)
    if not 0.0 <= config.single_object_fraction <= 1.0:
        raise_input("single-object-fraction", "must be in [0, 1]", config.single_object_fraction)
    for name, values, allowed in (
        ("styles", config.styles, STYLES),
        ("languages", config.languages, LANGUAGES),
    ):
        bad = [v for v in values if v not in allowed] or ([] if values else ["(none)"])
        if bad:
            raise_input(name, f"unknown value {bad[0]!r}; choose from {', '.join(allowed)}", values)


def raise_input(option: str, what: str, value: object) -> None:
    raise InputError(f"--{option}: {what}, got {value!r}")


def training_sets(config: ClipConfig) -> list[CaptionSet]:
    """The training pairs: single-object images and full scenes (seeded by --seed)."""
    single = round(config.train_images * config.single_object_fraction)
    sets = []
    if single:
        sets.append(make_captions("train", single, seed=config.seed, single_object=True))
    if config.train_images - single:
        sets.append(make_captions("train", config.train_images - single, seed=config.seed + 1))
    return sets


def instruction_texts(count: int = 2000, seed: int = 0) -> list[str]:
    """World training instructions (English + Korean) whose words the tokenizer should know."""
    rng = np.random.default_rng(seed)
    families = np.arange(count) % len(TASK_FAMILIES)
    state = sample_scenes(rng, families, allowed_target_combos("train"))
    pools = resolve_templates("train+ko", TASK_FAMILIES)
    return sample_instructions(rng, state, np.arange(count), pools)


def build_clip(config: ClipConfig, sets: list[CaptionSet]) -> CLIP:
    """A fresh CLIP whose image statistics and vocabulary come from the training pairs."""
    images = np.concatenate([s.images for s in sets])
    pixels = images[:: max(1, len(images) // 2000)].reshape(-1, 3) / 255.0
    texts = [
        t for s in sets for style in STYLES for lang in LANGUAGES for t in s.captions[style][lang]
    ]
    tokenizer = clip_tokenizer(texts + instruction_texts(seed=config.seed), config.tokenizer_level)
    clip_config = CLIPConfig(
        vision=config.vision, vision_widths=config.vision_widths, embed_dim=config.embed_dim,
        text_width=config.text_width, text_layers=config.text_layers, text_ff=4 * config.text_width,
        image_size=int(images.shape[1]),
        image_mean=tuple(float(v) for v in pixels.mean(axis=0)),
        image_std=tuple(float(v) for v in pixels.std(axis=0)),
    )  # fmt: skip
    return CLIP(clip_config, tokenizer)


def train(clip: CLIP, sampler: PairSampler, config: ClipConfig) -> tuple[float, list[float]]:
    """Trains `clip` for config.steps steps; returns (wall seconds, mean loss per 20 steps)."""
    optimizer = build_optimizer(clip, config.lr, config.weight_decay, (0.9, 0.98))
    scheduler = build_scheduler(optimizer, "cosine", config.steps, config.warmup_steps)
    clip.train()
    start, running, history = time.perf_counter(), [], []
    bar = progress(total=config.steps, desc="clip", unit="step", enabled=config.progress)
    for step in range(1, config.steps + 1):
        images, texts = sampler.sample()
        loss = clip.loss(images, texts)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(clip.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        clip.clamp_logit_scale_()
        running.append(loss.item())
        if step % 20 == 0 or step == config.steps:
            history.append(float(np.mean(running)))
            bar.set_postfix(
                loss=f"{history[-1]:.3f}", scale=f"{clip.logit_scale_value().item():.1f}"
            )
            running = []
        bar.update(1)
    bar.close()
    return time.perf_counter() - start, history


def run(config: ClipConfig) -> dict:
    """The whole lab; returns the metrics it wrote."""
    _check(config)
    out = setup(config)
    began = time.perf_counter()
    sets = training_sets(config)
    clip = build_clip(config, sets)
    sampler = PairSampler(sets, config)
    data_seconds = time.perf_counter() - began
    seconds, history = train(clip, sampler, config)
    clip.eval()
    clip.save_pretrained(out / "model")
    metrics = evaluate(clip, config.eval_images, config.seed, config.gallery)
    metrics |= {
        "train_seconds": round(seconds, 1),
        "data_seconds": round(data_seconds, 1),
        "steps": config.steps,
        "final_loss": history[-1],
        "logit_scale": clip.logit_scale_value().item(),
        "parameters": sum(p.numel() for p in clip.parameters()),
        "vocab_size": clip.tokenizer.vocab_size,
    }
    plot_embeddings(clip, out / "pca.png", seed=config.seed)
    plot_curves(out / "loss.png", {"InfoNCE loss": {"train": history}}, xlabel="x20 steps")
    write_metrics(out, metrics, config)
    _print(metrics)
    return metrics


def _print(metrics: dict) -> None:
    names = ("zero_shot", "zero_shot_heldout_combos", "zero_shot_ko", "zero_shot_heldout_combos_ko")
    others = ("all_attributes", "by_combo")
    others = tuple(f"{split}_{o}" for o in others for split in names[:2])
    for name in (*names, *others):
        line = ", ".join(f"{k} {v:.3f}" for k, v in metrics[name].items())
        print(f"{name}: {line}")
    for key, value in metrics["retrieval"].items():
        parts = [f"{d} R@{k} {v:.3f}" for d, by_k in value.items() for k, v in by_k.items()]
        print(f"retrieval {key} (gallery {metrics['retrieval_gallery']}): " + ", ".join(parts))
    print(f"train: {metrics['steps']} steps in {metrics['train_seconds']} s, final loss "
          f"{metrics['final_loss']:.3f}, logit scale {metrics['logit_scale']:.1f}")  # fmt: skip
