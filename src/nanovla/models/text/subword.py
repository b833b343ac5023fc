"""A byte-pair-encoding (BPE) subword tokenizer with byte fallback, trained by us, shared by
English and Korean.

BPE (Sennrich, Haddow & Birch 2016, https://arxiv.org/abs/1508.07909): start from characters and
repeatedly merge the most frequent adjacent pair of symbols in the training words into a new
symbol, until the vocabulary has `vocab_size` entries (or no pair occurs `min_frequency` times).
A word is encoded by applying the learned merges in the order they were learned.

Details, as SentencePiece does them:
- Words are whitespace-separated and carry a leading "▁" (U+2581), so decoding is exact:
  `decode(encode(text)) == normalize(text)` (NFC, runs of whitespace collapsed to one space).
- Byte fallback: a character never seen in training is encoded as its UTF-8 bytes, one token
  `<0xNN>` each, so no input is ever `<unk>`; decoding joins consecutive byte tokens back into
  the character. Merges never involve byte tokens.
- Hangul is kept as precomposed syllables (NFC): Korean words are syllable strings, and the
  particles (을/를, 에, 으로/로) become separate subwords when they recur across stems.

Why our own rather than HF `tokenizers`: the corpus has a few hundred word types, so training
takes milliseconds in plain Python, and the whole algorithm fits on one screen — the lesson this
lab is for. HF `tokenizers` (its `BPE(byte_fallback=True)`) would give the same kind of vocabulary;
it is not needed at this size.

Ids: 0 `<pad>`, 1 `<unk>` (never produced by `encode`; kept so foreign vocabularies can map to
it), 2 `<bos>`, 3 `<eos>`, 4..259 the 256 byte tokens, then the training characters by frequency,
then the merged symbols in merge order.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from nanovla.errors import InputError
from nanovla.io import read_json_object, write_json

SPECIALS: tuple[str, ...] = ("<pad>", "<unk>", "<bos>", "<eos>")
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
BYTES: tuple[str, ...] = tuple(f"<0x{value:02X}>" for value in range(256))
WORD_START = "\u2581"


def normalize(text: str) -> str:
    """NFC, with runs of whitespace collapsed to single spaces and the ends stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def _pair_counts(words: dict[tuple[str, ...], int]) -> Counter:
    counts: Counter = Counter()
    for symbols, freq in words.items():
        for pair in zip(symbols, symbols[1:]):
            counts[pair] += freq
    return counts


def _merge_word(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


class SubwordTokenizer:
    """BPE over characters with byte fallback (module docstring). Build with `train`."""

    def __init__(self, chars: Sequence[str], merges: Sequence[tuple[str, str]]) -> None:
        self.chars = list(chars)
        self.merges = [tuple(pair) for pair in merges]
        merged = [a + b for a, b in self.merges]
        self.vocab = [*SPECIALS, *BYTES, *self.chars, *merged]
        self.ids = {token: index for index, token in enumerate(self.vocab)}
        if len(self.ids) != len(self.vocab):
            raise InputError("tokenizer: duplicate tokens in the vocabulary (corrupt file?)")
        self.ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self._cache: dict[str, list[str]] = {}

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int = 1000, min_frequency: int = 2
    ) -> SubwordTokenizer:
        """Learns characters and merges from `texts` until `vocab_size` tokens in all."""
        words = Counter(WORD_START + word for text in texts for word in normalize(text).split())
        chars = Counter()
        for word, freq in words.items():
            for char in word:
                chars[char] += freq
        char_list = sorted(chars, key=lambda c: (-chars[c], c))
        base = len(SPECIALS) + len(BYTES) + len(char_list)
        if vocab_size < base:
            raise InputError(
                f"--vocab-size: {vocab_size} is below the {base} specials, bytes and characters"
            )
        symbols = {tuple(word): freq for word, freq in words.items()}
        merges: list[tuple[str, str]] = []
        while base + len(merges) < vocab_size:
            counts = _pair_counts(symbols)
            if not counts:
                break
            pair, freq = min(counts.items(), key=lambda item: (-item[1], item[0]))
            if freq < min_frequency:
                break
            merges.append(pair)
            symbols = {_merge_word(word, pair): f for word, f in symbols.items()}
        return cls(char_list, merges)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _word_pieces(self, word: str) -> list[str]:
        """The subword strings of one "▁"-prefixed word (bytes for unknown characters)."""
        if word in self._cache:
            return self._cache[word]
        symbols: list[str] = []
        for char in word:
            if char in self.ids:
                symbols.append(char)
            else:  # byte fallback
                symbols += [BYTES[value] for value in char.encode("utf-8")]
        while len(symbols) > 1:
            pairs = [(self.ranks.get(pair, len(self.ranks)), i)
                     for i, pair in enumerate(zip(symbols, symbols[1:]))]  # fmt: skip
            rank, i = min(pairs)
            if rank == len(self.ranks):
                break
            symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
        self._cache[word] = symbols
        return symbols

    def tokenize(self, text: str) -> list[str]:
        """`text` -> subword strings (no BOS/EOS)."""
        return [piece for word in normalize(text).split() for piece in self._word_pieces(WORD_START + word)]  # fmt: skip

    def encode(self, text: str) -> list[int]:
        """`text` -> ids (no BOS/EOS); never `<unk>` thanks to the byte fallback."""
        return [self.ids[piece] for piece in self.tokenize(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """ids -> text; special tokens are skipped, byte runs are decoded as UTF-8."""
        parts: list[str] = []
        pending = bytearray()
        for index in ids:
            token = self.vocab[int(index)]
            if token in SPECIALS:
                continue
            if token.startswith("<0x") and len(token) == 6 and token in self.ids:
                pending.append(int(token[3:5], 16))
                continue
            if pending:
                parts.append(pending.decode("utf-8", errors="replace"))
                pending = bytearray()
            parts.append(token)
        if pending:
            parts.append(pending.decode("utf-8", errors="replace"))
        return normalize("".join(parts).replace(WORD_START, " "))

    def to_dict(self) -> dict:
        return {"type": "bpe", "chars": self.chars, "merges": [list(m) for m in self.merges]}

    @classmethod
    def from_dict(cls, data: dict, source: str = "tokenizer") -> SubwordTokenizer:
        if data.get("type") != "bpe" or not isinstance(data.get("merges"), list):
            raise InputError(f"{source}: not a BPE tokenizer (expected type 'bpe' and merges)")
        try:
            return cls(data["chars"], [(a, b) for a, b in data["merges"]])
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"{source}: malformed tokenizer ({error})") from error

    def save(self, path: str | os.PathLike) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> SubwordTokenizer:
        return cls.from_dict(read_json_object(path), source=str(path))
