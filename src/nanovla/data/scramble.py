"""Korean scrambling augmentation: put the place phrase of a Korean instruction before its
object phrase ("빨간 공을 파란 그릇에 넣어" -> "파란 그릇에 빨간 공을 넣어").

Why. Korean marks who-does-what with particles, not with word order: the object carries
을/를, the place 에/로/까지, and the two may come in either order with the same meaning
(scrambling; Sohn, *The Korean Language*, 1999, ch. 7). The training templates
(world/instructions.py, "ko") always name the object first, so a policy can learn "the first
colour is the object's" instead of reading the particles, and then fails the held-out template
that names the place first ("{place}에 {object}를 넣어 줘": 0.43 on pick_place for the default
policy of seed 0, against 0.98-0.99 on the two other held-out Korean templates). Showing both
orders is the variation the language has; the model still has to read the particles to tell
the phrases apart. What it changes about the test, said plainly: with this on, `ko_heldout`
no longer holds a word order training never showed, only new verbs and endings ("내려놓아",
"줘", "잡아서"); `--ko-scramble 0` measures the unseen order too.

What moves: an object phrase ([size] colour kind + 을/를) directly followed by a place phrase
(colour 그릇 or a zone name, + 에/로/으로/까지, or + " 쪽으로" / " 안에" / " 안으로"); every
such adjacent pair of a sentence (sort names two). Templates that put other words between them
("{object}를 집어서 {place}에 놓아") and English instructions are left as they are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from nanovla.errors import InputError
from nanovla.world.instructions import BOWL_KO, COLORS_KO, KINDS_KO, SIZES_KO, ZONES_KO


def _any(words: Sequence[str]) -> str:
    return "(?:" + "|".join(map(re.escape, sorted(words, key=len, reverse=True))) + ")"


_OBJECT = rf"(?:{_any(SIZES_KO)} )?{_any(COLORS_KO)} {_any(KINDS_KO)}(?:을|를)"
_PLACE_NOUN = rf"(?:{_any(COLORS_KO)} {re.escape(BOWL_KO)}|{_any(ZONES_KO)})"
_PLACE = rf"{_PLACE_NOUN}(?:으로|로|에|까지| 쪽으로| 안에| 안으로)"
_PAIR = re.compile(rf"(?<!\S)(?P<object>{_OBJECT}) (?P<place>{_PLACE})(?=[\s,]|$)")


def scramble(text: str) -> str:
    """`text` with every (object phrase, place phrase) pair in place-first order; a text
    without one is returned unchanged."""
    return _PAIR.sub(lambda m: f"{m.group('place')} {m.group('object')}", text)


def draw_coins(
    count: int, probability: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(count,) bool: which texts to scramble, each with probability `probability`."""
    if not 0.0 <= probability <= 1.0:
        raise InputError(f"scramble probability must be in [0, 1], got {probability}")
    return torch.rand(count, generator=generator) < probability


def scramble_texts(texts: Sequence[str], coins: torch.Tensor) -> list[str]:
    """`scramble` applied to the texts whose coin is set."""
    return [scramble(t) if c else t for t, c in zip(texts, coins.tolist(), strict=True)]
