"""`nanovla lab translate`: English -> Korean instruction translation with our Transformer.

The seed's Month 5 week 2 "complete Transformer", trained on the world's own parallel corpus
(`nanovla.data.parallel`: the same scene and task rendered in both languages) with a shared BPE
vocabulary (`nanovla.models.text.subword`, byte fallback for unknown characters).

Model and training follow "Attention is all you need" (Vaswani et al. 2017,
https://arxiv.org/abs/1706.03762), scaled down: `nanovla.nn.Transformer` (post-norm, ReLU,
sinusoidal positions), cross-entropy with label smoothing (eps = 0.1), Adam(0.9, 0.98, 1e-9) and
the paper's schedule lr = scale * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5) (torch's
`LambdaLR`). Decoding is beam search with the GNMT length penalty (`nanovla.nn.decoding`) over the
decoder's KV cache (`nanovla.nn.kv_cache`).

Departures from the paper (the corpus is tiny): a 2 + 2 layer, d_model 128 model, 200 warmup
steps instead of 4,000, 2,000 steps, and the paper's learning rate scaled by 0.25 (with d_model
128 and 200 warmup steps the formula peaks at 6.3e-3, nine times the paper's peak; at scale 1
this post-norm model had not learned to bind each color to its object after 800-1,200 steps:
held-out-scene BLEU 47-53 instead of 80; 2,000 steps at scale 0.25 gave 91.8, 1,200 gave 80.3); no checkpoint averaging; the two embedding tables and
the output layer are not tied (`nanovla.nn.Transformer` keeps them separate). English input is
lower-cased (the world's instructions are); a source longer than `max_len` is refused by name.

The run (`labs/translate_report.py`) scores held-out scenes, held-out paraphrases and held-out
attribute combinations separately with sacreBLEU and chrF, prints a few translations and draws a
cross-attention heat map. `Translator` is the inference face: `Translator.from_pretrained(DIR)
.translate(["put the red box in the blue bowl"])`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from nanovla.data.parallel import (
    EVAL_SPLITS,
    Pair,
    build_corpus,
    by_split,
    read_corpus,
    write_corpus,
)
from nanovla.errors import InputError
from nanovla.labs.common import LabConfig, check_choice, check_positive, setup, write_metrics
from nanovla.models.text.subword import BOS_ID, EOS_ID, PAD_ID, SubwordTokenizer
from nanovla.models.text.translator import Translator, TranslatorConfig, build_model, pad_rows
from nanovla.nn.seq2seq import Transformer
from nanovla.progress import note, progress

__all__ = ["TranslateConfig", "Translator", "TranslatorConfig", "run", "train_translator"]
DIRECTIONS = ("en-ko", "both")


@dataclass
class TrainSettings:
    """Optimisation settings of `train_translator` (the lab's options)."""

    steps: int = 2000
    """optimizer steps"""
    batch_size: int = 64
    """sentence pairs per step (drawn with replacement)"""
    warmup: int = 200
    """linear warmup steps before the 1/sqrt(step) decay"""
    lr_scale: float = 0.25
    """factor on the paper's learning rate"""
    label_smoothing: float = 0.1
    """cross-entropy label smoothing epsilon"""


def inverse_sqrt_schedule(d_model: int, warmup: int) -> Callable[[int], float]:
    """The paper's factor d^-0.5 * min(step^-0.5, step * warmup^-1.5), step counted from 1."""

    def factor(step: int) -> float:
        step += 1  # LambdaLR starts at 0
        return d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)

    return factor


def training_texts(pairs: Sequence[Pair], directions: str) -> list[tuple[str, str]]:
    """(source, target) strings: English -> Korean, and with "both" Korean -> English too (the
    source's script tells the model which way to go, so no language tag is needed)."""
    texts = [(pair.en.lower(), pair.ko) for pair in pairs]
    if directions == "both":
        texts += [(pair.ko, pair.en.lower()) for pair in pairs]
    return texts


