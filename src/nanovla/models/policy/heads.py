"""Action heads, predicting a whole action chunk: the seed's tanh-scaled MLP, or binned logits.

`ActionChunkHead` departs from the seed's ``ActionDecoder`` (Linear 1024-512-256-7, tanh,
learnable scale):

- It predicts a chunk of k future actions at once, ``(B, k, A)`` (action chunking, as ACT).
- No learnable ``action_scale``: the policy normalises actions to [-1, 1] with the dataset's
  min/max, so tanh already spans exactly the range of the data; a free scale could push actions
  outside it.
- Configurable width/depth and dropout (default 256 x 2) instead of the fixed 512-256 funnel.

`BinnedActionHead` is the multimodal alternative (as RT-1 / RT-2 bin each action dimension): the
same MLP predicts, per step and dimension, logits over `bins` evenly spaced values in [-1, 1].
Regression averages when demonstrations disagree (a scripted expert sidestepping left on one
side of a decision boundary and right on the other teaches the mean, ~0, so the learner stalls
right on the boundary); a classifier decoded at its mode commits to one of them. Targets are
"two-hot" (DreamerV3): a value between two bin centres splits its probability between them in
proportion to closeness, so decoding the mode's neighbourhood recovers it without
quantisation error.
"""

from __future__ import annotations

import torch
from torch import nn

from nanovla.errors import InputError


def _mlp(in_dim: int, out_dim: int, hidden_dim: int, num_layers: int, dropout: float) -> nn.Module:
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(num_layers):
        layers += [nn.Linear(width, hidden_dim), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden_dim
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


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
        self.mlp = _mlp(in_dim, chunk * action_dim, hidden_dim, num_layers, dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        raw = self.mlp(features)  # (B, k * A)
        return torch.tanh(raw).view(-1, self.chunk, self.action_dim)  # (B, k, A) in [-1, 1]


class BinnedActionHead(nn.Module):
    """MLP: fused features (B, in_dim) -> logits (B, chunk, action_dim, bins) over the bin
    centres ``linspace(-1, 1, bins)``; `decode` turns logits into a chunk (B, chunk, A)."""

    def __init__(
        self,
        in_dim: int,
        chunk: int,
        action_dim: int,
        bins: int = 21,
        hidden_dim: int = 256,
        num_layers: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if bins < 2:
            raise InputError(f"bins must be >= 2, got {bins}")
        self.chunk, self.action_dim, self.bins = chunk, action_dim, bins
        self.mlp = _mlp(in_dim, chunk * action_dim * bins, hidden_dim, num_layers, dropout)
        self.register_buffer("centres", torch.linspace(-1.0, 1.0, bins), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features).view(-1, self.chunk, self.action_dim, self.bins)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (..., bins) -> values (...) in [-1, 1]: the probability-weighted mean of the most
        likely bin and its two neighbours (the mode, refined to between-bin precision; a second
        mode elsewhere never pulls it toward the middle)."""
        probs = logits.float().softmax(-1)  # (..., bins)
        best = probs.argmax(-1, keepdim=True)  # (..., 1)
        index = torch.arange(self.bins, device=logits.device)
        near = ((index - best).abs() <= 1).to(probs.dtype)  # (..., bins) window around the mode
        weights = probs * near
        return (weights * self.centres).sum(-1) / weights.sum(-1)

    def two_hot(self, target: torch.Tensor) -> torch.Tensor:
        """Values (...) in [-1, 1] -> target distributions (..., bins) on the two nearest bins."""
        position = (target.float().clamp(-1.0, 1.0) + 1.0) * (self.bins - 1) / 2.0
        low = position.floor().clamp(max=self.bins - 2)
        frac = (position - low).unsqueeze(-1)  # (..., 1) weight of the upper bin
        low = low.long().unsqueeze(-1)
        dist = torch.zeros(*target.shape, self.bins, device=target.device)
        dist.scatter_(-1, low, 1.0 - frac)
        return dist.scatter_add_(-1, low + 1, frac)
