"""The English -> Korean translation model for inference: `Translator` (an `nn.Transformer` and
its BPE tokenizer, saved as config.json + model.safetensors + tokenizer.json) and
`TranslationTextEncoder`, its encoder as a frozen sentence encoder for the VLA policy
(`PolicyConfig.text = "translate:PATH"`).

Training lives in `nanovla.labs.translate` (`nanovla lab translate`); this module only loads,
translates (beam search or greedy over the decoder's KV cache, `nanovla.nn.decoding`) and encodes.

`TranslationTextEncoder` mean-pools the encoder's output over the non-padding source tokens
(the encoder is what the decoder reads through cross-attention, so it carries the instruction's
content); it is frozen, like the MiniLM encoder. A model trained with `--directions both`
(English -> Korean and Korean -> English) has an encoder that has read Korean too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from nanovla.codec import from_json
from nanovla.errors import InputError, MissingError
from nanovla.io import read_json_object, write_json
from nanovla.models.text.subword import BOS_ID, EOS_ID, PAD_ID, SubwordTokenizer
from nanovla.nn.decoding import beam_search, greedy_decode
from nanovla.nn.seq2seq import Transformer

CONFIG_NAME, WEIGHTS_NAME, TOKENIZER_NAME = "config.json", "model.safetensors", "tokenizer.json"


@dataclass
class TranslatorConfig:
    """The model's shape (saved as config.json beside the weights)."""

    vocab_size: int = 1000
    """size of the shared English + Korean BPE vocabulary"""
    d_model: int = 128
    """token width"""
    num_heads: int = 4
    """attention heads"""
    num_layers: int = 2
    """encoder layers and decoder layers (each)"""
    d_ff: int = 256
    """feed-forward hidden width"""
    dropout: float = 0.1
    """dropout on embeddings, attention, feed-forward and residuals"""
    max_len: int = 64
    """longest source or target in tokens (EOS included)"""


def build_model(config: TranslatorConfig) -> Transformer:
    """The encoder-decoder for `config` (post-norm, as the paper)."""
    return Transformer(
        config.vocab_size, config.vocab_size, d_model=config.d_model, num_heads=config.num_heads,
        num_encoder_layers=config.num_layers, num_decoder_layers=config.num_layers,
        d_ff=config.d_ff, dropout=config.dropout, max_len=config.max_len + 1,
    )  # fmt: skip


def pad_rows(rows: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Right-padded ids (B, T) and the torch-style padding mask (True = padding)."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return ids, ids == PAD_ID


class Translator:
    """A trained English -> Korean model with its tokenizer."""

    def __init__(
        self, model: Transformer, tokenizer: SubwordTokenizer, config: TranslatorConfig
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config

    def source_ids(self, sentences: Sequence[str]) -> list[list[int]]:
        """Lower-cased, BPE-encoded sources with EOS; InputError names a bad sentence."""
        if isinstance(sentences, str):
            raise InputError("sentences: pass a list of sentences, not one string")
        rows = []
        for index, sentence in enumerate(sentences):
            ids = self.tokenizer.encode(sentence.lower())
            if not ids:
                raise InputError(f"sentences[{index}]: the sentence is empty")
            if len(ids) + 1 > self.config.max_len:
                raise InputError(
                    f"sentences[{index}]: {len(ids) + 1} tokens, more than the model's "
                    f"max_len {self.config.max_len}"
                )
            rows.append(ids + [EOS_ID])
        return rows

    @torch.no_grad()
    def translate_ids(
        self, sources: Sequence[Sequence[int]], beam_size: int = 4, length_penalty: float = 0.6
    ) -> list[list[int]]:
        """Source id rows (with EOS) -> Korean id rows (without BOS/EOS)."""
        src, pad = pad_rows(sources)
        step = self.model.step_function(src, pad, use_cache=True)
        prefix = torch.full((len(sources), 1), BOS_ID, dtype=torch.long)
        if beam_size == 1:
            return greedy_decode(step, prefix, EOS_ID, self.config.max_len)
        return beam_search(step, prefix, EOS_ID, beam_size, self.config.max_len, length_penalty)

    def translate(
        self,
        sentences: Sequence[str],
        beam_size: int = 4,
        length_penalty: float = 0.6,
        batch_size: int = 64,
    ) -> list[str]:
        """English sentences -> Korean sentences (beam search; beam_size 1 = greedy)."""
        if beam_size < 1:
            raise InputError(f"--beam-size: must be >= 1, got {beam_size}")
        sources = self.source_ids(sentences)
        out = []
        for start in range(0, len(sources), batch_size):
            chunk = sources[start : start + batch_size]
            out += self.translate_ids(chunk, beam_size, length_penalty)
        return [self.tokenizer.decode(ids) for ids in out]

    def save_pretrained(self, directory: Path) -> Path:
        """config.json + model.safetensors + tokenizer.json in `directory` (each atomic)."""
        directory.mkdir(parents=True, exist_ok=True)
        state = {key: value.contiguous() for key, value in self.model.state_dict().items()}
        temporary = directory / f".{WEIGHTS_NAME}.tmp"
        save_file(state, str(temporary))
        temporary.replace(directory / WEIGHTS_NAME)
        self.tokenizer.save(directory / TOKENIZER_NAME)
        write_json(directory / CONFIG_NAME, asdict(self.config))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> Translator:
        """Loads what `save_pretrained` wrote; MissingError / InputError name the file."""
        directory = Path(directory)
        weights = directory / WEIGHTS_NAME
        if not weights.is_file():
            raise MissingError(
                f"{weights}: no translation model here; train one with "
                "`nanovla lab translate --out DIR` (the model is DIR/model)"
            )
        config = from_json(TranslatorConfig, read_json_object(directory / CONFIG_NAME),
                           source=str(directory / CONFIG_NAME))  # fmt: skip
        tokenizer = SubwordTokenizer.load(directory / TOKENIZER_NAME)
        model = build_model(config)
        try:
            model.load_state_dict(load_file(str(weights)), assign=True)  # also under meta
        except (RuntimeError, OSError) as error:
            raise InputError(f"{weights}: weights do not fit {CONFIG_NAME} ({error})") from error
        return cls(model, tokenizer, config)


class TranslationTextEncoder(nn.Module):
    """list of instruction strings -> (U, d_model): the frozen translation encoder, mean-pooled
    over each sentence's tokens. Build with `TranslationTextEncoder(path)` (a model directory)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        translator = Translator.from_pretrained(path)
        self.tokenizer = translator.tokenizer
        self.max_len = translator.config.max_len
        self.model = translator.model.requires_grad_(False).eval()
        self.out_dim: int = translator.config.d_model

    def train(self, mode: bool = True) -> TranslationTextEncoder:
        return super().train(False)  # frozen: dropout stays off

    @torch.no_grad()
    def forward(self, texts: Sequence[str]) -> Tensor:
        rows = [(self.tokenizer.encode(text.lower()) or [PAD_ID])[: self.max_len - 1] + [EOS_ID]
                for text in texts]  # fmt: skip
        device = next(self.model.parameters()).device
        src, pad = pad_rows(rows)
        src, pad = src.to(device), pad.to(device)
        memory = self.model.encode(src, pad)  # (U, S, d_model)
        keep = (~pad).unsqueeze(-1).float()
        return (memory * keep).sum(1) / keep.sum(1)  # (U, d_model)
