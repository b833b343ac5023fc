"""Scoring and figures of `nanovla lab translate`: sacreBLEU / chrF per split, printed examples,
the cross-attention heat map.

Metrics come from sacrebleu itself (`sacrebleu.metrics.BLEU` / `CHRF`, corpus level, one
reference per sentence); this file only does the per-split bookkeeping.

Korean tokenization for BLEU: sacrebleu's Korean tokenizer `ko-mecab` needs mecab-ko (not
installed) and `flores200` needs a SentencePiece model download, so neither works offline.
`bleu` uses `13a`, which splits Korean at spaces and punctuation: units are eojeol (a stem with
its particles, "상자를"), so a wrong particle costs the whole word — stricter than a morpheme
tokenizer would be. `bleu_char` (tokenize="char", every character a token) is reported beside it
and is always more lenient. chrF (character n-grams, order 6, beta 2) needs no tokenization.

The heat map shows, for one sentence, each decoder layer's cross-attention (averaged over heads)
from every generated Korean token to every English source token, recorded while the model
re-reads its own translation with teacher forcing.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import torch
from sacrebleu.metrics import BLEU, CHRF

from nanovla.data.parallel import Pair
from nanovla.labs.common import pyplot, save_figure
from nanovla.models.text.subword import BOS_ID
from nanovla.models.text.translator import Translator, pad_rows

BLEU_TOKENIZE = "13a"


def score(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU (13a and char tokenization), chrF and exact-match rate, in percent."""
    refs = [list(references)]
    return {
        "bleu": BLEU(tokenize=BLEU_TOKENIZE).corpus_score(list(hypotheses), refs).score,
        "bleu_char": BLEU(tokenize="char").corpus_score(list(hypotheses), refs).score,
        "chrf": CHRF().corpus_score(list(hypotheses), refs).score,
        "exact": 100.0 * sum(h == r for h, r in zip(hypotheses, references)) / len(references),
    }


def score_splits(
    translations: dict[str, list[str]], pairs: dict[str, list[Pair]]
) -> dict[str, dict[str, float]]:
    """metric -> split -> value, for every split with at least one pair; plus "count"."""
    out: dict[str, dict[str, float]] = {}
    for split, hypotheses in translations.items():
        references = [pair.ko for pair in pairs[split]]
        if len(references) != len(hypotheses):
            raise ValueError(f"{split}: {len(hypotheses)} translations, {len(references)} refs")
        if not references:
            continue
        for metric, value in score(hypotheses, references).items():
            out.setdefault(metric, {})[split] = value
        out.setdefault("count", {})[split] = len(references)
    return out


def per_family(translations: list[str], pairs: list[Pair]) -> dict[str, dict[str, float]]:
    """family -> {bleu, chrf, count} for one split."""
    families: dict[str, list[int]] = {}
    for index, pair in enumerate(pairs):
        families.setdefault(pair.family, []).append(index)
    return {
        family: {**score([translations[i] for i in rows], [pairs[i].ko for i in rows]),
                 "count": len(rows)}
        for family, rows in sorted(families.items())
    }  # fmt: skip


def examples(translations: list[str], pairs: list[Pair], count: int) -> list[dict[str, str]]:
    """The first `count` pairs with their translation, spread across families."""
    picked, seen = [], set()
    for hypothesis, pair in zip(translations, pairs):
        if pair.family not in seen or len(seen) == 4:
            seen.add(pair.family)
            picked.append({"family": pair.family, "en": pair.en, "ref": pair.ko,
                           "hyp": hypothesis})  # fmt: skip
        if len(picked) == count:
            break
    return picked


@torch.no_grad()
def cross_attention(
    translator: Translator, sentence: str
) -> tuple[list[str], list[str], list[torch.Tensor], str]:
    """(source tokens, target tokens, per layer (T, S) head-averaged weights, translation)."""
    model, tokenizer = translator.model, translator.tokenizer
    source = translator.source_ids([sentence])[0]
    target = translator.translate_ids([source])[0]
    src, pad = pad_rows([source])
    tgt = torch.tensor([[BOS_ID, *target]])
    weights: list = []

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict, output: object) -> None:
        call = {**kwargs, "need_weights": True, "cache": None, "average_attn_weights": True}
        weights.append(module.forward(*args, **call)[1][0])  # (T, S)

    handles = [layer.cross_attn.register_forward_hook(hook, with_kwargs=True)
               for layer in model.decoder.layers]  # fmt: skip
    try:
        model.decode(tgt, model.encode(src, pad), pad)
    finally:
        for handle in handles:
            handle.remove()
    names = tokenizer.vocab
    source_tokens = [names[i] for i in source[:-1]] + ["</s>"]
    target_tokens = [names[i] for i in target] + ["</s>"]
    return source_tokens, target_tokens, weights, tokenizer.decode(target)


def _korean_font() -> str | None:
    """Registers an installed Hangul font with matplotlib; its family name, or None."""
    from matplotlib import font_manager

    for pattern in ("/usr/share/fonts/**/NanumGothic.ttf", "/usr/share/fonts/**/*CJK*.tt*"):
        for path in sorted(glob.glob(pattern, recursive=True)):
            font_manager.fontManager.addfont(path)
            return font_manager.FontProperties(fname=path).get_name()
    return None


def plot_cross_attention(path: Path, translator: Translator, sentence: str) -> Path:
    """One heat map per decoder layer: Korean tokens (rows) x English tokens (columns)."""
    plt = pyplot()
    font = _korean_font()
    source, target, weights, translation = cross_attention(translator, sentence)
    size = (4.2 * len(weights), 0.35 * len(target) + 2.5)
    figure, axes = plt.subplots(1, len(weights), figsize=size, squeeze=False)
    for layer, (axis, weight) in enumerate(zip(axes[0], weights)):
        image = axis.imshow(weight.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        axis.set_xticks(range(len(source)), [t.replace("\u2581", "_") for t in source],
                        rotation=70, fontsize=8)  # fmt: skip
        axis.set_yticks(range(len(target)), [t.replace("\u2581", "_") for t in target],
                        fontsize=8, fontfamily=font or "sans-serif")  # fmt: skip
        axis.set_title(f"decoder layer {layer + 1} cross-attention")
    figure.colorbar(image, ax=axes[0].tolist(), fraction=0.03, label="attention weight")
    figure.suptitle(f"{sentence}  ->  {translation}", y=1.04, fontfamily=font or "sans-serif")
    return save_figure(figure, path)


def print_summary(metrics: dict, out: Path) -> None:
    """The lab's printed result: examples, then one line per split, then the timings."""
    for split, shown in metrics["examples"].items():
        print(f"[{split}]")
        for example in shown:
            mark = "=" if example["hyp"] == example["ref"] else "!"
            print(
                f"  en : {example['en']}\n  ko : {example['hyp']}\n  ref: {example['ref']} {mark}"
            )
    for split, count in metrics["count"].items():
        print(
            f"{split:<18} n={count:<4} BLEU({BLEU_TOKENIZE}) {metrics['bleu'][split]:5.1f}  "
            f"BLEU(char) {metrics['bleu_char'][split]:5.1f}  chrF {metrics['chrf'][split]:5.1f}  "
            f"exact {metrics['exact'][split]:5.1f}%"
        )
    print(
        f"trained {metrics['parameters']:,} parameters on {metrics['train_pairs']} pairs in "
        f"{metrics['train_seconds']:.0f} s; decoded the evaluation splits in "
        f"{metrics['decode_seconds']:.0f} s; wrote {out / 'metrics.json'}, "
        f"{out / 'attention.png'}, {out / 'model'}"
    )
