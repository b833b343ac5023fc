"""`nanovla lab caption`: a BLIP- (or LLaVA-) style model learns to caption world scenes.

Data: `nanovla.data.captions` (its "scene" style: every object and bowl on the table, in a
random order, from the training caption templates, English or Korean; training scenes hold no
held-out (kind, colour) combination). The prompt is the caption instruction ("describe the
image." / "이미지를 설명해 줘."), the target the caption. Fresh scenes every step.

Scoring on unseen scenes (`captions` split "test", and "heldout_combos", whose focus object is
a green ball or a purple box), with greedy and beam-search decoding (KV cache):
- BLEU (sacrebleu, corpus level, per language) against the scene's reference caption. The
  reference lists the objects in a random order the model cannot know, so BLEU is a lower
  bound on how well the caption describes the scene;
- exact attribute recall: the fraction of the scene's objects whose full "size colour kind"
  phrase appears in the caption (and of its bowls, "colour bowl"), and precision: the
  fraction of object phrases in the caption that name an object of the scene.
metrics.json holds "bleu", "attribute_recall", "attribute_precision" (split -> decoding ->
language), the loss curve and the wall time; grid.png shows test scenes with generated and
reference captions; the model is saved under `--out`/model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from nanovla.data import captions as caption_data
from nanovla.labs.common import check_positive, setup, write_metrics
from nanovla.labs.vlm_train import Batch, VLMLabConfig, build_model, plot_grid, train, wrap
from nanovla.models.vlm import VLM, build_tokenizer
from nanovla.models.vlm.text import CAPTION_PROMPTS
from nanovla.world.instructions import BOWL_KO, COLORS_KO, KINDS_KO, SIZES_KO
from nanovla.world.scene import COLORS, KINDS, SIZES, SceneState

EVAL_SPLITS = ("test", "heldout_combos")


@dataclass
class CaptionConfig(VLMLabConfig):
    """Train an image captioner on world scenes (English and Korean) and score BLEU and exact
    attribute recall on unseen scenes and held-out attribute combinations."""

    out: Path = Path("runs/lab-caption")
    """directory for metrics.json, grid.png and the model (model/)"""
    arch: Literal["blip", "llava"] = "blip"
    """"blip": image tokens feed a text decoder through cross-attention; "llava": image tokens
    through a projector, prepended to a causal LM"""
    steps: int = 2000
    """optimizer steps (each on a fresh batch)"""
    batch_size: int = 32
    """captions per step"""
    beam_size: int = 3
    """beam width for the beam-search scores (greedy is always scored too)"""
    eval_images: int = 200
    """unseen scenes per evaluation split"""


def caption_batch(split: str, count: int, seed: int, image_size: int) -> tuple[np.ndarray, list, list, list, SceneState]:  # fmt: skip
    """`count` scenes of `split`: images, prompts, scene captions, languages and the state.
    Even rows are English, odd rows Korean."""
    data = caption_data.make_captions(split, count, seed, image_size)
    languages = ["en" if i % 2 == 0 else "ko" for i in range(count)]
    targets = [data.captions["scene"][lang][i] for i, lang in enumerate(languages)]
    prompts = [CAPTION_PROMPTS[lang] for lang in languages]
    return data.images, prompts, targets, languages, data.state


def make_batches(config: CaptionConfig) -> Callable[[int], Batch]:
    """`next_batch(step)`: fresh training scenes for every step."""
    rng = np.random.default_rng(config.seed)

    def next_batch(step: int) -> Batch:
        seed = config.seed * 1_000_003 + step
        images, prompts, targets, _, _ = caption_batch("train", config.batch_size, seed, config.image_size)  # fmt: skip
        order = rng.permutation(len(prompts))
        return images[order], [prompts[i] for i in order], [targets[i] for i in order]

    return next_batch


def _phrases(state: SceneState, env: int, korean: bool) -> tuple[set[str], set[str]]:
    """The scene's full object phrases and bowl phrases."""
    sizes, colors, kinds = (SIZES_KO, COLORS_KO, KINDS_KO) if korean else (SIZES, COLORS, KINDS)
    objects = {f"{sizes[s]} {colors[c]} {kinds[k]}" for k, c, s, on in zip(
        state.obj_kind[env], state.obj_color[env], state.obj_size[env], state.obj_active[env]) if on}  # fmt: skip
    bowl = BOWL_KO if korean else "bowl"
    bowls = {f"{colors[c]} {bowl}" for c in state.bowl_color[env]}
    return objects, bowls


def _mentioned(text: str, korean: bool) -> list[str]:
    """Every "size colour kind" phrase in `text`."""
    sizes, colors, kinds = (SIZES_KO, COLORS_KO, KINDS_KO) if korean else (SIZES, COLORS, KINDS)
    pattern = f"({'|'.join(sizes)}) ({'|'.join(colors)}) ({'|'.join(kinds)})"
    return [" ".join(m) for m in re.findall(pattern, text)]


