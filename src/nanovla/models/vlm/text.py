"""Text for the VLMs: the word-level tokenizer with the special tokens and the prompt format.

Both architectures read and write one token sequence per example,

    <bos> prompt <sep> target <eos>

and learn to predict `target <eos>` from everything before it (the loss skips the prompt, as
LLaVA's instruction tuning does). A caption is the answer to the caption prompt
("describe the image." / "이미지를 설명해 줘."), so VQA and captioning are one task: instruction
following. For generation, prompts are *left*-padded so that every row's last token is its
`<sep>`; positions are counted from the first real token, so padding changes nothing.

The tokenizer is `nanovla.models.text.tokenizer.Tokenizer` at word level (lower-cased words and
punctuation marks; a Korean word keeps its particles) with `<bos>`, `<sep>`, `<eos>` added after
`<pad>` and `<unk>`. Its text splitter never yields them (it splits "<bos>" into three tokens),
so a prompt cannot inject a special token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch

from nanovla.errors import InputError
from nanovla.models.text.tokenizer import PAD, PAD_ID, UNK, UNK_ID, Tokenizer, split_text

BOS, SEP, EOS = "<bos>", "<sep>", "<eos>"
BOS_ID, SEP_ID, EOS_ID = 2, 3, 4
SPECIAL_IDS = (PAD_ID, UNK_ID, BOS_ID, SEP_ID, EOS_ID)
CAPTION_PROMPTS = {"en": "describe the image.", "ko": "이미지를 설명해 줘."}
_SPACE_BEFORE_MARK = re.compile(r" ([.,?!:;])")


def build_tokenizer(texts: Iterable[str], max_length: int = 64) -> Tokenizer:
    """A word-level tokenizer of every word in `texts` (and the caption prompts), specials first."""
    base = Tokenizer.from_texts([*texts, *CAPTION_PROMPTS.values()], level="word")
    return Tokenizer([PAD, UNK, BOS, SEP, EOS, *base.vocab[2:]], "word", max_length)


def check_tokenizer(tokenizer: Tokenizer, source: str) -> None:
    """InputError naming `source` unless `tokenizer` has the VLM's special tokens at their ids."""
    if tokenizer.level != "word" or tokenizer.vocab[BOS_ID : EOS_ID + 1] != [BOS, SEP, EOS]:
        raise InputError(f"{source}: not a VLM tokenizer (needs {BOS}, {SEP}, {EOS} at ids 2-4)")


def encode_prompt(tokenizer: Tokenizer, prompt: str, argument: str = "questions") -> list[int]:
    """`<bos> prompt <sep>` ids; an empty or whitespace prompt is an InputError naming `argument`."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(f"{argument}: empty question {prompt!r}; ask something")
    return [BOS_ID, *tokenizer.tokenize(prompt), SEP_ID]


def training_batch(
    tokenizer: Tokenizer, prompts: Sequence[str], targets: Sequence[str], max_len: int
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


def decode(tokenizer: Tokenizer, ids: Sequence[int]) -> str:
    """Generated ids -> text: specials dropped, words joined, no space before . , ? !"""
    words = [tokenizer.vocab[i] for i in ids if i not in SPECIAL_IDS]
    return _SPACE_BEFORE_MARK.sub(r"\1", " ".join(words))


def normalize(tokenizer: Tokenizer, text: str) -> str:
    """`text` as the model would write it (lower case, the tokenizer's spacing): the form the
    metrics compare generated text with."""
    return _SPACE_BEFORE_MARK.sub(r"\1", " ".join(split_text(text, tokenizer.level)))
