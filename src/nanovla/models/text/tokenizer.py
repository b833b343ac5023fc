"""A tiny vocabulary tokenizer for robot instructions, built from the dataset's task strings.

Two levels, chosen by `level`:

- ``"word"``: lower-cased words and punctuation marks ("put the red box in the bowl" -> 7 ids).
  Short sequences (fast LSTM), but a Korean word carries its particles ("상자를", "상자에"), so
  a held-out paraphrase often meets words never seen in training (-> ``<unk>``).
- ``"char"``: one id per character (spaces included). Longer sequences, but every Hangul
  syllable and Latin letter seen in training is known, so new particle/stem combinations and
  new word orders still map to known ids.
- ``"particle"``: words, with the particles a Korean word ends in split off as tokens of their
  own ("상자를" -> "상자", "를"; "그릇에는" -> "그릇", "에", "는"), peeled from the end while
  a stem of at least one syllable remains. A held-out template that puts a known noun before a
  particle combination training never wrote ("그릇에는", "공도", "상자와") then reads the noun,
  not `<unk>`. English is split exactly as at word level. A rule, not a morphological analyser:
  a word that merely ends in such a syllable ("작은" -> "작", "은") is split the same way in
  training and at test time, so it stays a known pair of tokens.

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

TokenizerLevel = Literal["word", "char", "particle"]
LEVELS: tuple[str, ...] = ("word", "char", "particle")
PARTICLES_KO: tuple[str, ...] = (
    "에서", "에게", "한테", "까지", "부터", "으로", "처럼",
    "을", "를", "이", "가", "은", "는", "과", "와", "로", "에", "도", "의", "만",
)  # fmt: skip
"""Korean particles (case markers and the commonest auxiliaries) the "particle" level splits
off; two-syllable ones first, so "으로" is never read as "로" after a stem ending in "으"."""
PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1

# A word is a run of letters/digits (any script); every other non-space character is its own token.
_WORD_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def split_text(text: str, level: str) -> list[str]:
    """Split one instruction into token strings at `level` ("word", "char" or "particle"),
    lower-cased."""
    text = " ".join(text.lower().split())  # collapse runs of whitespace
    if level == "word":
        return _WORD_RE.findall(text)
    if level == "particle":
        return [token for word in _WORD_RE.findall(text) for token in split_particles(word)]
    if level == "char":
        return list(text)
    raise InputError(f"tokenizer level must be one of {LEVELS}, got {level!r}")


def split_particles(word: str) -> list[str]:
    """A Hangul word -> its stem and the particles it ends in, in order ("그릇에는" -> ["그릇",
    "에", "는"]); a stem keeps at least one syllable. Other words are returned whole."""
    if not word or not "\uac00" <= word[-1] <= "\ud7a3":
        return [word]
    peeled: list[str] = []
    while True:
        found = next((p for p in PARTICLES_KO if word.endswith(p) and len(word) > len(p)), None)
        if found is None:
            return [word, *reversed(peeled)]
        peeled.append(found)
        word = word[: -len(found)]


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
        return ("" if self.level == "char" else " ").join(tokens)  # particle: "상자 를"

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