def attribute_scores(generated: list[str], state: SceneState, languages: list[str]) -> dict[str, dict[str, float]]:  # fmt: skip
    """Per language: exact attribute recall (objects, bowls) and object precision."""
    counts: dict[str, np.ndarray] = {}
    for env, (text, lang) in enumerate(zip(generated, languages, strict=True)):
        objects, bowls = _phrases(state, env, lang == "ko")
        mentioned = _mentioned(text, lang == "ko")
        row = np.array([sum(o in text for o in objects), len(objects),
                        sum(b in text for b in bowls), len(bowls),
                        sum(m in objects for m in mentioned), len(mentioned)], dtype=float)  # fmt: skip
        counts[lang] = counts.get(lang, 0) + row
    out = {}
    for lang, c in sorted(counts.items()):
        out[lang] = {"object_recall": c[0] / c[1], "bowl_recall": c[2] / c[3],
                     "object_precision": c[4] / max(c[5], 1.0)}  # fmt: skip
    return out


def bleu(generated: list[str], references: list[str], languages: list[str]) -> dict[str, float]:
    """Corpus BLEU (sacrebleu, default 13a tokenization) per language."""
    import sacrebleu

    scores = {}
    for lang in sorted(set(languages)):
        rows = [i for i, value in enumerate(languages) if value == lang]
        hypotheses = [generated[i] for i in rows]
        scores[lang] = sacrebleu.corpus_bleu(hypotheses, [[references[i] for i in rows]]).score
    return scores


def evaluate(model: VLM, config: CaptionConfig) -> tuple[dict, dict]:
    """Scores per split and decoding, and the test split's samples for the grid."""
    scores: dict = {"bleu": {}, "attributes": {}}
    samples = {}
    for split in EVAL_SPLITS:
        images, _, references, languages, state = caption_batch(split, config.eval_images, 12345, config.image_size)  # fmt: skip
        scores["bleu"][split], scores["attributes"][split] = {}, {}
        for decoding, beam in (("greedy", 1), (f"beam{config.beam_size}", config.beam_size)):
            generated = []
            for lang in ("en", "ko"):
                rows = [i for i, value in enumerate(languages) if value == lang]
                generated += list(zip(rows, model.caption(images[rows], lang, beam_size=beam)))
            generated = [text for _, text in sorted(generated)]
            scores["bleu"][split][decoding] = bleu(generated, references, languages)
            scores["attributes"][split][decoding] = attribute_scores(generated, state, languages)
            samples[(split, decoding)] = (images, generated, references)
    return scores, samples


def run(config: CaptionConfig) -> dict[str, object]:
    """Trains, evaluates, prints BLEU and attribute recall, writes metrics.json, grid.png, model/."""
    check_positive(steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                   beam_size=config.beam_size, eval_images=config.eval_images)  # fmt: skip
    out = setup(config)
    texts = caption_batch("train", 400, 999_999, config.image_size)[2]
    # the model the README's caption figures were measured with: word tokenizer, learned image
    # positions only, no cell tags (the VQA lab's BPE / sine-cosine / tag changes are untested here)
    tokenizer = build_tokenizer(texts, max_length=64, kind="word")
    model = build_model(config, tokenizer, 64, image_position="learned", cell_tags=False)
    result = train(model, make_batches(config), config.steps, config.lr,
                   min(config.warmup, config.steps - 1), desc="lab caption")  # fmt: skip
    scores, samples = evaluate(model, config)
    model.save_pretrained(out / "model")
    images, generated, references = samples[("test", f"beam{config.beam_size}")]
    lines = [[(f"gen: {line}", True) for line in wrap(g)] + [(f"ref: {line}", True) for line in wrap(r)]
             for g, r in zip(generated[:8], references[:8])]  # fmt: skip
    plot_grid(out / "grid.png", images[:8], lines, f"unseen scenes: generated (beam {config.beam_size}) and reference captions")  # fmt: skip
    recall = {split: {dec: {lang: v["object_recall"] for lang, v in by_lang.items()} for dec, by_lang in by_dec.items()} for split, by_dec in scores["attributes"].items()}  # fmt: skip
    precision = {split: {dec: {lang: v["object_precision"] for lang, v in by_lang.items()} for dec, by_lang in by_dec.items()} for split, by_dec in scores["attributes"].items()}  # fmt: skip
    metrics = {
        "bleu": scores["bleu"], "attribute_recall": recall, "attribute_precision": precision,
        "attributes": scores["attributes"], "wall_time_s": result.wall_time_s,
        "loss": result.losses, "arch": config.arch, "num_parameters": model.num_parameters(),
    }  # fmt: skip
    write_metrics(out, metrics, config)
    for split in EVAL_SPLITS:
        for decoding, by_lang in scores["bleu"][split].items():
            attrs = scores["attributes"][split][decoding]
            cells = "  ".join(f"{lang}: BLEU {by_lang[lang]:5.1f} recall {attrs[lang]['object_recall']:.3f} "
                              f"precision {attrs[lang]['object_precision']:.3f} bowls {attrs[lang]['bowl_recall']:.3f}"
                              for lang in by_lang)  # fmt: skip
            print(f"{split:<15}{decoding:<8}{cells}")
    print(f"{config.arch}-style captioner, {model.num_parameters():,} parameters, {config.steps} "
          f"steps x {config.batch_size}: training {result.wall_time_s:.0f} s wall time")  # fmt: skip
    print(f"wrote {out}/metrics.json, grid.png, model/")
    return metrics
