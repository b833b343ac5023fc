"""Text for the VLMs: the word-level tokenizer with the special tokens and the prompt format.

Both architectures read and write one token sequence per example,

    <bos> prompt <sep> target <eos>

and learn to predict `target <eos>` from everything before it (the loss skips the prompt, as
LLaVA's instruction tuning does). A caption is the answer to the caption prompt
("describe the image." / "이미지를 설명해 줘."), so VQA and captioning are one task: instruction
following. For generation, prompts are *left*-padded so that every row's last token is its
`<sep>`; positions are counted from the first real token, so padding changes nothing.

Two tokenizers, both with `<pad>`, `<unk>`, `<bos>`, `<sep>`, `<eos>` at ids 0-4:

- `BPETokenizer` (the default of `build_tokenizer`): our byte-pair-encoding subword tokenizer
  (`nanovla.models.text.subword`, byte fallback) trained on the training questions, answers
  and captions, on lower-cased text. A word that training never showed ("tell", "종류를")
  becomes known pieces ("▁t" "ell", "▁종류" "를") instead of one `<unk>`, which is what a
  held-out paraphrase needs; nothing is ever `<unk>`.
- the word-level `nanovla.models.text.tokenizer.Tokenizer` (lower-cased words and punctuation
  marks; a Korean word keeps its particles, so "종류를" is `<unk>` when only "종류야" was seen):
  `build_tokenizer(kind="word")`, and every model directory saved before the BPE switch, which
  `load_tokenizer` still reads.

Neither text splitter ever yields a special token (the word splitter cuts "<bos>" into three
tokens, BPE spells it as pieces), so a prompt cannot inject one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import torch

from nanovla.errors import InputError
from nanovla.io import write_json
from nanovla.models.text import subword
from nanovla.models.text.subword import SubwordTokenizer
from nanovla.models.text.tokenizer import (
    PAD,
    PAD_ID,
    UNK,
    UNK_ID,
    Tokenizer,
    read_tokenizer_json,
    split_text,
)

BOS, SEP, EOS = "<bos>", "<sep>", "<eos>"
BOS_ID, SEP_ID, EOS_ID = 2, 3, 4
SPECIAL_IDS = (PAD_ID, UNK_ID, BOS_ID, SEP_ID, EOS_ID)
CAPTION_PROMPTS = {"en": "describe the image.", "ko": "이미지를 설명해 줘."}
_SPACE_BEFORE_MARK = re.compile(r" ([.,?!:;])")
_MARK = re.compile(r"\s*([.,?!:;])")


BPE_TYPE = "nanovla_vlm_bpe"
BPE_VOCAB_SIZE = 800
"""default BPE vocabulary (specials + 256 bytes + characters + merges): the VQA training text
has ~150 word types, so frequent words become one token and rare ones a few pieces"""


class BPETokenizer:
    """The VLM's subword tokenizer: `SubwordTokenizer` ids shifted by one so that `<sep>` sits at
    id 3 (ids 0-4 `<pad>`, `<unk>`, `<bos>`, `<sep>`, `<eos>`, then the subword's bytes,
    characters and merges). Text is lower-cased first, as the word tokenizer does."""

    level = "bpe"

    def __init__(self, bpe: SubwordTokenizer, max_length: int = 64) -> None:
        if max_length < 1:
            raise InputError(f"tokenizer max_length must be >= 1, got {max_length}")
        self.bpe, self.max_length = bpe, max_length
        self.vocab: list[str] = [PAD, UNK, BOS, SEP, EOS, *bpe.vocab[len(subword.SPECIALS) :]]
        self.token_to_id = {token: index for index, token in enumerate(self.vocab)}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @staticmethod
    def prepare(text: str) -> str:
        """Lower case, and a space before each . , ? ! so that a mark is its own word ("box?"
        and "box" are one piece followed by a mark, not two unrelated pieces)."""
        return _MARK.sub(r" \1", text.lower())

    def pieces(self, text: str) -> list[str]:
        """The subword strings of `text`."""
        return self.bpe.tokenize(self.prepare(text))

    def tokenize(self, text: str) -> list[int]:
        """Ids of `text` (no specials), cut to `max_length`; never `<unk>`."""
        shift = EOS_ID + 1 - len(subword.SPECIALS)
        return [i + shift for i in self.bpe.encode(self.prepare(text))][: self.max_length]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text (specials dropped, no space before . , ? !)."""
        shift = EOS_ID + 1 - len(subword.SPECIALS)
        text = self.bpe.decode([int(i) - shift for i in ids if int(i) not in SPECIAL_IDS])
        return _SPACE_BEFORE_MARK.sub(r"\1", text)

    def to_dict(self) -> dict:
        return {"type": BPE_TYPE, "max_length": self.max_length, "bpe": self.bpe.to_dict()}

    def save(self, path: str | os.PathLike) -> Path:
        return write_json(path, self.to_dict())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BPETokenizer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


VLMTokenizer = Tokenizer | BPETokenizer


