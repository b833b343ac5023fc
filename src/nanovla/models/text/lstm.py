"""The seed's language encoder: token embedding -> LSTM -> final hidden state -> Linear.

Departures from the seed's ``LanguageEncoder`` (vocab 10000, embed 256, hidden 512, out 512):

- Sized for a few hundred instruction templates: embed 64, hidden 128, out 128 by default.
- Padding is handled: the seed reads ``hidden`` after the whole padded sequence, so a short
  instruction's vector depends on how many ``<pad>`` tokens follow it. Here the LSTM runs over the
  padded batch and we gather each row's output at its last real token (``lengths - 1``). For a
  unidirectional LSTM this is exactly the final hidden state that `pack_padded_sequence` would
  give (the test checks it), without the packing/sorting overhead on small CPU batches.
"""

from __future__ import annotations

import torch
from torch import nn


class LSTMTextEncoder(nn.Module):
    """Instruction ids ``(B, T)`` + lengths ``(B,)`` -> sentence vector ``(B, out_dim)``."""

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 64,
        hidden_dim: int = 128,
        out_dim: int = 128,
        num_layers: int = 1,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"LSTMTextEncoder vocab_size must be >= 2, got {vocab_size}")
        self.out_dim = out_dim
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers=num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_dim, out_dim)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """`tokens` (B, T) long, right-padded; `lengths` (B,) long (None = no padding)."""
        embedded = self.embedding(tokens)  # (B, T, E)
        outputs, _ = self.lstm(embedded)  # (B, T, H): top layer's hidden state at every step
        if lengths is None:
            last = outputs[:, -1]  # (B, H)
        else:
            rows = torch.arange(tokens.shape[0], device=tokens.device)
            last = outputs[rows, lengths.to(tokens.device) - 1]  # (B, H) at each row's last token
        return self.fc(last)  # (B, out_dim)
