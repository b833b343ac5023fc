"""What `nanovla lab clip` measures on a trained CLIP: zero-shot classification by prompt
ensembles, image-text retrieval recall@k both ways, and a PCA plot of both embeddings.

Zero-shot (CLIP section 3.1.4, prompt ensembling): the classifier of value v of an attribute
is the mean, re-normalised, of the text embeddings of every prompt template filled with a phrase
that names v and no other attribute but the noun: "a photo of a ball", "a small ball" for kind
v = ball; "a small box", "a small ball" for size v = small; "a red box", "a red ball" for colour
v = red (averaged over the kinds, as the noun a size or colour needs). An image is given the
value whose classifier is most similar to its embedding. This is CLIP's own recipe (the prompt
names the class, nothing else). Scored on single-object images (`make_captions(...,
single_object=True)`) of held-out scenes and of the held-out (kind, color) combos.

Two other readings are reported beside it:
- `zero_shot_all_attributes`: every prompt also names the two other attributes, averaged over
  all their values ("a photo of a small red box", "a large blue box", ... for kind = box). The
  size and colour directions of those prompts are common to every class and drown the one
  being read (size 0.38 against 0.94 for the combo reading in runs/clip-b), and on a held-out
  combo the prompts include phrases the text tower never saw ("green ball").
- `zero_shot_by_combo`: one classifier per (kind, color, size) combo, the attributes read off
  the predicted combo.

Retrieval: N images and their N captions; image -> text recall@k is the fraction of images whose
own caption ranks among the k most similar captions (text -> image likewise). Ties count
against the query (a match's rank is the number of *other* candidates scoring at least as
high), so a model that scores everything alike gets recall@1 = 0, not 1.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from nanovla.data.captions import fill_caption, make_captions
from nanovla.labs.common import pyplot, save_figure
from nanovla.labs.pca import pca
from nanovla.models.clip import CLIP
from nanovla.world.instructions import COLORS_KO, KINDS_KO, SIZES_KO
from nanovla.world.scene import COLORS, KINDS, SIZES

ATTRIBUTES: dict[str, tuple[str, ...]] = {"color": COLORS, "kind": KINDS, "size": SIZES}
WORDS_KO = {"color": COLORS_KO, "kind": KINDS_KO, "size": SIZES_KO}
PROMPTS: dict[str, tuple[str, ...]] = {
    "en": (
        "a photo of a {color} {kind}",
        "a photo of a {size} {color} {kind}",
        "a {size} {color} {kind}",
        "there is a {size} {color} {kind} on the table",
    ),
    "ko": ("{color} {kind}", "{size} {color} {kind} 사진", "{size} {color} {kind}"),
}
"""prompt templates of the all-attributes and combo readings (a template may leave out {size})"""
OBJECT_PROMPTS: dict[str, tuple[str, ...]] = {
    "en": ("a photo of a {np}", "a {np}", "there is a {np} on the table"),
    "ko": ("{np} 사진", "{np}", "테이블 위에 {np}{가} 있다"),
}
"""prompt templates of the per-attribute reading; {np} is one of ATTRIBUTE_PHRASES"""
ATTRIBUTE_PHRASES: dict[str, tuple[tuple[str, ...], ...]] = {
    "kind": (("kind",), ("size", "kind")),
    "size": (("size", "kind"),),
    "color": (("color", "kind"),),
}
"""the phrases ("small ball") that read an attribute: each names it, and the kind as its noun
(kind: alone too); a phrase with a second attribute is averaged over that attribute's values"""
KS: tuple[int, ...] = (1, 5, 10)


@torch.no_grad()
def embed_images(clip: CLIP, images: np.ndarray, batch: int = 512) -> torch.Tensor:
    return torch.cat(
        [clip.encode_image(images[i : i + batch]) for i in range(0, len(images), batch)]
    )


@torch.no_grad()
def embed_texts(clip: CLIP, texts: Sequence[str], batch: int = 512) -> torch.Tensor:
    return torch.cat([clip.encode_text(texts[i : i + batch]) for i in range(0, len(texts), batch)])


def _prompt(template: str, values: dict[str, int], lang: str) -> str:
    words = ATTRIBUTES if lang == "en" else WORDS_KO
    return template.format(**{name: words[name][index] for name, index in values.items()})


