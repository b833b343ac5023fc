"""English -> Korean translation: the parallel corpus, the BPE tokenizer, the metrics'
bookkeeping, the schedule, and subprocess runs of `nanovla lab translate` / `nanovla translate`."""

import json
from pathlib import Path

import pytest
import torch
from cli_run import nanovla
from sacrebleu.metrics import BLEU, CHRF

from nanovla.cli import main as cli_main
from nanovla.data.parallel import (
    KOREAN,
    Pair,
    build_corpus,
    by_split,
    read_corpus,
    write_corpus,
)
from nanovla.errors import InputError, MissingError
from nanovla.labs.translate import Translator, inverse_sqrt_schedule, training_texts
from nanovla.labs.translate_report import score_splits
from nanovla.models.text.subword import BYTES, UNK_ID, SubwordTokenizer, normalize
from nanovla.models.text.translator import TranslationTextEncoder
from nanovla.world.instructions import TEMPLATES

TINY = ("--train-size", "300", "--eval-size", "12", "--steps", "40", "--d-model", "32",
        "--heads", "2", "--layers", "1", "--d-ff", "64", "--warmup", "10", "--examples", "1",
        "--beam-size", "2", "--threads", "1")  # fmt: skip


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[Pair]]:
    return by_split(build_corpus(train_size=2000, eval_size=80, seed=0))


def test_corpus_keeps_held_out_material_out_of_training(corpus: dict[str, list[Pair]]) -> None:
    train = corpus["train"]
    train_text = " ".join(p.en for p in train)
    assert "green ball" not in train_text and "purple box" not in train_text
    assert not any("초록 공" in p.ko or "보라 상자" in p.ko for p in train)
    assert all("green ball" in p.en or "purple box" in p.en for p in corpus["heldout_combos"])
    seen = {p.en for p in train}
    assert len(corpus["test"]) == 80 and not any(p.en in seen for p in corpus["test"])
    heldout = {t for family in TEMPLATES["heldout"].values() for t in family}
    assert {p.template for p in corpus["heldout_templates"]} <= heldout
    assert not {p.template for p in train} & heldout
    assert set(KOREAN) >= heldout  # every English template has its Korean


def test_corpus_pairs_agree_on_slots_and_particles(corpus: dict[str, list[Pair]]) -> None:
    for pair in corpus["train"][:400]:
        for en_word, ko_word in (("box", "상자"), ("ball", "공"), ("bowl", "그릇")):
            assert pair.en.count(f"{en_word}") >= 1 or ko_word not in pair.ko
        assert "상자을" not in pair.ko and "공를" not in pair.ko  # 받침 picks the particle
        assert "그릇로" not in pair.ko and "모서리으로" not in pair.ko


def test_corpus_parquet_round_trip_and_bad_files(tmp_path: Path) -> None:
    pairs = build_corpus(50, 5, seed=3)
    path = write_corpus(tmp_path / "c.parquet", pairs)
    assert read_corpus(path) == pairs
    assert not list(tmp_path.glob(".corpus-*"))  # no temporary left behind
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="bad.parquet"):
        read_corpus(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="corpus sizes"):
        build_corpus(0, 5)


def test_tokenizer_round_trip_and_byte_fallback(tmp_path: Path, corpus) -> None:
    texts = [p.en for p in corpus["train"]] + [p.ko for p in corpus["train"]]
    tok = SubwordTokenizer.train(texts, vocab_size=600)
    for text in texts[:200] + ["  put the   red box ", "빨간 상자를 파란 그릇에 넣어"]:
        assert tok.decode(tok.encode(text)) == normalize(text)
    unknown = "put the 주황 cube ☃ in the bowl é"
    ids = tok.encode(unknown)
    assert UNK_ID not in ids and tok.decode(ids) == unknown
    assert {"<0xE2>", "<0x98>", "<0x83>"} <= set(tok.tokenize("☃"))  # U+2603 as its 3 bytes
    assert tok.tokenize("the red box") == ["▁the", "▁red", "▁box"]  # frequent words merge
    tok.save(tmp_path / "tok.json")
    again = SubwordTokenizer.load(tmp_path / "tok.json")
    assert again.vocab == tok.vocab and again.encode(unknown) == ids
    with pytest.raises(InputError, match="vocab-size"):
        SubwordTokenizer.train(texts, vocab_size=len(BYTES))


