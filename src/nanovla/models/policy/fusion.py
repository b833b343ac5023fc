"""Vision-language fusion, chosen by name: "concat" (the seed's SimpleVLA) or "film".

Both read the vision token grid ``(B, C, h, w)`` and return one vector per sample for the head.
The grid is read out by `GridReadout` (config.readout: spatial-softmax keypoints, the flattened
grid, or text-query attention over the cells), never by global average pooling alone, so the
head knows *where* things are.

- `ConcatFusion`: readout(grid) ++ text ++ state. The seed's SimpleVLA concatenates pooled
  vision with language; vision then cannot know *which* object the instruction names, and the
  head must untangle "all objects' positions" x "the instruction" on its own.
- `FiLMFusion` (Perez et al. 2018, https://arxiv.org/abs/1709.07871): the text vector produces a
  per-channel scale gamma and shift beta for residual conv blocks on the grid,
  ``x + ReLU(gamma * BN(conv(x)) + beta)``, so the channels light up where *the named* object
  is before the spatial softmax reads its position. gamma = 1 + delta with delta, beta from a
  near-zero-initialised Linear: training starts close to plain (unconditioned) conv blocks, but
  not exactly at zero, which would block the text encoder's gradient on the first step.
  With ``film_state`` the proprioceptive state (holding or not) joins the text in producing
  gamma and beta.
"""

from __future__ import annotations

import torch
from torch import nn

from nanovla.errors import InputError
from nanovla.models.policy.configuration_policy import READOUTS, PolicyConfig
from nanovla.models.vision.vla_cnn import SpatialSoftmax


class GridReadout(nn.Module):
    """Token grid (B, C, h, w) -> one vector per sample that still says *where* things are.

    "keypoints": expected (x, y) of each channel's spatial softmax + its mean activation
    -> (B, 3C). "flatten": a 1x1 conv down to `flat_channels`, ReLU, flattened -> (B, r*h*w)
    (as DQN reads its last conv map; more parameters, positions are read directly).
    "attention": the instruction asks where: per head, a text query attends over the h*w cells
    (softmax(q . k / sqrt(d))) and returns the attended (x, y) and features -> (B, heads*(2+C)),
    a pointer to "the object it names" that is the same at every position of the table.
    """

    def __init__(
        self,
        grid_shape: tuple[int, int, int],
        kind: str,
        flat_channels: int = 8,
        text_dim: int = 0,
        heads: int = 4,
        key_dim: int = 16,
    ) -> None:
        super().__init__()
        channels, height, width = grid_shape
        if kind == "attention":
            self.heads, self.key_dim = heads, key_dim
            self.keys = nn.Conv2d(channels, heads * key_dim, 1)
            self.query = nn.Linear(text_dim, heads * key_dim)
            self.out_dim = heads * (2 + channels)
        elif kind == "keypoints":
            self.keypoints = SpatialSoftmax()
            self.out_dim = 3 * channels
        elif kind == "flatten":
            self.reduce = nn.Sequential(nn.Conv2d(channels, flat_channels, 1), nn.ReLU())
            self.out_dim = flat_channels * height * width
        else:
            raise InputError(f"readout must be one of {READOUTS}, got {kind!r}")
        self.kind = kind

    def forward(self, grid: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """grid (B, C, h, w), text (B, Dt) (used by "attention" only) -> (B, out_dim)."""
        if self.kind == "attention":
            return self._attend(grid, text)
        if self.kind == "flatten":
            return self.reduce(grid).flatten(1)  # (B, r*h*w)
        keypoints = self.keypoints(grid).flatten(1)  # (B, 2C)
        return torch.cat([keypoints, grid.mean(dim=(2, 3))], dim=1)  # (B, 3C)

    def _attend(self, grid: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = grid.shape
        keys = self.keys(grid).reshape(batch, self.heads, self.key_dim, height * width)
        query = self.query(text).view(batch, self.heads, 1, self.key_dim)  # (B, H, 1, d)
        logits = (query @ keys).squeeze(2) / self.key_dim**0.5  # (B, H, hw)
        attention = torch.softmax(logits, dim=-1)  # (B, H, hw)
        coords = SpatialSoftmax.coordinates(height, width, grid)  # (hw, 2)
        where = attention @ coords  # (B, H, 2)
        what = attention @ grid.reshape(batch, channels, height * width).transpose(1, 2)  # (B,H,C)
        return torch.cat([where.flatten(1), what.flatten(1)], dim=1)  # (B, H * (2 + C))


class ConcatFusion(nn.Module):
    """readout(grid) ++ text ++ state -> (B, readout + text_dim + state_dim)."""

    def __init__(self, readout: GridReadout, text_dim: int, state_dim: int) -> None:
        super().__init__()
        self.readout = readout
        self.out_dim = readout.out_dim + text_dim + state_dim

    def forward(self, grid: torch.Tensor, text: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.readout(grid, text), text, state], dim=1)


class FiLMBlock(nn.Module):
    """Residual FiLM block: x + ReLU(gamma * BN(conv3x3(x)) + beta), gamma/beta per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(channels, affine=False)  # FiLM provides the affine part
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """x (B, C, h, w); gamma, beta (B, C)."""
        y = self.norm(self.conv(x))  # (B, C, h, w)
        y = y * gamma[:, :, None, None] + beta[:, :, None, None]
        return x + self.act(y)


class FiLMFusion(nn.Module):
    """Instruction-conditioned conv blocks on the grid, then readout ++ state -> (B, R + D)."""

    def __init__(
        self,
        readout: GridReadout,
        channels: int,
        text_dim: int,
        state_dim: int,
        num_blocks: int,
        film_state: bool = False,
    ) -> None:
        super().__init__()
        if num_blocks < 1:
            raise InputError(f"fusion='film' needs film_blocks >= 1, got {num_blocks}")
        self.blocks = nn.ModuleList(FiLMBlock(channels) for _ in range(num_blocks))
        self.film_state = film_state and state_dim > 0
        film_in = text_dim + (state_dim if self.film_state else 0)
        self.film = nn.Linear(film_in, 2 * channels * num_blocks)  # text (++ state) -> all params
        nn.init.normal_(self.film.weight, std=1e-2)
        nn.init.zeros_(self.film.bias)
        self.readout = readout
        self.out_dim = readout.out_dim + state_dim

    def forward(self, grid: torch.Tensor, text: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """grid (B, C, h, w), text (B, Dt), state (B, D) -> (B, R + D)."""
        condition = torch.cat([text, state.to(text.dtype)], dim=1) if self.film_state else text
        params = self.film(condition).view(text.shape[0], len(self.blocks), 2, -1)  # (B,n,2,C)
        for i, block in enumerate(self.blocks):
            grid = block(grid, 1.0 + params[:, i, 0], params[:, i, 1])
        return torch.cat([self.readout(grid, text), state], dim=1)


def build_fusion(
    config: PolicyConfig, grid_shape: tuple[int, int, int], text_dim: int, state_dim: int
) -> FiLMFusion | ConcatFusion:
    """The fusion module `config.fusion` ("film" | "concat") with its `config.readout`."""
    readout = GridReadout(
        grid_shape, config.readout, config.readout_channels, text_dim, config.attention_heads
    )
    if config.fusion == "film":
        return FiLMFusion(
            readout, grid_shape[0], text_dim, state_dim, config.film_blocks, config.film_state
        )
    if config.fusion == "concat":
        return ConcatFusion(readout, text_dim, state_dim)
    raise InputError(f"fusion must be one of ('film', 'concat'), got {config.fusion!r}")
