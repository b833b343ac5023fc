"""The VLA policy's small fast CNN: the seed's VisionEncoder shape, sized for 64x64 on 2 cores.

The seed's ``VisionEncoder`` (conv 7x7/2 -> pool -> conv -> pool -> conv -> global average
pool -> Linear) is built for 224x224 and ends in ``AdaptiveAvgPool2d(1)``. Departures:

- **Where things are is kept.** Global average pooling answers "is there a blue ball?" but
  throws away *where* it is, and a policy must move the gripper to it. `forward_features`
  returns the spatial token grid ``(B, C, h, w)`` (stride 4 x 2 per further width: 8x8 for
  64x64 images at the default widths, 16x16 with one width as the default `nanovla train`
  policy) untouched, and the
  head reads it with a `SpatialSoftmax`: every channel becomes the expected (x, y) of its
  activation (a "keypoint", Levine et al. 2016, https://arxiv.org/abs/1504.00702) plus its mean
  strength. The VLA policy conditions the grid on the instruction (FiLM) before this readout.
- A 4x4 stride-4 "patchify" stem (as ConvNeXt / ViT) instead of the 7x7 stride-2 conv + max
  pool: on 2 CPU cores the full-resolution 32x32 maps of a stride-2 stem dominate the time of
  a forward+backward pass, and a 64x64 image carries little detail below 4 px. Then stride-2
  3x3 convolutions instead of max pooling (a strided conv can still encode the sub-cell
  position that max pooling discards), BatchNorm + ReLU after each, 32 channels
  (`sum(p.numel() for p in create_model("vla_cnn", num_classes=0).parameters())` counts them).
- timm's face: `num_features` is the grid's channel count, `head_hidden_size` the pooled width
  (3C with the spatial softmax, C with `global_pool=""`); `num_classes=0` makes `head` an
  identity, `reset_classifier` / `get_classifier` replace and return it, and
  `set_grad_checkpointing(True)` recomputes each conv block in backward.
- channels-last memory format is optional (`channels_last=True` converts inputs and weights);
  `benchmarks/policy_latency.py` measures whether it helps on the machine at hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nanovla.errors import InputError
from nanovla.models.registry import register_model
from nanovla.models.vision.layers import checkpoint_sequential, linear_or_identity


class SpatialSoftmax(nn.Module):
    """Feature map ``(B, C, H, W)`` -> per-channel expected coordinates ``(B, C, 2)`` in [-1, 1].

    softmax over the H*W positions of each channel (with a learnable temperature) gives a
    spatial distribution; its mean position (x, y) is a differentiable "where is it" readout.
    """

    def __init__(self, learnable_temperature: bool = True) -> None:
        super().__init__()
        self.log_temperature = nn.Parameter(torch.zeros(()), requires_grad=learnable_temperature)
        self._grids: dict[tuple, torch.Tensor] = {}  # (h, w, device, dtype) -> (HW, 2) positions

    def _grid(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        key = (height, width, like.device, like.dtype)
        if key not in self._grids:
            # Cached, so it must not be an inference tensor (select_action) that a later
            # training step would refuse to save for backward.
            with torch.inference_mode(False):
                self._grids[key] = self.coordinates(height, width, like)
        return self._grids[key]

    @staticmethod
    def coordinates(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """(h*w, 2) cell-centre (x, y) in [-1, 1], row-major, on `like`'s device and dtype."""
        ys = torch.linspace(-1.0, 1.0, height, device=like.device, dtype=like.dtype)
        xs = torch.linspace(-1.0, 1.0, width, device=like.device, dtype=like.dtype)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (h, w, 2): (x, y)
        return grid.reshape(height * width, 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = features.shape
        logits = features.reshape(batch, channels, height * width) / self.log_temperature.exp()
        attention = F.softmax(logits, dim=-1)  # (B, C, HW)
        return attention @ self._grid(height, width, features)  # (B, C, 2): expected (x, y)


def _check_global_pool(global_pool: str) -> None:
    if global_pool not in ("spatial_softmax", ""):
        raise InputError(
            f"vla_cnn global_pool must be 'spatial_softmax' or '', got {global_pool!r}"
        )


def conv_bn_relu(
    in_chans: int, out_chans: int, kernel_size: int, stride: int, padding: int | None = None
) -> nn.Sequential:
    """Conv (no bias: BatchNorm follows) -> BatchNorm -> ReLU; 'same' padding by default."""
    padding = kernel_size // 2 if padding is None else padding
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, kernel_size, stride, padding, bias=False),
        nn.BatchNorm2d(out_chans),
        nn.ReLU(inplace=True),
    )