def build_tokenizer(
    texts: Iterable[str],
    max_length: int = 64,
    kind: Literal["bpe", "word"] = "bpe",
    vocab_size: int = BPE_VOCAB_SIZE,
) -> VLMTokenizer:
    """A tokenizer of `texts` (and the caption prompts) with the VLM's specials at ids 0-4:
    BPE trained on the lower-cased texts (`vocab_size` tokens at most), or word level."""
    texts = [*texts, *CAPTION_PROMPTS.values()]
    if kind == "bpe":
        bpe = SubwordTokenizer.train([BPETokenizer.prepare(t) for t in texts], vocab_size + 1, 2)
        return BPETokenizer(bpe, max_length)
    if kind != "word":
        raise InputError(f"tokenizer kind: unknown {kind!r}; choose 'bpe' or 'word'")
    base = Tokenizer.from_texts(texts, level="word")
    return Tokenizer([PAD, UNK, BOS, SEP, EOS, *base.vocab[2:]], "word", max_length)


def load_tokenizer(path: str | os.PathLike) -> VLMTokenizer:
    """Read a VLM's tokenizer.json: BPE, or the word-level one of models saved before BPE; a
    missing, corrupt or foreign file -> one error naming the file."""
    path = Path(path)
    data = read_tokenizer_json(path)
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == BPE_TYPE:
        max_length = data.get("max_length")
        if (
            not isinstance(max_length, int)
            or isinstance(max_length, bool)
            or not isinstance(data.get("bpe"), dict)
        ):
            raise InputError(f"{path}: malformed BPE tokenizer (needs 'max_length' and 'bpe')")
        return BPETokenizer(SubwordTokenizer.from_dict(data["bpe"], str(path)), max_length)
    if kind == "nanovla_tokenizer":
        return Tokenizer.from_dict(data, source=str(path))
    raise InputError(
        f"{path}: not a VLM tokenizer (type {kind!r}; expected {BPE_TYPE!r} or 'nanovla_tokenizer')"
    )


def check_tokenizer(tokenizer: VLMTokenizer, source: str) -> None:
    """InputError naming `source` unless `tokenizer` has the VLM's special tokens at their ids."""
    level = getattr(tokenizer, "level", None)
    if level not in ("word", "bpe") or tokenizer.vocab[BOS_ID : EOS_ID + 1] != [BOS, SEP, EOS]:
        raise InputError(f"{source}: not a VLM tokenizer (needs {BOS}, {SEP}, {EOS} at ids 2-4)")


def encode_prompt(tokenizer: VLMTokenizer, prompt: str, argument: str = "questions") -> list[int]:
    """`<bos> prompt <sep>` ids; an empty or whitespace prompt is an InputError naming `argument`."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(f"{argument}: empty question {prompt!r}; ask something")
    return [BOS_ID, *tokenizer.tokenize(prompt), SEP_ID]


def training_batch(
    tokenizer: VLMTokenizer, prompts: Sequence[str], targets: Sequence[str], max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, T) of `<bos> prompt <sep> target <eos>` and the labels (B, T): the
    next token where it is part of `target <eos>`, else -100 (ignored by cross-entropy)."""
    rows, labels = [], []
    for prompt, target in zip(prompts, targets, strict=True):
        head = encode_prompt(tokenizer, prompt, "prompts")
        tail = [*tokenizer.tokenize(target), EOS_ID]
        ids = (head + tail)[: max_len + 1]
        rows.append(ids[:-1])
        labels.append(([-100] * (len(head) - 1) + tail)[: len(ids) - 1])
    length = max(len(row) for row in rows)
    batch = torch.full((len(rows), length), PAD_ID, dtype=torch.long)
    target = torch.full((len(rows), length), -100, dtype=torch.long)
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        batch[i, : len(row)] = torch.tensor(row)
        target[i, : len(label)] = torch.tensor(label)
    return batch, target


def left_padded(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """(B, T) ids, each row right-aligned after `<pad>`s (generation prompts)."""
    length = max(len(row) for row in rows)
    batch = torch.full((len(rows), length), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        batch[i, length - len(row) :] = torch.tensor(list(row), dtype=torch.long)
    return batch


def decode(tokenizer: VLMTokenizer, ids: Sequence[int]) -> str:
    """Generated ids -> text: specials dropped; BPE pieces joined at their word marks, words
    (word level) joined by spaces with none before . , ? !"""
    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.decode(ids)
    words = [tokenizer.vocab[i] for i in ids if i not in SPECIAL_IDS]
    return _SPACE_BEFORE_MARK.sub(r"\1", " ".join(words))


def normalize(tokenizer: VLMTokenizer, text: str) -> str:
    """`text` as the model would write it (lower case, the tokenizer's spacing): the form the
    metrics compare generated text with."""
    if isinstance(tokenizer, BPETokenizer):
        return _SPACE_BEFORE_MARK.sub(r"\1", subword.normalize(BPETokenizer.prepare(text)))
    return _SPACE_BEFORE_MARK.sub(r"\1", " ".join(split_text(text, tokenizer.level)))
