"""Question-answer pairs from world scenes (nanovla.data.vqa): answers agree with the scene,
the held-out splits hold what they promise, same seed -> same set, parquet round trip."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from nanovla.data import vqa
from nanovla.errors import InputError
from nanovla.world.scene import COLORS, HELDOUT_COMBOS, KINDS

HELDOUT_NAMES = [f"{color} {kind}" for kind, color in HELDOUT_COMBOS]


def test_every_type_and_both_languages_are_asked():
    data = vqa.generate(0, 60)
    assert set(data.types) == set(vqa.QUESTION_TYPES)
    assert set(data.languages) == {"en", "ko"}
    assert data.images.dtype == np.uint8 and data.images.shape == (len(data), 64, 64, 3)
    exists = Counter(a for a, t in zip(data.answers, data.types) if t == "exists")
    assert exists["yes"] + exists["네"] > 0 and exists["no"] + exists["아니요"] > 0
    bowl = [a for a, t in zip(data.answers, data.types) if t == "bowl"]
    assert any(a not in ("nothing", "없음") for a in bowl)  # some bowls hold an object


def test_count_answers_match_the_scene():
    data = vqa.generate(1, 40, languages=("en",), types=("count",))
    state_counts = {}
    for question, answer, scene in zip(data.questions, data.answers, data.scene):
        match = re.match(r"(?:how many|count the) (\w+)(?: objects)?", question)
        assert match, question
        state_counts.setdefault(int(scene), []).append((question, int(answer)))
    # "how many objects": 3..5, as the world samples scenes
    totals = [a for q, a in sum(state_counts.values(), []) if re.match(r"(how many|count the) objects", q)]  # fmt: skip
    assert totals and all(3 <= a <= 5 for a in totals)


def test_answers_are_grounded_in_the_image_pixels():
    """A "what colour is" answer names a colour drawn in the image (rendered sprite colours)."""
    from nanovla.world.render import COLOR_RGB

    data = vqa.generate(2, 30, languages=("en",), types=("colour",))
    for image, answer in zip(data.images, data.answers):
        rgb = COLOR_RGB[COLORS.index(answer)].astype(np.uint8)
        assert (image.reshape(-1, 3) == rgb).all(axis=1).any()


def test_heldout_combinations_are_never_asked_about_in_training():
    train = vqa.generate(3, 200)
    for question, answer in zip(train.questions, train.answers):
        for name in HELDOUT_NAMES:
            assert name not in question and name not in answer
    heldout = vqa.generate(3, 60, combos="heldout")
    assert "count" not in heldout.types
    colour_answers = {a for a, t in zip(heldout.answers, heldout.types) if t == "colour" and a in COLORS}  # fmt: skip
    assert colour_answers <= {color for _, color in HELDOUT_COMBOS}
    kinds = {a for a, t in zip(heldout.answers, heldout.types) if t == "kind" and a in KINDS}
    assert kinds  # kind questions are about green balls / purple boxes too


def test_heldout_templates_are_disjoint_from_training_templates():
    for lang in vqa.LANGUAGES:
        for qtype in vqa.QUESTION_TYPES:
            train = set(vqa.TEMPLATES[lang]["train"][qtype])
            assert train.isdisjoint(vqa.TEMPLATES[lang]["heldout"][qtype])
    seen = set(vqa.generate(4, 40).questions)
    unseen = vqa.generate(4, 40, templates="heldout").questions
    assert seen.isdisjoint(unseen)


def test_same_seed_same_set_and_parquet_round_trip(tmp_path):
    a, b = vqa.generate(5, 10), vqa.generate(5, 10)
    assert a.questions == b.questions and a.answers == b.answers
    assert np.array_equal(a.images, b.images)
    assert vqa.generate(6, 10).questions != a.questions
    path = vqa.write_parquet(a, tmp_path / "vqa.parquet")
    back = vqa.read_parquet(path)
    assert back.questions == a.questions and back.types == a.types
    assert np.array_equal(back.images, a.images) and np.array_equal(back.scene, a.scene)


def test_bad_arguments_name_themselves(tmp_path):
    with pytest.raises(InputError, match="templates"):
        vqa.generate(0, 2, templates="test")
    with pytest.raises(InputError, match="types"):
        vqa.generate(0, 2, types=("colour", "mood"))
    with pytest.raises(InputError, match="not found"):
        vqa.read_parquet(tmp_path / "missing.parquet")
