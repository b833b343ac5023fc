"""Positional encodings: attention is blind to order, so position is added to each token.

    PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))

Departure from the seed: an odd `d_model` works (the seed's `pe[:, 1::2] = cos(...)` has one column
fewer than its `div_term` there and fails), and a sequence longer than `max_len` is a clear
ValueError instead of a silent shape mismatch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_table(max_len: int, d_model: int) -> Tensor:
    """(max_len, d_model) table of the formula above."""
    if max_len < 1 or d_model < 1:
        raise ValueError(f"max_len and d_model must be >= 1, got {max_len} and {d_model}")
    position = torch.arange(max_len, dtype=torch.float32)[:, None]  # (T, 1)
    # 1 / 10000^(2i / d_model), computed in log space for precision.
    div_term = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model)
    )  # (ceil(D / 2),)
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term[: d_model // 2])
    return table


def _check_length(x: Tensor, max_len: int, d_model: int) -> None:
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(f"expected input (B, T, {d_model}), got {tuple(x.shape)}")
    if x.shape[1] > max_len:
        raise ValueError(f"sequence length {x.shape[1]} exceeds max_len={max_len}")


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table (buffer `pe`, (1, max_len, d_model)) to (B, T, d_model)."""

    def __init__(self, d_model: int, max_len: int = 5000) -> None:
        super().__init__()
        self.d_model = d_model
        self.max_len = max_len
        # Not persistent: it is a function of (max_len, d_model), so checkpoints need not carry it.
        self.register_buffer("pe", sinusoidal_table(max_len, d_model)[None], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, d_model) -> x + PE[:T]."""
        _check_length(x, self.max_len, self.d_model)
        return x + self.pe[:, : x.shape[1]].to(x.dtype)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"


class LearnedPositionalEmbedding(nn.Module):
    """Adds a learned vector per position (parameter `weight`, (max_len, d_model)), as BERT/GPT."""

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        if max_len < 1 or d_model < 1:
            raise ValueError(f"max_len and d_model must be >= 1, got {max_len} and {d_model}")
        self.max_len = max_len
        self.d_model = d_model
        self.weight = nn.Parameter(torch.empty(max_len, d_model))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, d_model) -> x + weight[:T]."""
        _check_length(x, self.max_len, self.d_model)
        return x + self.weight[: x.shape[1]]

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, d_model={self.d_model}"
