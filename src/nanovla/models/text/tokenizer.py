"""A tiny vocabulary tokenizer for robot instructions, built from the dataset's task strings.

Two levels, chosen by `level`:

- ``"word"``: lower-cased words and punctuation marks ("put the red box in the bowl" -> 7 ids).
  Short sequences (fast LSTM), but a Korean word carries its particles ("상자를", "상자에"), so
  a held-out paraphrase often meets words never seen in training (-> ``<unk>``).
- ``"char"``: one id per character (spaces included). Longer sequences, but every Hangul
  syllable and Latin letter seen in training is known, so new particle/stem combinations and
  new word orders still map to known ids.

Departure from the seed: its LanguageEncoder takes ready-made token ids ("pick up the red cup" ->
[45, 123, ...]) and never says where they come from; this is that missing piece, saved with
the checkpoint as JSON so a trained policy reads instructions exactly as it did in training.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from nanovla.errors import InputError, MissingError

TokenizerLevel = Literal["word", "char"]
LEVELS: tuple[str, ...] = ("word", "char")
PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1

# A word is a run of letters/digits (any script); every other non-space character is its own token.
_WORD_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def split_text(text: str, level: str) -> list[str]:
    """Split one instruction into token strings at `level` ("word" or "char"), lower-cased."""
    text = " ".join(text.lower().split())  # collapse runs of whitespace
    if level == "word":
        return _WORD_RE.findall(text)
    if level == "char":
        return list(text)
    raise InputError(f"tokenizer level must be one of {LEVELS}, got {level!r}")


class Tokenizer:
    """Maps instruction strings to padded id tensors; id 0 is ``<pad>``, id 1 is ``<unk>``.

    Build with `Tokenizer.from_texts(texts, level=...)`; `encode(texts)` returns
    ``ids (B, T) long`` (right-padded with 0) and ``lengths (B,) long`` (>= 1: an empty string
    encodes as a single ``<unk>`` so every row has a token for the LSTM to read).
    """

    def __init__(self, vocab: Sequence[str], level: str = "word", max_length: int = 128) -> None:
        if level not in LEVELS:
            raise InputError(f"tokenizer level must be one of {LEVELS}, got {level!r}")
        if len(vocab) < 2 or vocab[PAD_ID] != PAD or vocab[UNK_ID] != UNK:
            raise InputError(f"tokenizer vocab must start with {PAD!r}, {UNK!r}")
        if len(set(vocab)) != len(vocab):
            raise InputError("tokenizer vocab has duplicate tokens")
        if max_length < 1:
            raise InputError(f"tokenizer max_length must be >= 1, got {max_length}")
        self.level = level
        self.max_length = max_length
        self.vocab: list[str] = list(vocab)
        self.token_to_id: dict[str, int] = {token: i for i, token in enumerate(self.vocab)}

    @classmethod
    def from_texts(
        cls, texts: Iterable[str], level: str = "word", min_count: int = 1, max_length: int = 128
    ) -> Tokenizer:
        """Vocabulary of every token seen at least `min_count` times, most frequent first."""
        counts = Counter(token for text in texts for token in split_text(text, level))
        kept = sorted(
            (t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t)
        )
        return cls([PAD, UNK, *kept], level=level, max_length=max_length)

    @property
    def vocab_size(self) -> int:
        """Number of ids, ``<pad>`` and ``<unk>`` included."""
        return len(self.vocab)

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    def tokenize(self, text: str) -> list[int]:
        """Ids of one instruction (unknown tokens -> ``<unk>``), cut to `max_length`."""
        ids = [self.token_to_id.get(token, UNK_ID) for token in split_text(text, self.level)]
        return ids[: self.max_length] or [UNK_ID]

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ids ``(B, T)`` long and lengths ``(B,)`` long for a batch of instructions."""
        if isinstance(texts, str):
            raise InputError("Tokenizer.encode takes a list of strings, got a single str")
        return self.pad([self.tokenize(text) for text in texts])

    @staticmethod
    def pad(rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad id lists with ``<pad>``: ids ``(B, T)`` long, lengths ``(B,)`` long."""
        lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
        ids = torch.full((len(rows), int(lengths.max()) if rows else 0), PAD_ID, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return ids, lengths  # (B, T), (B,)

    def decode(self, ids: Sequence[int]) -> str:
        """Tokens of `ids` joined back (spaces between words at word level), padding dropped."""
        tokens = [self.vocab[i] for i in ids if i != PAD_ID]
        return ("" if self.level == "char" else " ").join(tokens)

    def to_dict(self) -> dict:
        return {"type": "nanovla_tokenizer", "level": self.level, "max_length": self.max_length,
                "vocab": self.vocab}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict, source: str = "tokenizer") -> Tokenizer:
        """Inverse of `to_dict`; a malformed dict -> InputError naming `source` and the key.

        Unknown keys are refused (as the config codec does); `vocab` must be a list of
        distinct strings starting with ``<pad>``, ``<unk>``; `max_length` a positive integer.
        """
        if not isinstance(data, dict) or data.get("type") != "nanovla_tokenizer":
            raise InputError(
                f"{source}: not a nanovla tokenizer (missing 'type': 'nanovla_tokenizer')"
            )
        unknown = sorted(set(data) - {"type", "level", "max_length", "vocab"})
        if unknown:
            raise InputError(f"{source}: unknown tokenizer key(s) {unknown}")
        for key, kind in (("level", str), ("max_length", int), ("vocab", list)):
            value = data.get(key)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise InputError(f"{source}: key {key!r} missing or not a {kind.__name__}")
        bad = [i for i, token in enumerate(data["vocab"]) if not isinstance(token, str)]
        if bad:
            raise InputError(
                f"{source}: key 'vocab' entry {bad[0]} is {data['vocab'][bad[0]]!r}, not a string"
            )
        try:
            return cls(data["vocab"], level=data["level"], max_length=data["max_length"])
        except ValueError as error:
            raise InputError(f"{source}: {error}") from error

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer as JSON (atomically: temp file + rename)."""
        path = Path(path)
        temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        temp.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(temp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Read a tokenizer written by `save`; missing or corrupt file -> error naming it."""
        return cls.from_dict(read_tokenizer_json(path), source=str(path))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Tokenizer(level={self.level!r}, vocab_size={self.vocab_size})"


def read_tokenizer_json(path: str | os.PathLike) -> Any:
    """The parsed JSON of a tokenizer file; missing -> MissingError, unreadable -> InputError,
    both naming the file (every tokenizer's `load` reads through this)."""
    path = Path(path)
    if not path.is_file():
        raise MissingError(f"tokenizer file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        message = " ".join(str(error).split())
        raise InputError(f"{path}: corrupt tokenizer JSON ({message})") from error