def _attribute_prompts(attribute: str, value: int, lang: str) -> list[str]:
    """The per-attribute reading's prompts for `attribute` = `value` (see ATTRIBUTE_PHRASES)."""
    words = ATTRIBUTES if lang == "en" else WORDS_KO
    texts = []
    for phrase in ATTRIBUTE_PHRASES[attribute]:
        others = [name for name in phrase if name != attribute]
        choices = [range(len(ATTRIBUTES[name])) for name in others]
        for picked in itertools.product(*choices):
            values = dict(zip(others, picked, strict=True)) | {attribute: value}
            noun_phrase = " ".join(words[name][values[name]] for name in phrase)
            texts += [fill_caption(t, {"np": noun_phrase}) for t in OBJECT_PROMPTS[lang]]
    return texts


def _all_attribute_prompts(attribute: str, value: int, lang: str) -> list[str]:
    """The all-attributes reading's prompts: PROMPTS filled with every combo having `value`."""
    texts = []
    for kind in range(len(KINDS)):
        for color in range(len(COLORS)):
            for size in range(len(SIZES)):
                combo = {"color": color, "kind": kind, "size": size}
                if combo[attribute] == value:
                    texts += [_prompt(t, combo, lang) for t in PROMPTS[lang]]
    return texts


@torch.no_grad()
def zero_shot_classifiers(
    clip: CLIP, attribute: str, lang: str = "en", reading: str = "attribute"
) -> torch.Tensor:
    """(values, D) prompt-ensemble classifiers of `attribute`; `reading` "attribute" (the
    default, prompts naming only it) or "all" (prompts naming every attribute)."""
    prompts = _attribute_prompts if reading == "attribute" else _all_attribute_prompts
    rows = []
    for value in range(len(ATTRIBUTES[attribute])):
        texts = list(dict.fromkeys(prompts(attribute, value, lang)))
        embedding = embed_texts(clip, texts).mean(dim=0)
        rows.append(embedding / embedding.norm())
    return torch.stack(rows)


def zero_shot(
    clip: CLIP,
    images: np.ndarray,
    labels: dict[str, np.ndarray],
    lang: str = "en",
    reading: str = "attribute",
    features: torch.Tensor | None = None,
) -> dict[str, float]:
    """Accuracy per attribute of the prompt-ensemble classifiers on `images` (`features`:
    their embeddings, when the caller has them already)."""
    features = embed_images(clip, images) if features is None else features
    scores = {}
    for attribute in ATTRIBUTES:
        classifiers = zero_shot_classifiers(clip, attribute, lang, reading)
        predicted = (features @ classifiers.t()).argmax(dim=1)
        scores[attribute] = float((predicted.numpy() == labels[attribute]).mean())
    return scores


@torch.no_grad()
def zero_shot_by_combo(
    clip: CLIP,
    images: np.ndarray,
    labels: dict[str, np.ndarray],
    lang: str = "en",
    features: torch.Tensor | None = None,
) -> dict[str, float]:
    """The other reading of zero-shot: one prompt-ensemble classifier per (kind, color, size)
    combo (30 classes, held-out combos included); each attribute is read off the predicted
    combo. Accuracy per attribute and of the whole combo."""
    combos = [(k, c, s) for k in range(len(KINDS)) for c in range(len(COLORS)) for s in range(3)]
    rows = []
    for kind, color, size in combos:
        values = {"color": color, "kind": kind, "size": size}
        embedding = embed_texts(clip, [_prompt(t, values, lang) for t in PROMPTS[lang]]).mean(0)
        rows.append(embedding / embedding.norm())
    features = embed_images(clip, images) if features is None else features
    predicted = (features @ torch.stack(rows).t()).argmax(dim=1).numpy()
    table = np.array(combos)[predicted]  # (N, 3) kind, color, size
    scores = {"kind": table[:, 0] == labels["kind"], "color": table[:, 1] == labels["color"]}
    scores["size"] = table[:, 2] == labels["size"]
    scores["combo"] = scores["kind"] & scores["color"] & scores["size"]
    return {name: float(hit.mean()) for name, hit in scores.items()}


def recall_at_k(similarity: torch.Tensor | np.ndarray, ks: Sequence[int] = KS) -> dict[int, float]:
    """Recall@k of a square (queries, candidates) similarity whose matches are the diagonal:
    the rank of a query's match is how many other candidates score at least as high."""
    sim = torch.as_tensor(similarity)
    own = sim.diagonal().unsqueeze(1)  # (N, 1)
    rank = (sim >= own).sum(dim=1) - 1  # (N,): the match itself always counts once
    return {k: float((rank < k).float().mean()) for k in ks}


