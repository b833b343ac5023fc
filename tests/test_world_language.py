"""Instructions: paraphrase splits, Korean particles, unambiguous referring expressions."""

import numpy as np
import pytest

from nanovla.world import TASK_FAMILIES, TEMPLATES, make_world
from nanovla.world.instructions import describe, fill, instruction_text, is_korean, particle
from nanovla.world.scene import COLORS, KINDS, SIZES


@pytest.mark.parametrize("family", TASK_FAMILIES)
def test_paraphrase_splits_are_disjoint_and_large_enough(family):
    train, heldout = TEMPLATES["train"][family], TEMPLATES["heldout"][family]
    ko, ko_heldout = TEMPLATES["ko"][family], TEMPLATES["ko_heldout"][family]
    assert len(set(train)) >= 5 and len(set(heldout)) >= 3
    assert len(set(ko)) >= 3 and len(set(ko_heldout)) >= 2
    assert not set(train) & set(heldout) and not set(ko) & set(ko_heldout)
    assert not any(is_korean(t) for t in train + heldout)
    assert all(is_korean(t) for t in ko + ko_heldout)
    assert all("{object}" in t for t in train + heldout + ko + ko_heldout)


@pytest.mark.parametrize(
    "word, written, expected",
    [
        ("상자", "을", "를"),
        ("공", "를", "을"),
        ("그릇", "로", "으로"),
        ("모서리", "으로", "로"),
        ("가장자리", "로", "로"),
        ("물", "으로", "로"),  # ㄹ takes 로
        ("공", "와", "과"),
        ("상자", "과", "와"),
        ("공", "가", "이"),
    ],
)
def test_korean_particles_follow_the_final_syllable(word, written, expected):
    assert particle(word, written) == expected


def test_fill_fixes_particles_after_slots():
    template = "{object}를 {place}로 밀어"
    assert fill(template, {"object": "빨간 공", "place": "왼쪽 위 모서리"}) == (
        "빨간 공을 왼쪽 위 모서리로 밀어"
    )
    assert fill(template, {"object": "큰 파란 상자", "place": "파란 그릇"}) == (
        "큰 파란 상자를 파란 그릇으로 밀어"
    )


def test_korean_instructions_in_the_world():
    world = make_world("suite", num_envs=64, seed=0, instructions="ko")
    texts = world.instructions
    assert all(is_korean(t) and "{" not in t for t in texts)
    for wrong in ("공를", "상자을", "그릇로", "공와", "상자과"):
        assert not any(wrong in t for t in texts), wrong
    assert any("그릇" in t for t in texts) and any(("상자" in t or "공" in t) for t in texts)


def test_english_instructions_name_the_target_and_place():
    world = make_world("pick_place", num_envs=32, seed=1)
    s = world.state
    for env, text in enumerate(world.instructions):
        target = s.target_obj[env, 0]
        assert f"{COLORS[s.obj_color[env, target]]} {KINDS[s.obj_kind[env, target]]}" in text
        assert f"the {COLORS[s.bowl_color[env, s.target_place[env, 0]]]} bowl" in text


def test_referring_expressions_are_unambiguous():
    world = make_world("suite", num_envs=400, seed=3, render=False)
    s = world.state
    saw_size = False
    for env in range(400):
        for slot in np.flatnonzero(s.obj_active[env]):
            words = describe(s, env, int(slot), korean=False).split()[1:]  # drop "the"
            size = SIZES.index(words[0]) if len(words) == 3 else None
            saw_size |= size is not None
            matches = (
                s.obj_active[env]
                & (s.obj_kind[env] == KINDS.index(words[-1]))
                & (s.obj_color[env] == COLORS.index(words[-2]))
                & ((s.obj_size[env] == size) if size is not None else True)
            )
            assert matches.sum() == 1 and matches[slot]
    assert saw_size  # the size is added when color + kind is shared


@pytest.mark.parametrize("split, other", [("heldout", "train"), ("ko_heldout", "ko")])
def test_split_uses_only_its_own_templates(split, other):
    world = make_world("suite", num_envs=64, seed=0, instructions=split)
    s = world.state
    for env, text in enumerate(world.instructions):
        family = TASK_FAMILIES[s.family[env]]
        own = {instruction_text(s, env, t) for t in TEMPLATES[split][family]}
        others = {instruction_text(s, env, t) for t in TEMPLATES[other][family]}
        assert text in own and text not in others