class KeypointReadout(nn.Module):
    """The head shared by the grid CNNs (vla_cnn, two_stream_cnn): a grid ``(B, C, h, w)`` ->
    keypoints + mean activation per channel ``(B, 3C)`` -> `head`, with timm's face. A subclass
    sets `num_features` (C), `num_classes`, then calls `_set_pool` and builds `head`, and
    defines `forward_features`."""

    num_features: int
    num_classes: int

    def _set_pool(self, global_pool: str) -> None:
        # As timm: global_pool="" with num_classes=0 leaves the grid unpooled and adds no
        # parameters (the VLA policy reads the grid itself, after FiLM).
        _check_global_pool(global_pool)
        self.pool = SpatialSoftmax() if global_pool else None
        # Head input: (x, y) keypoint + mean activation per channel.
        self.head_hidden_size = 3 * self.num_features if global_pool else self.num_features

    def get_classifier(self) -> nn.Module:
        """The head: `head` (an `nn.Identity` when `num_classes == 0`)."""
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace `head` with a fresh `num_classes`-way layer (0: identity); `global_pool`
        ("spatial_softmax" or "") also rebuilds the pooling (a new SpatialSoftmax, or none)."""
        if global_pool is not None:
            self._set_pool(global_pool)
        self.head = linear_or_identity(self.head_hidden_size, num_classes)
        self.num_classes = num_classes

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Grid (B, C, h, w) -> keypoints + mean activations (B, 3C) -> logits (B, classes).

        With global_pool="" the grid is only averaged when a classifier follows, and returned
        as is for pre_logits / num_classes=0."""
        if self.pool is None:
            if pre_logits or not self.num_classes:
                return features
            return self.head(features.mean(dim=(2, 3)))
        keypoints = self.pool(features).flatten(1)  # (B, 2C)
        pooled = torch.cat([keypoints, features.mean(dim=(2, 3))], dim=1)  # (B, 3C)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class VLACNN(KeypointReadout):
    """Small conv stack: ``(B, in_chans, H, W)`` -> token grid ``(B, widths[-1], H/8, W/8)``.

    Stem 4x4 stride 4, then one 3x3 stride-2 conv per further width, then `extra_blocks` 3x3
    stride-1 convs at the last width. With the defaults (widths (32, 32), one extra block) a
    64x64 image gives an 8x8 grid of 32 channels.

    `global_pool` is "spatial_softmax" (keypoints + mean activation per channel) or "" (no
    pooling parameters; with `num_classes=0` `forward` returns the grid, as timm does, and with
    classes the head reads the grid's channel means). `num_classes=0` gives an identity head.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        widths: Sequence[int] = (32, 32),
        extra_blocks: int = 1,
        channels_last: bool = False,
        global_pool: str = "spatial_softmax",
        stem_stride: int = 4,
    ) -> None:
        super().__init__()
        if len(widths) < 1 or min(widths) < 1:
            raise InputError(f"vla_cnn widths must be a non-empty list of positive ints: {widths}")
        self.num_classes = num_classes
        self.num_features = widths[-1]
        self.channels_last = channels_last
        self.grad_checkpointing = False
        _check_global_pool(global_pool)
        if extra_blocks < 0:
            raise InputError(f"vla_cnn extra_blocks must be >= 0, got {extra_blocks}")
        if stem_stride < 1:
            raise InputError(f"vla_cnn stem_stride must be >= 1, got {stem_stride}")
        if in_chans < 1:
            raise InputError(f"vla_cnn in_chans must be >= 1, got {in_chans}")
        layers = [conv_bn_relu(in_chans, widths[0], stem_stride, stem_stride, padding=0)]
        layers += [conv_bn_relu(a, b, 3, 2) for a, b in zip(widths[:-1], widths[1:])]
        layers += [conv_bn_relu(widths[-1], widths[-1], 3, 1) for _ in range(extra_blocks)]
        self.stem_and_stages = nn.Sequential(*layers)
        self.reduction = stem_stride * 2 ** (len(widths) - 1)
        self._set_pool(global_pool)
        self.head = linear_or_identity(self.head_hidden_size, num_classes)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each conv block in backward instead of storing its activations."""
        self.grad_checkpointing = enable

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, C, H/r, W/r), r = stem_stride * 2 ** (len(widths) - 1)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint_sequential(self.stem_and_stages, x)
        return self.stem_and_stages(x)


@register_model
def vla_cnn(
    num_classes: int = 1000,
    in_chans: int = 3,
    widths: Sequence[int] = (32, 32),
    extra_blocks: int = 1,
    channels_last: bool = False,
    global_pool: str = "spatial_softmax",
    stem_stride: int = 4,
) -> VLACNN:
    """The default VLA vision encoder: widths (32, 32) + 1 extra block, 8x8 grid for 64x64."""
    return VLACNN(
        num_classes=num_classes,
        in_chans=in_chans,
        widths=widths,
        extra_blocks=extra_blocks,
        channels_last=channels_last,
        global_pool=global_pool,
        stem_stride=stem_stride,
    )
