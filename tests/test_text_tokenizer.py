"""Tokenizer: word/char splitting, unknown -> <unk>, padding, JSON round trip, bad input."""

import json

import pytest
import torch

from nanovla.models.text.tokenizer import (
    PAD_ID,
    UNK_ID,
    Tokenizer,
    split_particles,
    split_text,
)

TEXTS = [
    "Put the red box in the blue bowl.",
    "push the ball to the left",
    "빨간 상자를 파란 그릇에 넣어",
]


def test_word_split_lowercases_and_separates_punctuation():
    assert split_text("Put  the RED box.", "word") == ["put", "the", "red", "box", "."]
    assert split_text("빨간 상자를", "word") == ["빨간", "상자를"]


def test_char_split_keeps_spaces_and_hangul_syllables():
    assert split_text("빨간 상자", "char") == ["빨", "간", " ", "상", "자"]


def test_known_words_get_ids_and_unknown_words_get_unk():
    tokenizer = Tokenizer.from_texts(TEXTS, level="word")
    ids, lengths = tokenizer.encode(["put the green box", "the"])
    assert ids.shape == (2, 4) and lengths.tolist() == [4, 1]
    green = ids[0, 2].item()
    assert green == UNK_ID  # never seen
    assert all(i not in (PAD_ID, UNK_ID) for i in ids[0, [0, 1, 3]].tolist())
    assert ids[1, 1:].tolist() == [PAD_ID] * 3  # right padding
    assert tokenizer.decode(ids[0].tolist()) == "put the <unk> box"


def test_char_level_knows_new_particle_combinations():
    tokenizer = Tokenizer.from_texts(TEXTS, level="char")
    ids, _ = tokenizer.encode(["파란 상자에"])  # a particle never seen with this stem
    assert UNK_ID not in ids[0].tolist()
    word = Tokenizer.from_texts(TEXTS, level="word")
    assert UNK_ID in word.encode(["파란 상자에"])[0][0].tolist()


def test_particle_split_peels_korean_particles_and_leaves_english_alone():
    assert split_particles("그릇에는") == ["그릇", "에", "는"]
    assert split_particles("안으로") == ["안", "으로"]  # the two-syllable form, not "으" + "로"
    assert split_particles("공도") == ["공", "도"]
    assert split_particles("공") == ["공"]  # a stem keeps at least one syllable
    assert split_particles("가") == ["가"]
    assert split_particles("넣어") == ["넣어"]
    assert split_particles("box") == ["box"]
    text = "Put the red box, then 빨간 상자를 파란 그릇에는"
    assert split_text(text, "particle") == [
        *split_text("Put the red box, then", "word"), "빨간", "상자", "를", "파란", "그릇", "에", "는"
    ]  # fmt: skip


def test_particle_level_reads_the_noun_before_an_unseen_particle_combination():
    particle = Tokenizer.from_texts(TEXTS, level="particle")
    ids, _ = particle.encode(["파란 상자에"])  # stem and particle seen, never together
    assert UNK_ID not in ids[0].tolist()
    assert particle.decode(ids[0].tolist()) == "파란 상자 에"
    word = Tokenizer.from_texts(TEXTS, level="word")
    assert UNK_ID in word.encode(["파란 상자에"])[0][0].tolist()


def test_empty_string_and_max_length():
    tokenizer = Tokenizer.from_texts(TEXTS, level="char", max_length=5)
    ids, lengths = tokenizer.encode(["", "put the red box"])
    assert lengths.tolist() == [1, 5]
    assert ids[0, 0].item() == UNK_ID


def test_json_round_trip(tmp_path):
    tokenizer = Tokenizer.from_texts(TEXTS, level="word")
    tokenizer.save(tmp_path / "tokenizer.json")
    loaded = Tokenizer.load(tmp_path / "tokenizer.json")
    assert loaded == tokenizer
    assert torch.equal(loaded.encode(TEXTS)[0], tokenizer.encode(TEXTS)[0])
    assert list(tmp_path.iterdir()) == [tmp_path / "tokenizer.json"]  # no temp file left


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="level"):
        Tokenizer.from_texts(TEXTS, level="bpe")
    with pytest.raises(ValueError, match="list of strings"):
        Tokenizer.from_texts(TEXTS).encode("one string")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        Tokenizer.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        Tokenizer.load(tmp_path / "bad.json")
    wrong = {"type": "nanovla_tokenizer", "level": "word", "max_length": 8}
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    with pytest.raises(ValueError, match="vocab"):
        Tokenizer.load(tmp_path / "wrong.json")
