"""Korean scrambling (data/scramble.py): which phrases move, what stays, the loader's use."""

from __future__ import annotations

import pytest
import torch

from nanovla.data.scramble import draw_coins, scramble, scramble_texts
from nanovla.errors import InputError
from nanovla.world.instructions import TEMPLATES, fill

VALUES = {
    "object": "큰 빨간 공",
    "place": "파란 그릇",
    "object2": "초록 상자",
    "place2": "노란 그릇",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("큰 빨간 공을 파란 그릇에 넣어", "파란 그릇에 큰 빨간 공을 넣어"),
        ("초록 상자를 파란 그릇 안에 놓아", "파란 그릇 안에 초록 상자를 놓아"),
        ("중간 크기 보라 공을 파란 그릇으로 옮겨", "파란 그릇으로 중간 크기 보라 공을 옮겨"),
        ("노란 공을 왼쪽 위 모서리 쪽으로 밀어", "왼쪽 위 모서리 쪽으로 노란 공을 밀어"),
        (  # both pairs of a sort instruction, the comma kept in place
            "빨간 공을 파란 그릇에, 초록 상자를 노란 그릇에 놓아",
            "파란 그릇에 빨간 공을, 노란 그릇에 초록 상자를 놓아",
        ),
    ],
)
def test_place_phrase_moves_before_the_object_phrase(text: str, expected: str) -> None:
    assert scramble(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "빨간 공을 집어서 파란 그릇에 놓아",  # a word between the phrases
        "빨간 공에 닿아",  # no place
        "그리퍼를 빨간 공으로 옮겨",  # the object-marked word is not an object phrase
        "put the red ball in the blue bowl",  # English
        "빨간 공은 파란 그릇에 넣어",  # topic marker, not the object particle
    ],
)
def test_other_texts_are_left_alone(text: str) -> None:
    assert scramble(text) == text


def test_scrambled_training_templates_keep_every_word_and_the_held_out_order_is_reached() -> None:
    for templates in TEMPLATES["ko"].values():
        for template in templates:
            text = fill(template, VALUES)
            assert sorted(scramble(text).replace(",", " ").split()) == sorted(
                text.replace(",", " ").split()
            )
    # the held-out place-first template is the scrambled form of a training one (up to "줘")
    held_out = fill("{place}에 {object}를 넣어 줘", VALUES)
    assert scramble(fill("{object}를 {place}에 넣어", VALUES)) + " 줘" == held_out


def test_coins_follow_the_probability_and_bad_probabilities_are_refused() -> None:
    coins = draw_coins(4000, 0.25, torch.Generator().manual_seed(0))
    assert 0.22 < coins.float().mean().item() < 0.28
    texts = ["빨간 공을 파란 그릇에 넣어"] * 3
    assert scramble_texts(texts, torch.tensor([True, False, True])) == [
        "파란 그릇에 빨간 공을 넣어", texts[1], "파란 그릇에 빨간 공을 넣어"
    ]  # fmt: skip
    with pytest.raises(InputError, match="probability"):
        draw_coins(3, 1.5)


def test_loader_scrambles_korean_instructions_and_resumes_exactly(tmp_path) -> None:
    from nanovla.data import BatchLoader, EpisodeDataset
    from nanovla.data.collect import CollectConfig, collect

    out = tmp_path / "ds"
    config = CollectConfig(
        task="pick_place", episodes=6, out=out, num_envs=6, instructions="ko", progress=False
    )
    collect(config)
    dataset = EpisodeDataset(out)

    def make(q: float) -> BatchLoader:
        return BatchLoader(dataset, batch_size=16, chunk=2, seed=3, ko_scramble=q)

    plain, always = make(0.0).next_batch(), make(1.0).next_batch()
    assert torch.equal(plain["frame_index"], always["frame_index"])  # same rows and order
    assert always["task"] == [scramble(t) for t in plain["task"]]
    assert any(a != b for a, b in zip(plain["task"], always["task"], strict=True))

    half = make(0.5)
    half.next_batch()
    state = half.state_dict()
    expected = [half.next_batch()["task"] for _ in range(3)]
    resumed = make(0.5)
    resumed.load_state_dict(state)
    assert [resumed.next_batch()["task"] for _ in range(3)] == expected
    with pytest.raises(InputError, match="ko_scramble"):
        make(-0.1)
