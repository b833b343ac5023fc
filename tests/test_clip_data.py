"""nanovla.data.captions: seeded image-caption pairs with held-out templates and combos."""

from __future__ import annotations

import numpy as np
import pytest

from nanovla.data.captions import (
    LANGUAGES,
    STYLES,
    TEMPLATES,
    make_captions,
)
from nanovla.data.captions_parquet import read_captions, write_captions
from nanovla.errors import ExistsError, InputError, MissingError
from nanovla.world.scene import COLORS, KINDS, SIZES, allowed_target_combos


def _combos(state, mask):
    combo = state.obj_kind * 15 + state.obj_color * 3 + state.obj_size
    return combo[mask]


def test_same_arguments_same_set_and_splits_differ():
    a, b = make_captions("train", 20, seed=3), make_captions("train", 20, seed=3)
    assert np.array_equal(a.images, b.images) and a.captions == b.captions
    assert a.images.shape == (20, 64, 64, 3) and a.images.dtype == np.uint8
    c = make_captions("test", 20, seed=3)
    assert not np.array_equal(a.images, c.images)
    for style in STYLES:
        for lang in LANGUAGES:
            assert len(a.captions[style][lang]) == 20


def test_train_scenes_never_show_a_heldout_combo_and_heldout_focus_always_does():
    train = make_captions("train", 300)
    heldout = allowed_target_combos("heldout")
    assert not heldout[_combos(train.state, train.state.obj_active)].any()
    combos = make_captions("heldout_combos", 200)
    focus = np.zeros_like(combos.state.obj_active)
    focus[:, 0] = True
    assert heldout[_combos(combos.state, focus)].all()
    others = combos.state.obj_active.copy()
    others[:, 0] = False
    assert not heldout[_combos(combos.state, others)].any()
    # triples stay distinct within a scene after recolouring
    combo = train.state.obj_kind * 15 + train.state.obj_color * 3 + train.state.obj_size
    for row, active in zip(combo, train.state.obj_active, strict=True):
        assert len(set(row[active])) == active.sum()


def test_object_caption_names_the_focus_attributes():
    captions = make_captions("val", 50, seed=1)
    for i, text in enumerate(captions.captions["object"]["en"]):
        words = text.split()
        assert KINDS[captions.labels["kind"][i]] in words
        named_colors = [c for c in COLORS if c in words]
        assert named_colors in ([], [COLORS[captions.labels["color"][i]]])
        named_sizes = [s for s in SIZES if s in words]
        assert named_sizes in ([], [SIZES[captions.labels["size"][i]]])
    phrases = captions.captions["object"]["en"]
    assert any(not any(c in t for c in COLORS) for t in phrases)  # some name the kind alone


def test_relation_caption_matches_geometry():
    captions = make_captions("train", 200, seed=2)
    state = captions.state
    positions = np.concatenate([state.obj_pos, state.bowl_pos], axis=1)
    for i, text in enumerate(captions.captions["relation"]["en"]):
        ref = captions.reference[i]
        assert ref >= 1  # full scenes always have something to relate to
        dx, dy = state.obj_pos[i, 0] - positions[i, ref]
        if "left of" in text:
            assert dx < 0 and abs(dx) >= abs(dy)
        elif "right of" in text:
            assert dx > 0 and abs(dx) >= abs(dy)
        elif "above" in text:
            assert dy < 0 and abs(dy) > abs(dx)
        else:
            assert "below" in text and dy > 0 and abs(dy) > abs(dx)


def test_single_object_images_show_one_object_and_no_bowl():
    captions = make_captions("test", 10, single_object=True)
    assert (captions.labels["num_objects"] == 1).all()
    assert (captions.reference == -1).all()
    assert all("bowl" not in text for text in captions.captions["scene"]["en"])
    assert all("side of the table" in text for text in captions.captions["relation"]["en"])


def test_heldout_templates_are_disjoint_from_training_ones():
    for style in TEMPLATES["train"]:
        for lang in LANGUAGES:
            assert not set(TEMPLATES["train"][style][lang]) & set(TEMPLATES["heldout"][style][lang])
    seen = make_captions("train", 50).captions["object"]["en"]
    unseen = make_captions("train", 50, templates="heldout").captions["object"]["en"]
    assert any("image showing" in t or "can be seen" in t for t in unseen)
    assert not any("image showing" in t or "can be seen" in t for t in seen)


def test_korean_particles_follow_the_last_syllable():
    texts = make_captions("train", 200, seed=5).captions["relation"]["ko"]
    for text in texts:
        assert "공는" not in text and "상자은" not in text
        assert "공가" not in text and "상자이 " not in text


def test_parquet_round_trip(tmp_path):
    captions = make_captions("val", 6)
    root = write_captions(tmp_path / "caps", captions)
    images, texts, labels = read_captions(root)
    assert np.array_equal(images, captions.images)
    assert texts == captions.captions
    assert np.array_equal(labels["color"], captions.labels["color"])
    with pytest.raises(ExistsError):
        write_captions(root, captions)
    with pytest.raises(MissingError, match="info.json"):
        read_captions(tmp_path / "nothing")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(split="nope", count=3), "split"),
        (dict(split="train", count=0), "count"),
        (dict(split="train", count=3, templates="x"), "templates"),
        (dict(split="train", count=3, image_size=4), "image_size"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(InputError, match=name):
        make_captions(**kwargs)


def test_recolouring_never_runs_out_of_colours():
    # seed 0, 600 test scenes holds a scene whose objects left no colour free at one size
    # (an IndexError before): the object shrinks instead, and every triple stays distinct
    from nanovla.data.captions import sample_caption_scenes

    state = sample_caption_scenes("test", 600, seed=0)
    allowed = allowed_target_combos("train")
    for env in range(600):
        active = state.obj_active[env]
        combo = _combos(state, np.ones_like(state.obj_active)).reshape(600, -1)[env][active]
        assert allowed[combo].all()
        assert len(set(combo.tolist())) == len(combo)