def encode_pairs(
    tokenizer: SubwordTokenizer, texts: Sequence[tuple[str, str]], max_len: int
) -> list[tuple[list[int], list[int]]]:
    """(source ids + EOS, target ids) per pair; pairs longer than max_len are refused."""
    rows = []
    for source, target in texts:
        src = tokenizer.encode(source) + [EOS_ID]
        tgt = tokenizer.encode(target)
        if len(src) > max_len or len(tgt) + 1 > max_len:
            raise InputError(f"corpus: {source!r} is longer than the model's {max_len} tokens")
        rows.append((src, tgt))
    return rows


def batch_loss(
    model: Transformer, rows: Sequence[tuple[list[int], list[int]]], smoothing: float
) -> Tensor:
    """Teacher-forced cross-entropy (label smoothed) of one batch, padding ignored."""
    src, src_pad = pad_rows([src for src, _ in rows])
    tgt_in, tgt_pad = pad_rows([[BOS_ID, *tgt] for _, tgt in rows])
    tgt_out, _ = pad_rows([[*tgt, EOS_ID] for _, tgt in rows])
    logits = model(src, tgt_in, src_pad, tgt_pad)  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID,
                           label_smoothing=smoothing)  # fmt: skip


def train_translator(
    translator: Translator, texts: Sequence[tuple[str, str]], settings: TrainSettings, seed: int
) -> dict[str, list[float] | float]:
    """Trains `translator.model` in place on (source, target) strings; returns the loss curve
    and the wall time."""
    model, config = translator.model.train(), translator.config
    rows = encode_pairs(translator.tokenizer, texts, config.max_len)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr_scale, betas=(0.9, 0.98),
                                 eps=1e-9)  # fmt: skip
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, inverse_sqrt_schedule(config.d_model, settings.warmup)
    )
    generator = torch.Generator().manual_seed(seed)
    losses, window = [], []
    start = time.perf_counter()
    bar = progress(range(settings.steps), desc="translate", unit="step")
    for step in bar:
        picks = torch.randint(len(rows), (settings.batch_size,), generator=generator).tolist()
        loss = batch_loss(model, [rows[i] for i in picks], settings.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        value = loss.item()
        if not math.isfinite(value):
            raise InputError(f"training diverged at step {step}; lower --lr-scale")
        window.append(value)
        if len(window) == 50 or step == settings.steps - 1:
            losses.append(sum(window) / len(window))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            window = []
    model.eval()
    return {"loss": losses, "train_seconds": time.perf_counter() - start}


@dataclass
class TranslateConfig(LabConfig):
    """Train an English -> Korean Transformer on the world's parallel corpus and score it with
    sacreBLEU and chrF on held-out scenes, held-out paraphrases and held-out attribute
    combinations; writes metrics.json, attention.png, the corpus (parquet) and the model."""

    out: Path = Path("runs/lab-translate")
    """directory for metrics.json, attention.png, corpus.parquet and model/"""
    corpus: Path | None = None
    """parallel corpus parquet to use (written there if missing); None = OUT/corpus.parquet"""
    train_size: int = 40000
    """training pairs generated (when the corpus is written)"""
    eval_size: int = 500
    """pairs per evaluation split (when the corpus is written)"""
    vocab_size: int = 1000
    """BPE vocabulary size ceiling (training stops earlier when no pair repeats)"""
    d_model: int = 128
    """token width"""
    heads: int = 4
    """attention heads"""
    layers: int = 2
    """encoder layers and decoder layers (each)"""
    d_ff: int = 256
    """feed-forward hidden width"""
    dropout: float = 0.1
    """dropout everywhere"""
    steps: int = 2000
    """optimizer steps"""
    batch_size: int = 64
    """sentence pairs per step"""
    warmup: int = 200
    """warmup steps of the inverse-sqrt schedule"""
    lr_scale: float = 0.25
    """factor on the paper's learning rate d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)"""
    label_smoothing: float = 0.1
    """label smoothing epsilon of the cross-entropy"""
    beam_size: int = 4
    """beam width for evaluation (1 = greedy)"""
    length_penalty: float = 0.6
    """GNMT length penalty alpha for beam search"""
    examples: int = 4
    """translations printed per evaluation split"""
    init: Path | None = None
    """warm start: a model directory (DIR/model of an earlier run; its tokenizer and shape are
    kept, --vocab-size and the shape options are ignored); None = train from scratch"""
    directions: str = "en-ko"
    """en-ko, or both (also Korean -> English, so the encoder reads Korean: what the VLA's
    `--policy.text translate:DIR/model` needs for Korean instructions)"""


def load_or_write_corpus(config: TranslateConfig, out: Path) -> tuple[Path, list[Pair]]:
    """The corpus at --corpus (default OUT/corpus.parquet), generated and written once."""
    path = config.corpus or out / "corpus.parquet"
    if path.is_file():
        note(f"translate: reusing the corpus {path}")
        return path, read_corpus(path)
    pairs = build_corpus(config.train_size, config.eval_size, config.seed)
    return write_corpus(path, pairs), pairs


def new_translator(config: TranslateConfig, train: Sequence[Pair]) -> Translator:
    """The model to train: loaded from --init, or a fresh one with a BPE trained on `train`."""
    if config.init is not None:
        note(f"translate: warm start from {config.init}")
        return Translator.from_pretrained(config.init)
    tokenizer = SubwordTokenizer.train([p.en.lower() for p in train] + [p.ko for p in train],
                                       vocab_size=config.vocab_size)  # fmt: skip
    shape = TranslatorConfig(tokenizer.vocab_size, config.d_model, config.heads, config.layers,
                             config.d_ff, config.dropout)  # fmt: skip
    return Translator(build_model(shape), tokenizer, shape)


def check_config(config: TranslateConfig) -> None:
    """InputError naming the first bad option."""
    check_positive(train_size=config.train_size, eval_size=config.eval_size, steps=config.steps,
                   batch_size=config.batch_size, warmup=config.warmup, lr_scale=config.lr_scale,
                   beam_size=config.beam_size)  # fmt: skip
    check_choice("directions", config.directions, DIRECTIONS)
    check_positive(d_model=config.d_model, heads=config.heads, layers=config.layers,
                   d_ff=config.d_ff)  # fmt: skip
    if config.d_model % config.heads:
        raise InputError(f"--heads: {config.heads} does not divide --d-model {config.d_model}")
    if not 0.0 <= config.dropout < 1.0 or not 0.0 <= config.label_smoothing < 1.0:
        raise InputError("--dropout and --label-smoothing: must lie in [0, 1)")


def run(config: TranslateConfig) -> dict:
    """The lab: corpus -> tokenizer -> training -> scores, examples, heat map, saved model."""
    check_config(config)
    from nanovla.labs import translate_report as report

    out = setup(config)
    corpus_path, pairs = load_or_write_corpus(config, out)
    splits = by_split(pairs)
    train = splits["train"]
    if not train:
        raise InputError(f"{corpus_path}: no training pairs")
    translator = new_translator(config, train)
    settings = TrainSettings(config.steps, config.batch_size, config.warmup, config.lr_scale,
                             config.label_smoothing)  # fmt: skip
    history = train_translator(translator, training_texts(train, config.directions), settings,
                               config.seed)  # fmt: skip
    translator.save_pretrained(out / "model")
    start = time.perf_counter()
    translations = {split: translator.translate([p.en for p in splits[split]], config.beam_size,
                                                config.length_penalty)
                    for split in EVAL_SPLITS}  # fmt: skip
    decode_seconds = time.perf_counter() - start
    metrics = report.score_splits(translations, splits)
    shown = {split: report.examples(translations[split], splits[split], config.examples)
             for split in EVAL_SPLITS}  # fmt: skip
    sentence = "put the red box in the blue bowl"
    report.plot_cross_attention(out / "attention.png", translator, sentence)
    metrics |= {
        "per_family": {s: report.per_family(translations[s], splits[s]) for s in EVAL_SPLITS
                       if splits[s]},
        "examples": shown, "bleu_tokenize": report.BLEU_TOKENIZE, "loss": history["loss"],
        "train_seconds": history["train_seconds"], "decode_seconds": decode_seconds,
        "vocab_size": translator.tokenizer.vocab_size, "train_pairs": len(train),
        "parameters": sum(p.numel() for p in translator.model.parameters()),
        "corpus": corpus_path, "heatmap_sentence": sentence,
    }  # fmt: skip
    write_metrics(out, metrics, config)
    report.print_summary(metrics, out)
    return metrics
