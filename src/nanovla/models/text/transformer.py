"""A small Transformer text encoder for instructions: tokens (B, T) -> sentence vector (B, out_dim).

    token embedding * sqrt(d_model) + positional encoding
    -> pre-norm TransformerEncoder (padding masked out of attention)
    -> masked mean over the real tokens -> Linear(d_model, out_dim)

The LSTM encoder (`lstm.py`) reads a sentence left to right; this one lets every word look at
every other word, which is what "the red box in the blue bowl" needs to bind colours to objects.
Same face as `LSTMTextEncoder`: `forward(tokens, lengths)` and an `out_dim` attribute, so the VLA
policy can swap one for the other by name.

Departure from BERT-style encoders: no [CLS] token; masked mean pooling needs no extra token and
is robust for short instructions. Padding never changes the result: padded keys are masked out of
attention and padded positions out of the mean.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nanovla.nn.masks import lengths_to_padding_mask
from nanovla.nn.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding
from nanovla.nn.transformer import TransformerEncoder

_POSITIONAL = ("sinusoidal", "learned")


class TransformerTextEncoder(nn.Module):
    """Transformer sentence encoder.

    Args:
        vocab_size: tokenizer vocabulary size (ids in [0, vocab_size)).
        d_model: token width. num_heads: attention heads. num_layers: encoder layers.
        d_ff: feed-forward hidden width.
        max_len: longest token sequence accepted (128 = the `Tokenizer`'s default max_length,
            so char-level instructions fit).
        out_dim: size of the sentence vector; None = d_model (no output projection).
        pad_id: the padding token id (its embedding stays zero and it is never attended to).
        dropout: dropout inside the encoder layers.
        positional: "sinusoidal" (fixed, the paper) or "learned" (one vector per position).
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 128,
        num_heads: int = 4,
        num_layers: int = 2,
        d_ff: int = 256,
        max_len: int = 128,
        out_dim: int | None = None,
        pad_id: int = 0,
        dropout: float = 0.0,
        positional: str = "sinusoidal",
    ) -> None:
        super().__init__()
        if vocab_size < 2 or not 0 <= pad_id < vocab_size:
            raise ValueError(
                f"need vocab_size >= 2 and 0 <= pad_id < vocab_size, got {vocab_size}, {pad_id}"
            )
        if positional not in _POSITIONAL:
            raise ValueError(f"positional must be one of {_POSITIONAL}, got {positional!r}")
        self.d_model = d_model
        self.max_len = max_len
        self.pad_id = pad_id
        self.out_dim = d_model if out_dim is None else out_dim
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        if positional == "sinusoidal":
            self.pos_encoding: nn.Module = SinusoidalPositionalEncoding(d_model, max_len)
        else:
            self.pos_encoding = LearnedPositionalEmbedding(max_len, d_model)
        self.encoder = TransformerEncoder(
            num_layers, d_model, num_heads, d_ff, dropout, activation="gelu", norm_first=True
        )
        self.proj = nn.Identity() if out_dim is None else nn.Linear(d_model, out_dim)

    def _padding_mask(
        self, tokens: Tensor, lengths: Tensor | None, padding_mask: Tensor | None
    ) -> Tensor:
        """(B, T) bool, True = padding, from whichever of the three sources was given."""
        if lengths is not None and padding_mask is not None:
            raise ValueError("give lengths or padding_mask, not both")
        if lengths is not None:
            return lengths_to_padding_mask(lengths.to(tokens.device), tokens.shape[1])
        if padding_mask is not None:
            if padding_mask.shape != tokens.shape or padding_mask.dtype != torch.bool:
                raise ValueError(
                    f"padding_mask must be bool {tuple(tokens.shape)} (True = padding), got "
                    f"{padding_mask.dtype} {tuple(padding_mask.shape)}"
                )
            padding = padding_mask
        else:
            padding = tokens == self.pad_id
        if bool(padding.all(dim=1).any()):
            raise ValueError("every sequence needs at least one non-padding token")
        return padding

    def forward(
        self,
        tokens: Tensor,
        lengths: Tensor | None = None,
        padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Encode right-padded token ids into one vector per sequence.

        Args:
            tokens: (B, T) int64 ids.
            lengths: (B,) number of real tokens per row (as `LSTMTextEncoder` takes), or
            padding_mask: (B, T) bool, True = padding. With neither, tokens equal to `pad_id` are
                padding.

        Returns:
            (B, out_dim) sentence vectors.
        """
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(
                f"tokens must be (B, T) int64, got {tokens.dtype} {tuple(tokens.shape)}"
            )
        padding = self._padding_mask(tokens, lengths, padding_mask)  # (B, T)
        x = self.embedding(tokens) * math.sqrt(self.d_model)  # (B, T, D)
        x = self.encoder(self.pos_encoding(x), key_padding_mask=padding)  # (B, T, D)
        valid = (~padding).unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        pooled = (x * valid).sum(dim=1) / valid.sum(dim=1)  # (B, D): mean over real tokens
        return self.proj(pooled)  # (B, out_dim)
