"""The batches `nanovla lab clip` trains on: image-caption pairs drawn from the training sets,
with the colour-free views (`--grayscale`, `--grey`), the contrast groups (`--hard-negatives`),
the decorrelated captions (`--decorrelate`) and shared captions (`--shared-captions`) of
`ClipConfig` (labs/clip.py)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

from nanovla.data.captions import TEMPLATES, CaptionSet, combo_index, fill_caption
from nanovla.world.instructions import COLORS_KO, KINDS_KO, SIZES_KO
from nanovla.world.scene import COLORS, KINDS, SIZES

if TYPE_CHECKING:
    from nanovla.labs.clip import ClipConfig


class PairSampler:
    """Draws batches of (image, caption) pairs with distinct caption texts.

    Grayscale augmentation (`--grayscale`): a single-object image becomes grey (luminance in
    all three channels) with a colour-free caption ("a photo of a small ball"), so the image
    tower must see kind and size in the shape itself. In the training images every green
    object is a box and every purple one a ball; without this nothing stops the tower from
    reading "box" off "green".

    `--grey-when-colour-free` goes further: every drawn caption that names no colour comes
    with its image in grey, so "ball" is never paired with the colours the training combos
    give balls (red, blue, yellow, purple, never green). Measured, it does not help: held-out
    combos' kind 0.520 with it (runs/clip-e, 2200 steps) against 0.524 without (runs/clip-d,
    1100 steps), and held-out scenes' kind fell from 1.000 to 0.877. The reason is the
    world's green: its luminance (109) is within 12 levels of the table's (121), so a grey
    green object is nearly invisible, and even grey green balls are read as boxes. Views that
    keep the contrast and only change the hue do not help either: `--grey permute
    --grayscale 0.5` 0.523 (runs/clip-p5), `--grey hue --grayscale 0.8` 0.198 (runs/clip-h8;
    purple boxes then fail too).

    Contrast groups (`--hard-negatives`, default 0.25): a quarter of each batch comes in groups
    of single-object images that differ in one attribute, captioned by phrases naming it. In a
    batch of random captions colour and kind already tell a caption from every other, so the
    loss never needs the size: with 0.0 the per-attribute zero-shot size on held-out scenes
    was 0.488 (runs/clip-d; "small ball" and "medium ball" had text cosine 0.98), with 0.25
    it is 0.958 (runs/clip-n25, 1100 steps; colour 1.000, kind 0.999), at a cost in scene
    retrieval (image -> text R@1 0.500 against 0.622).

    Shared captions (`--shared-captions`, default on): templated captions repeat within a
    batch ("a photo of a ball"); dropping the repeats, as the lab first did, also dropped
    their images, and keeping them as negatives of each other would be wrong. Kept, every
    image of a text is a positive of it (`nn.losses.info_nce_shared`): size 0.986, colour
    1.000, kind 1.000 on held-out scenes (runs/clip-sc, vla_cnn tower). With the vla_cnn
    tower nothing tried here moves held-out combos' kind off 0.52 (green balls are all read
    as boxes): not the contrast groups, the decorrelated captions, shared captions, nor hue
    views with them (runs/clip-sch, `--grey hue --grayscale 0.5`: kind on hue-rotated
    held-out scenes 0.69, i.e. the tower does not
    learn a colour-free shape feature even for the views it trains on). A linear probe on the
    tower's features that is also fitted on green balls reads them at 0.960, so the features
    can tell them apart; one fitted on the training combos only reads them at 0.000
    (`benchmarks/clip_probe.py --clip runs/clip-sc/model`). The image tower fixed it, not the
    batches: the lab's default `two_stream_cnn` (models/vision/two_stream.py) reads held-out
    combos' kind at 0.997-1.000 over two seeds (README, "lab clip")."""

    def __init__(self, sets: list[CaptionSet], config: ClipConfig) -> None:
        self.images = np.concatenate([s.images for s in sets])
        single = [np.full(len(s), (s.labels["num_objects"] == 1).all()) for s in sets]
        self.single = np.concatenate(single)
        self.kind = np.concatenate([s.labels["kind"] for s in sets])
        self.size = np.concatenate([s.labels["size"] for s in sets])
        self.color = np.concatenate([s.labels["color"] for s in sets])
        singles = np.flatnonzero(self.single)
        combo = combo_index(self.kind, self.color, self.size)
        self.by_combo = {int(c): singles[combo[singles] == c] for c in np.unique(combo[singles])}
        self.hard_negatives = config.hard_negatives
        self.shared_captions = config.shared_captions
        self.grayscale = config.grayscale
        self.grey_mode = config.grey
        self.languages = config.languages
        self.texts = [
            [t for s in sets for t in s.captions[style][lang]]
            for style in config.styles
            for lang in config.languages
        ]  # (styles * languages) lists of N strings
        # colours that the training images show with fewer kinds than there are
        kinds_of = [set(self.kind[self.color == c].tolist()) for c in range(len(COLORS))]
        self.confounded = np.array([0 < len(k) < len(KINDS) for k in kinds_of])
        recolour = config.decorrelate and bool(self.confounded.any())
        colour_free = None
        if config.grey_when_colour_free or recolour:  # per text: does it name no colour?
            colour_words = (*COLORS, *COLORS_KO)
            colour_free = [
                np.array([not any(word in text for word in colour_words) for text in texts])
                for texts in self.texts
            ]  # fmt: skip
        self.colour_free = colour_free if config.grey_when_colour_free else None
        self.recolour = colour_free if recolour else None
        self.batch_size = config.batch_size
        self.rng = np.random.default_rng(config.seed)

    def sample(self) -> tuple[np.ndarray, list[str]]:
        grouped = round(self.batch_size * self.hard_negatives) if self.by_combo else 0
        count = self.batch_size - grouped
        index = self.rng.integers(0, len(self.images), count)
        which = self.rng.integers(0, len(self.texts), count)
        texts, named = self.captions(which, index)
        images = self.images[index]
        grey = self.single[index] & (self.rng.random(len(index)) < self.grayscale)
        for row in np.flatnonzero(grey).tolist():
            texts[row] = self._colourless(int(index[row]))
        if self.colour_free is not None:
            pairs = zip(which.tolist(), index.tolist(), strict=True)
            grey |= np.array([bool(self.colour_free[w][i]) for w, i in pairs]) & ~named
        if grey.any():
            images[grey] = self._grey(images[grey])
        if grouped:
            extra, extra_texts = self._groups(grouped)
            images, texts = np.concatenate([images, self.images[extra]]), texts + extra_texts
        if self.shared_captions:
            return images, texts
        keep = sorted({text: i for i, text in reversed(list(enumerate(texts)))}.values())
        return images[keep], [texts[i] for i in keep]

    def captions(self, which: np.ndarray, index: np.ndarray) -> tuple[list[str], np.ndarray]:
        """The caption of list `which[r]` (style x language) for image `index[r]`, and which
        of them `--decorrelate` gave a colour (a colour-free caption of a confounded object)."""
        texts = [self.texts[w][i] for w, i in zip(which.tolist(), index.tolist(), strict=True)]
        named = np.zeros(len(texts), dtype=bool)
        if self.recolour is not None:
            for row, (w, i) in enumerate(zip(which.tolist(), index.tolist(), strict=True)):
                if self.recolour[w][i] and self.confounded[self.color[i]]:
                    lang = self.languages[w % len(self.languages)]
                    texts[row], named[row] = self._named(i, ("size", "color", "kind"), lang), True
        return texts, named

    def _groups(self, count: int) -> tuple[np.ndarray, list[str]]:
        """`count` single-object images in contrast groups (see --hard-negatives): each group
        holds one image of every size of an anchor's kind and colour, captioned "size colour
        kind" or "size kind", or one of every kind of its colour and size (where the training
        combos have it), captioned "colour kind" or "size colour kind"."""
        index: list[int] = []
        texts: list[str] = []
        anchors = list(self.by_combo.values())
        while len(index) < count:
            rows = anchors[self.rng.integers(len(anchors))]
            anchor = int(rows[self.rng.integers(len(rows))])
            kind, color, size = self.kind[anchor], self.color[anchor], self.size[anchor]
            if self.rng.random() < 0.5:  # vary the size
                members = [(kind, color, s) for s in range(len(SIZES))]
                colour_free = self.rng.random() < 0.5 and not (
                    self.recolour is not None and self.confounded[color]
                )
                phrase = ("size", "kind") if colour_free else ("size", "color", "kind")
            else:  # vary the kind
                members = [(k, color, size) for k in range(len(KINDS))]
                phrase = ("color", "kind") if self.rng.random() < 0.5 else ("size", "color", "kind")
            lang = self.languages[self.rng.integers(len(self.languages))]
            template = TEMPLATES["train"]["object"][lang]
            template = template[self.rng.integers(len(template))]
            for k, c, s in members:
                rows = self.by_combo.get(int(combo_index(k, c, s)))
                if rows is None:
                    continue
                index.append(int(rows[self.rng.integers(len(rows))]))
                words = {"kind": int(k), "color": int(c), "size": int(s)}
                texts.append(fill_caption(template, {"np": self._phrase(phrase, words, lang)}))
        return np.array(index[:count]), texts[:count]

    def _named(self, image: int, names: tuple[str, ...], lang: str) -> str:
        """An "object" caption of `image`'s focus object naming the attributes `names`."""
        values = {"kind": int(self.kind[image]), "color": int(self.color[image])}
        values["size"] = int(self.size[image])
        templates = TEMPLATES["train"]["object"][lang]
        template = templates[self.rng.integers(len(templates))]
        return fill_caption(template, {"np": self._phrase(names, values, lang)})

    @staticmethod
    def _phrase(names: tuple[str, ...], values: dict[str, int], lang: str) -> str:
        """The noun phrase naming `values` by the attributes `names` ("small red ball")."""
        if lang == "ko":
            words = {"size": SIZES_KO, "color": COLORS_KO, "kind": KINDS_KO}
        else:
            words = {"size": SIZES, "color": COLORS, "kind": KINDS}
        return " ".join(words[name][values[name]] for name in names)

    def _grey(self, images: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) uint8 -> the colour-free view of `--grey` (grey, or channels permuted)."""
        if self.grey_mode == "permute":
            orders = np.array(list(itertools.permutations(range(3)))[1:])  # no identity
            picked = orders[self.rng.integers(0, len(orders), len(images))]  # (n, 3)
            return np.take_along_axis(images, picked[:, None, None, :], axis=-1)
        if self.grey_mode == "hue":
            return hue_rotate(images, self.rng.uniform(0.0, 2 * np.pi, len(images)))
        if self.grey_mode == "luminance":
            weights = np.tile(np.array([0.299, 0.587, 0.114]), (len(images), 1))
        else:
            weights = np.eye(3)[self.rng.integers(0, 3, len(images))]
        grey = np.einsum("nhwc,nc->nhw", images.astype(np.float32), weights)
        return np.repeat(np.round(grey).astype(np.uint8)[..., None], 3, axis=-1)

    def _colourless(self, image: int) -> str:
        """A caption of a single-object image that names its size and kind, or its kind."""
        lang = self.languages[self.rng.integers(len(self.languages))]
        names = ("size", "kind") if self.rng.random() < 0.7 else ("kind",)
        return self._named(image, names, lang)


def hue_rotate(images: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """(n, H, W, 3) uint8 images, each rotated in RGB space about the grey axis (1, 1, 1) by
    its angle (radians, (n,)): Rodrigues' rotation, so grey pixels stay and the brightness
    (the mean of R, G, B) of every pixel is kept; the result is rounded and clipped."""
    axis = np.full(3, 3**-0.5)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    rotation = cos * np.eye(3) + sin * cross + (1 - cos) * np.outer(axis, axis)  # (n, 3, 3)
    rotated = np.einsum("nhwc,ndc->nhwd", images.astype(np.float32), rotation.astype(np.float32))
    return np.clip(np.round(rotated), 0, 255).astype(np.uint8)
