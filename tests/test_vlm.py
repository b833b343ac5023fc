"""The BLIP- and LLaVA-style VLMs: KV-cache decoding equals full recomputation, beam search
through the model's step function equals exhaustive search, padding changes nothing, save /
load round trip, and bad input named in one line."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from nanovla.errors import InputError, MissingError
from nanovla.models.vlm import VLM, VLMConfig, build_tokenizer
from nanovla.models.vlm.text import EOS_ID, encode_prompt, left_padded, training_batch
from nanovla.nn.decoding import beam_search, greedy_decode, length_penalty_factor

ARCHS = ("blip", "llava")
QUESTIONS = ["what colour is the small ball?", "is there a red box?", "빨간 상자는 어디에 있어?"]


def tiny_vlm(arch: str, words: list[str] | None = None, seed: int = 0, kind: str = "word") -> VLM:
    """A tiny model; word level by default: exhaustive search over BPE's 256 byte tokens would
    be too slow (tests/test_vlm_text.py covers BPE models)."""
    texts = (
        words if words is not None else QUESTIONS + ["red", "green", "yes", "no", "top left"] * 2
    )
    torch.manual_seed(seed)
    config = VLMConfig(arch=arch, image_size=16, vision_widths=(8, 8), d_model=16, num_layers=2,
                       num_heads=2, d_ff=32, max_text_len=24 if kind == "word" else 48)  # fmt: skip
    return VLM(config, build_tokenizer(texts, kind=kind)).eval()


def images(count: int, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("arch", ARCHS)
def test_kv_cache_decoding_equals_full_recomputation(arch):
    model = tiny_vlm(arch)
    pixels = model.pixels(images(3))
    prefix = left_padded([encode_prompt(model.tokenizer, q) for q in QUESTIONS])
    assert (prefix[:, 0] == 0).any()  # rows of different lengths: left padding is exercised
    cached, recomputed = model.step_fn(pixels, True), model.step_fn(pixels, False)
    a, state_a = cached(prefix, None)
    b, state_b = recomputed(prefix, None)
    for _ in range(6):
        finite = torch.isfinite(a)
        assert torch.equal(finite, torch.isfinite(b))
        torch.testing.assert_close(a[finite], b[finite], atol=1e-5, rtol=1e-5)
        token = a.argmax(dim=-1, keepdim=True)
        a, state_a = cached(token, state_a)
        b, state_b = recomputed(token, state_b)
    greedy = model.generate(images(3), QUESTIONS, max_new_tokens=8)
    assert greedy == model.generate(images(3), QUESTIONS, max_new_tokens=8, use_cache=False)


@pytest.mark.parametrize("arch", ARCHS)
def test_left_padding_changes_nothing(arch):
    model = tiny_vlm(arch)
    batch = model.generate(images(3), QUESTIONS, max_new_tokens=6)
    alone = [model.generate(images(3)[i : i + 1], [q], max_new_tokens=6)[0] for i, q in enumerate(QUESTIONS)]  # fmt: skip
    assert batch == alone


@torch.no_grad()
def _exhaustive(
    model: VLM, image: np.ndarray, question: str, steps: int, alpha: float
) -> list[int]:
    """The best hypothesis over every sequence of <= `steps` tokens (module docstring of
    nanovla.nn.decoding), each scored by a fresh full forward pass."""
    pixels = model.pixels(image[None])
    prompt = encode_prompt(model.tokenizer, question)
    allowed = [i for i in range(model.tokenizer.vocab_size) if not bool(model.blocked[i])]
    best, best_score = None, float("-inf")
    for length in range(1, steps + 1):
        for tail in itertools.product(allowed, repeat=length):
            if EOS_ID in tail[:-1] or (length < steps and tail[-1] != EOS_ID):
                continue  # EOS only at the end; shorter than `steps` only when ended by EOS
            ids = torch.tensor([prompt + list(tail)])
            logits = model.net(pixels, ids, torch.ones_like(ids, dtype=torch.bool))
            log_probs = model._log_probs(logits[0, len(prompt) - 1 : -1])
            total = float(log_probs[torch.arange(length), torch.tensor(tail)].sum())
            score = total / length_penalty_factor(length, alpha)
            if score > best_score:
                best_score, best = score, [t for t in tail if t != EOS_ID]
    return best


@pytest.mark.parametrize("arch", ARCHS)
def test_beam_search_through_the_model_equals_exhaustive_search(arch):
    model = tiny_vlm(arch, words=["a", "b"], seed=3)  # 3 tokens may be generated: a, b, <eos>
    pixels = model.pixels(images(2))
    questions = ["a b", "b"]
    prefix = left_padded([encode_prompt(model.tokenizer, q) for q in questions])
    for alpha in (0.0, 1.0):
        # beam 9 >= every open prefix of length 2 (3 x 3): the search is exhaustive
        found = beam_search(model.step_fn(pixels), prefix, EOS_ID, 9, 3, length_penalty=alpha)
        for row, question in enumerate(questions):
            assert found[row] == _exhaustive(model, images(2)[row], question, 3, alpha)
    # greedy = the chain of per-step argmaxes (stopping at <eos>)
    greedy = greedy_decode(model.step_fn(pixels), prefix, EOS_ID, 3)
    step = model.step_fn(pixels, use_cache=False)
    log_probs, state = step(prefix, None)
    chain = [[], []]
    for _ in range(3):
        token = log_probs.argmax(dim=-1)
        for row in range(2):
            if (not chain[row] or chain[row][-1] != EOS_ID) and len(chain[row]) < 3:
                chain[row].append(int(token[row]))
        log_probs, state = step(token[:, None], state)
    assert greedy == [
        [t for t in row[: row.index(EOS_ID)]] if EOS_ID in row else row for row in chain
    ]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_training_lowers_the_loss_and_save_load_round_trips(arch, kind, tmp_path):
    model = tiny_vlm(arch, kind=kind).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    answers = ["red", "yes", "top left"]
    first = None
    for _ in range(30 if kind == "word" else 60):  # BPE: more pieces from a tiny vocabulary
        loss, _ = model.loss(images(3), QUESTIONS, answers)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.5 * first
    model.eval()
    assert model.answer(images(3), QUESTIONS) == answers  # memorised
    model.save_pretrained(tmp_path / "m")
    loaded = VLM.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config and loaded.answer(images(3), QUESTIONS) == answers
    assert set(json.loads((tmp_path / "m" / "config.json").read_text())) >= {"type", "arch"}


def test_the_loss_covers_the_answer_and_eos_only():
    model = tiny_vlm("llava")
    ids, labels = training_batch(model.tokenizer, ["is there a red box?"], ["yes"], 24)
    kept = labels[labels != -100].tolist()
    assert kept == [*model.tokenizer.tokenize("yes"), EOS_ID]
    assert ids.shape == labels.shape


def test_bad_input_is_one_named_error(tmp_path):
    model = tiny_vlm("llava")
    with pytest.raises(InputError, match="images: dtype float32"):
        model.answer(images(1).astype(np.float32), ["what?"])
    with pytest.raises(InputError, match=r"images: shape \(1, 32, 32, 3\)"):
        model.answer(images(1, size=32), ["what?"])
    with pytest.raises(InputError, match="questions: empty question"):
        model.answer(images(1), ["  "])
    with pytest.raises(InputError, match="one string per image"):
        model.answer(images(2), ["what?"])
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "config.json").write_text('{"type": "nanovla_policy"}')
    with pytest.raises(
        InputError, match="model: .* holds a nanovla_policy model, not a nanovla VLM"
    ):
        VLM.from_pretrained(tmp_path / "policy")
    with pytest.raises(MissingError, match="has no config.json"):
        VLM.from_pretrained(tmp_path)
    with pytest.raises(InputError, match="arch"):
        VLMConfig(arch="gpt")


def test_the_image_tower_can_start_from_a_clip(tmp_path):
    """--vision-init: the CLIP's vla_cnn weights and pixel statistics, the grid pooled 2x2."""
    from types import SimpleNamespace

    from nanovla.labs.vlm_train import build_model
    from nanovla.models.clip import CLIP, CLIPConfig, clip_tokenizer

    clip_config = CLIPConfig(image_size=16, vision_widths=(8,), text_width=16, text_layers=1,
                             text_heads=2, text_ff=32, embed_dim=8, image_mean=(0.1, 0.2, 0.3))  # fmt: skip
    torch.manual_seed(0)
    clip = CLIP(clip_config, clip_tokenizer(["a red box"]))
    clip.save_pretrained(tmp_path / "clip")
    options = SimpleNamespace(arch="llava", image_size=16, vision_widths=(32, 64), vision_pool=2,
                              d_model=16, num_layers=1, vision_init=tmp_path / "clip")  # fmt: skip
    model = build_model(options, build_tokenizer(QUESTIONS), 24)
    assert model.config.vision_widths == (8,) and model.config.image_mean == (0.1, 0.2, 0.3)
    assert model.net.image.num_tokens == 4  # 16 px / stem 4 = 4x4 grid, pooled 2x2 -> 2x2
    ours, theirs = model.net.image.backbone.state_dict(), clip.vision.backbone.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    options.image_size = 32
    with pytest.raises(InputError, match="--image-size: 32, but the CLIP"):
        build_model(options, build_tokenizer(QUESTIONS), 24)
