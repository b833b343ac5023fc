"""Action heads: the seed's tanh-scaled MLP ActionDecoder, predicting a whole action chunk.

Departures from the seed's ``ActionDecoder`` (Linear 1024-512-256-7, tanh, learnable scale):

- It predicts a chunk of k future actions at once, ``(B, k, A)`` (action chunking, as ACT).
- No learnable ``action_scale``: the policy normalises actions to [-1, 1] with the dataset's
  min/max, so tanh already spans exactly the range of the data; a free scale could push actions
  outside it.
- Configurable width/depth and dropout (default 256 x 2) instead of the fixed 512-256 funnel.
"""

from __future__ import annotations

import torch
from torch import nn


class ActionChunkHead(nn.Module):
    """MLP + tanh: fused features (B, in_dim) -> normalised action chunk (B, chunk, action_dim)."""

    def __init__(
        self,
        in_dim: int,
        chunk: int,
        action_dim: int,
        hidden_dim: int = 256,
        num_layers: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.chunk, self.action_dim = chunk, action_dim
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_dim), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden_dim
        layers.append(nn.Linear(width, chunk * action_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        raw = self.mlp(features)  # (B, k * A)
        return torch.tanh(raw).view(-1, self.chunk, self.action_dim)  # (B, k, A) in [-1, 1]
