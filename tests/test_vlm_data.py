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
        match = re.search(r"(?:how many|count the|number of) (\w+)(?: objects)?", question)
        assert match, question
        state_counts.setdefault(int(scene), []).append((question, int(answer)))
    # "how many objects": 3..5, as the world samples scenes
    totals = [a for q, a in sum(state_counts.values(), []) if re.search(r"(how many|count the|number of) objects", q)]  # fmt: skip
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


def _words(template: str) -> list[str]:
    return re.sub(r"([.,?!])", r" \1", template).split()


def _edit_distance(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[:], i
        for j, y in enumerate(b, 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (x != y))
    return row[-1]


def test_heldout_templates_stay_paraphrases_of_training_ones():
    """At least 8 training templates per type and language, and every held-out template at
    least two word edits from every training template of any type (the distance the first
    three training templates per type already had: "what kind of object is {ref}?" ->
    "which kind of thing is {ref}?")."""
    for lang in vqa.LANGUAGES:
        train = vqa.TEMPLATES[lang]["train"]
        assert all(len(set(train[t])) >= 8 for t in vqa.QUESTION_TYPES)
        for heldout in vqa.TEMPLATES[lang]["heldout"].values():
            for template in heldout:
                nearest = min(_edit_distance(_words(template), _words(t)) for ts in train.values() for t in ts)  # fmt: skip
                assert nearest >= 2, template


def _matcher(templates) -> re.Pattern:
    slot = r"\{(?:ref|things)\}(?:을|를|이|가|은|는)?"
    patterns = [re.sub(slot, ".+", re.escape(t).replace(r"\{", "{").replace(r"\}", "}")) for t in templates]  # fmt: skip
    patterns = [re.sub(r"\{(?:ref|things)\}(?:을|를|이|가|은|는)?", ".+", p) for p in patterns]
    return re.compile("|".join(f"(?:{p})" for p in patterns))


def test_the_vqa_lab_trains_on_training_templates_only():
    from nanovla.labs.vqa import VQAConfig, make_batches

    by_split = {split: _matcher([t for lang in vqa.LANGUAGES for ts in vqa.TEMPLATES[lang][split].values() for t in ts])
                for split in ("train", "heldout")}  # fmt: skip
    next_batch = make_batches(VQAConfig(batch_size=16, question_noise=0.0))
    questions = [q for step in range(3) for q in next_batch(step)[1]]
    assert len(questions) == 48
    for question in questions:
        assert by_split["train"].fullmatch(question), question
        assert not by_split["heldout"].fullmatch(question), question


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


def test_cell_tags_sit_on_the_pixels_of_their_objects():
    """The item table's (x, y) are image columns and rows: the pixel at a box's centre has the
    box's colour, and the VQA lab's cell tags put its kind, colour and size in that cell."""
    from nanovla.labs.vqa import cell_tags
    from nanovla.world.render import COLOR_RGB

    data = vqa.generate(5, 40, types=("count",))
    tags = cell_tags(data.items, (8, 8)).numpy()
    checked = 0
    for image, items, tag in zip(data.images, data.items, tags):
        for row, (x, y, kind, colour, size) in enumerate(items):
            if kind < 0:
                continue
            cell = int(y * 8) * 8 + int(x * 8)
            on_top = not any(
                int(o[1] * 8) * 8 + int(o[0] * 8) == cell and o[2] >= 0 and o[2] != vqa.BOWL_KIND
                for o in items[row + 1 :]
            )  # fmt: skip
            if kind == vqa.BOWL_KIND:
                assert tag[cell, 3] == colour + 1
            elif on_top:
                assert list(tag[cell, :3]) == [kind + 1, colour + 1, size + 1]
            if kind == KINDS.index("box"):
                pixel = image[int(y * 64), int(x * 64)]
                assert (pixel == COLOR_RGB[int(colour)].astype(np.uint8)).all()
                checked += 1
        occupied = int((tag[:, 0] > 0).sum())
        assert occupied <= int(((items[:, 2] >= 0) & (items[:, 2] != vqa.BOWL_KIND)).sum())
    assert checked > 20


def test_question_noise_inserts_made_up_words_only():
    from nanovla.labs.vqa import add_noise

    rng = np.random.default_rng(0)
    for question, language in [("what colour is the small ball?", "en"), ("작은 공은 무슨 색이야?", "ko")]:  # fmt: skip
        noisy = add_noise(question, language, rng).split()
        assert len(question.split()) + 1 <= len(noisy) <= len(question.split()) + 2
        kept = iter(noisy)
        assert all(word in kept for word in question.split())  # the question's words, in order


def test_count_and_position_are_oversampled_in_training(monkeypatch):
    from nanovla.labs import vqa as lab

    def shares() -> Counter:
        next_batch = lab.make_batches(lab.VQAConfig(batch_size=64, question_noise=0.0))
        questions = [q for step in range(30) for q in next_batch(step)[1]]  # one draw of scenes
        return Counter(qtype for q in questions for qtype, lang in _types_of(q))

    weighted = shares()
    monkeypatch.setattr(lab, "TYPE_WEIGHTS", {})
    plain = shares()
    assert (
        weighted["count"] > 1.3 * plain["count"] and weighted["position"] > 1.3 * plain["position"]
    )


def _types_of(question: str):
    for lang in vqa.LANGUAGES:
        for qtype, templates in vqa.TEMPLATES[lang]["train"].items():
            if _matcher(templates).fullmatch(question):
                yield qtype, lang
                return