def test_score_splits_is_sacrebleu_per_split() -> None:
    refs = {
        "test": ["빨간 상자를 파란 그릇에 넣어", "초록 공을 왼쪽 위 모서리로 밀어"],
        "heldout_combos": ["보라 상자에 닿아"],
    }
    hyps = {"test": ["빨간 상자를 파란 그릇에 넣어", "초록 공을 오른쪽 위 모서리로 밀어"],
            "heldout_combos": ["보라 상자를 터치해"]}  # fmt: skip
    pairs = {s: [Pair(s, "push", "t", "en", ko) for ko in r] for s, r in refs.items()}
    scores = score_splits(hyps, pairs)
    for split in refs:
        expected = BLEU(tokenize="13a").corpus_score(hyps[split], [refs[split]]).score
        assert scores["bleu"][split] == pytest.approx(expected)
        expected = CHRF().corpus_score(hyps[split], [refs[split]]).score
        assert scores["chrf"][split] == pytest.approx(expected)
        assert scores["count"][split] == len(refs[split])
    assert scores["exact"]["test"] == 50.0 and scores["exact"]["heldout_combos"] == 0.0
    assert score_splits({"test": refs["test"]}, pairs)["bleu"]["test"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="test"):
        score_splits({"test": ["only one"]}, pairs)


def test_inverse_sqrt_schedule_peaks_at_warmup() -> None:
    factor = inverse_sqrt_schedule(d_model=64, warmup=100)
    values = [factor(step) for step in range(400)]
    assert max(range(400), key=values.__getitem__) == 99  # step 100, counted from 1
    assert values[99] == pytest.approx(64**-0.5 * 100**-0.5)
    assert values[399] == pytest.approx(values[99] / 2)  # 1/sqrt(step) after warmup


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("translate") / "run"
    result = nanovla("lab", "translate", "--out", str(out), *TINY, cwd=out.parent)
    assert result.returncode == 0, result.stderr
    assert "BLEU(13a)" in result.stdout and "en : " in result.stdout
    return out


def test_lab_writes_metrics_model_and_heatmap(lab_run: Path) -> None:
    metrics = json.loads((lab_run / "metrics.json").read_text())
    for key in ("bleu", "chrf", "bleu_char", "count"):
        assert set(metrics[key]) == {"test", "heldout_templates", "heldout_combos"}
    assert all(0.0 <= v <= 100.0 for v in metrics["bleu"].values())
    assert metrics["bleu_tokenize"] == "13a" and metrics["train_seconds"] > 0
    assert (lab_run / "attention.png").stat().st_size > 1000
    assert (lab_run / "corpus.parquet").is_file()
    assert {p.name for p in (lab_run / "model").iterdir()} >= {
        "config.json", "model.safetensors", "tokenizer.json"}  # fmt: skip


def test_translator_api_fallback_and_bad_input(lab_run: Path) -> None:
    translator = Translator.from_pretrained(lab_run / "model")
    out = translator.translate(["put the red box in the blue bowl", "put the ☃ in the zorg"])
    assert len(out) == 2 and all(isinstance(line, str) for line in out)
    greedy = translator.translate(["reach the red box"], beam_size=1)
    assert greedy == translator.translate(["reach the red box"], beam_size=1)
    with pytest.raises(InputError, match=r"sentences\[1\]: the sentence is empty"):
        translator.translate(["reach the red box", "   "])
    with pytest.raises(InputError, match="max_len"):
        translator.translate(["red " * 200])
    with pytest.raises(MissingError, match="lab translate"):
        Translator.from_pretrained(lab_run / "nothing")