def retrieval(clip: CLIP, images: np.ndarray, texts: Sequence[str]) -> dict[str, dict[int, float]]:
    """Recall@1/5/10 image -> text and text -> image for matching `images` and `texts`."""
    sim = embed_images(clip, images) @ embed_texts(clip, texts).t()
    return {"image_to_text": recall_at_k(sim), "text_to_image": recall_at_k(sim.t())}


def evaluate(clip: CLIP, count: int, seed: int, gallery: int) -> dict[str, object]:
    """Every figure of the lab: zero-shot on held-out scenes / combos (English and Korean
    prompts) and retrieval on a held-out caption set (test scenes, held-out templates)."""
    clip.eval()
    metrics: dict[str, object] = {}
    for name, split in (("zero_shot", "test"), ("zero_shot_heldout_combos", "heldout_combos")):
        pairs = make_captions(split, count, seed=seed, single_object=True)
        images, labels = pairs.images, pairs.labels
        features = embed_images(clip, images)  # one embedding for every reading below
        metrics[name] = zero_shot(clip, images, labels, "en", features=features)
        metrics[name + "_ko"] = zero_shot(clip, images, labels, "ko", features=features)
        metrics[name + "_all_attributes"] = zero_shot(
            clip, images, labels, "en", reading="all", features=features
        )
        metrics[name + "_by_combo"] = zero_shot_by_combo(
            clip, images, labels, "en", features=features
        )
    held = make_captions("test", gallery, seed=seed, templates="heldout")
    table = {}
    for style in ("scene", "relation"):
        for lang in ("en", "ko"):
            table[f"{style}.{lang}"] = retrieval(clip, held.images, held.captions[style][lang])
    metrics["retrieval"] = table
    metrics["retrieval_gallery"] = gallery
    scene = table["scene.en"]
    metrics["recall_at_1"] = {
        "image_to_text": scene["image_to_text"][1],
        "text_to_image": scene["text_to_image"][1],
    }
    return metrics


@torch.no_grad()
def plot_embeddings(clip: CLIP, path: Path, count: int = 300, seed: int = 0) -> Path:
    """PCA (our SVD code) of image embeddings of single-object test scenes and text embeddings
    of "a {size} {color} {kind}" for every combo; one panel per attribute, coloured by it."""
    pairs = make_captions("test", count, seed=seed, single_object=True)
    images = embed_images(clip, pairs.images).numpy()
    combos = [(k, c, s) for k in range(2) for c in range(5) for s in range(3)]
    prompts = [f"a {SIZES[s]} {COLORS[c]} {KINDS[k]}" for k, c, s in combos]
    texts = embed_texts(clip, prompts).numpy()
    result = pca(np.concatenate([images, texts]), k=2, seed=seed)
    image_xy, text_xy = result.scores[: len(images)], result.scores[len(images) :]
    text_labels = {"kind": [k for k, _, _ in combos], "color": [c for _, c, _ in combos]}
    text_labels["size"] = [s for _, _, s in combos]
    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    palette = {"color": ["#d62626", "#1e9e3c", "#2658e2", "#e0b800", "#923cc4"]}
    palette |= {"kind": ["#444444", "#e07b00"], "size": ["#9ecae1", "#3182bd", "#08306b"]}
    for axis, attribute in zip(axes, ("color", "kind", "size"), strict=True):
        colours = palette[attribute]
        for value, name in enumerate(ATTRIBUTES[attribute]):
            mask = pairs.labels[attribute] == value
            axis.scatter(
                *image_xy[mask].T, s=10, c=colours[value], alpha=0.5, label=f"image: {name}"
            )
            tmask = np.array(text_labels[attribute]) == value
            axis.scatter(*text_xy[tmask].T, s=70, c=colours[value], marker="*", edgecolors="k",
                         linewidths=0.5, label=f"text: {name}")  # fmt: skip
        axis.set_title(f"coloured by {attribute} (dots: images, stars: prompts)")
        axis.set_xlabel(f"PC1 ({result.explained_variance[0]:.3f})")
        axis.set_ylabel(f"PC2 ({result.explained_variance[1]:.3f})")
        axis.legend(fontsize=6, ncol=2)
    figure.suptitle("CLIP embeddings, PCA of images and texts together")
    return save_figure(figure, path)