def test_cached_and_uncached_decoding_agree_on_the_trained_model(lab_run: Path) -> None:
    translator = Translator.from_pretrained(lab_run / "model")
    sources = translator.source_ids(["push the blue ball to the left edge", "reach the red box"])
    src = torch.tensor([sources[0]])
    full = translator.model.step_function(src, None, use_cache=False)
    cached = translator.model.step_function(src, None, use_cache=True)
    prefix = torch.tensor([[2]])
    lp_full, state_full = full(prefix, None)
    lp_cached, state_cached = cached(prefix, None)
    for token in (5, 9, 3):
        torch.testing.assert_close(lp_cached, lp_full, atol=1e-5, rtol=1e-5)
        lp_full, state_full = full(torch.tensor([[token]]), state_full)
        lp_cached, state_cached = cached(torch.tensor([[token]]), state_cached)


def test_translate_command(lab_run: Path, capsys: pytest.CaptureFixture) -> None:
    model = str(lab_run / "model")
    result = nanovla("translate", "put the red box in the blue bowl", "reach the ☃",
                     "--model", model, cwd=lab_run)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 2
    capsys.readouterr()
    assert cli_main(["translate", "", "--model", model]) == 2  # in-process: same dispatch
    assert capsys.readouterr().err.strip().splitlines() == [
        "nanovla translate: error: SENTENCE 1: the sentence is empty"
    ]
    assert cli_main(["translate", "reach the red box", "--model", str(lab_run / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lab translate" in err[0]


def test_both_directions_add_korean_sources() -> None:
    pairs = [Pair("train", "reach", "reach {object}", "reach the red box", "빨간 상자에 닿아")]
    assert training_texts(pairs, "en-ko") == [("reach the red box", "빨간 상자에 닿아")]
    assert training_texts(pairs, "both")[1] == ("빨간 상자에 닿아", "reach the red box")


def test_translation_encoder_is_a_frozen_sentence_encoder(lab_run: Path) -> None:
    encoder = TranslationTextEncoder(lab_run / "model").train()
    texts = ["reach the red box", "빨간 상자에 닿아", "reach the red box", "☃"]
    features = encoder(texts)
    assert features.shape == (4, encoder.out_dim) and not features.requires_grad
    torch.testing.assert_close(features[0], features[2])
    assert not torch.allclose(features[0], features[1])
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--heads", "3"], "--heads: 3 does not divide --d-model 128"),
        (["--steps", "0"], "--steps: must be > 0"),
        (["--directions", "ko-en"], "--directions: unknown value 'ko-en'"),
    ],
)
def test_lab_refuses_bad_options_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, options: list[str], message: str
) -> None:
    assert cli_main(["lab", "translate", "--out", str(tmp_path / "o"), *options]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o" / "corpus.parquet").exists()


def test_policy_text_side_can_be_the_translation_encoder(lab_run: Path) -> None:
    from nanovla.models.policy.configuration_policy import PolicyConfig
    from nanovla.models.policy.language import InstructionEncoder

    config = PolicyConfig(text=f"translate:{lab_run / 'model'}")
    language = InstructionEncoder(config, None).train()
    assert language.frozen and language.out_dim == TranslationTextEncoder(lab_run / "model").out_dim
    features = language(["빨간 상자에 닿아", "reach the red box", "빨간 상자에 닿아"])
    assert features.shape == (3, language.out_dim) and not features.requires_grad
    torch.testing.assert_close(features[0], features[2])


def test_warm_start_keeps_the_tokenizer_and_reuses_the_corpus(
    lab_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "warm"
    args = ["lab", "translate", "--out", str(out), "--corpus", str(lab_run / "corpus.parquet"),
            "--init", str(lab_run / "model"), "--steps", "2", "--beam-size", "1",
            "--examples", "0", "--threads", "1"]  # fmt: skip
    assert cli_main(args) == 0
    before = json.loads((lab_run / "model" / "tokenizer.json").read_text())
    assert json.loads((out / "model" / "tokenizer.json").read_text()) == before
    assert not (out / "corpus.parquet").exists()
    assert json.loads((out / "metrics.json").read_text())["count"]["test"] == 12
