"""Shared CNN building blocks for the vision zoo (LeNet, ResNet, MobileNetV2, EfficientNet, U-Net).

Two kinds of block live here:

- the seed's teaching blocks, kept as the seed writes them: `BasicCNNBlock` (conv-BN-ReLU twice),
  `DepthwiseSeparableConv` (the MobileNet v1 block) and `SEBlock` (squeeze-and-excitation with
  `nn.Linear` layers and a `reduction` ratio);
- the blocks the torchvision-compatible models are made of, laid out exactly as torchvision lays
  them out so that its checkpoints load with `strict=True`: `ConvNormAct` (torchvision's
  `Conv2dNormActivation`: `0` conv, `1` norm, `2` activation), `SqueezeExcitation` (1x1 convs
  `fc1` / `fc2`, as EfficientNet uses), `StochasticDepth` and `make_divisible`.

`checkpoint_sequential` runs a list of blocks under activation checkpointing; the models call it
from `forward_features` when `set_grad_checkpointing(True)` was asked for. `linear_or_identity`
builds the classifier of timm's convention (`num_classes=0`: an identity).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from nanovla.errors import InputError


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of `divisor`, never going down by more than
    10% (torchvision's / the TF MobileNet's `_make_divisible`); used by width multipliers."""
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, got {divisor}")
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:  # rounding down must not remove more than 10%
        rounded += divisor
    return rounded


class ConvNormAct(nn.Sequential):
    """Conv2d -> BatchNorm2d -> activation, indexed `0`, `1`, `2` as torchvision's
    `Conv2dNormActivation`, so that state-dict keys read `...0.weight`, `...1.running_mean`.

    The conv has no bias (BatchNorm's shift makes it redundant) and "same" padding
    `(kernel_size - 1) // 2`. `activation=None` leaves the activation out (a linear projection).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: Callable[..., nn.Module] | None = nn.ReLU,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=(kernel_size - 1) // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
        ]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation with 1x1 convs, as torchvision's `ops.SqueezeExcitation`
    (Hu et al., https://arxiv.org/abs/1709.01507): `x * sigmoid(fc2(act(fc1(avgpool(x)))))`.

    Keys `fc1.weight/bias`, `fc2.weight/bias`. Departs from the seed's `SEBlock` (below) in
    using 1x1 convs instead of `nn.Linear` and an explicit `squeeze_channels` instead of a
    `reduction` ratio, because that is how EfficientNet checkpoints store it.
    """

    def __init__(
        self,
        channels: int,
        squeeze_channels: int,
        activation: Callable[..., nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = activation(inplace=True)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.avgpool(x)  # (B, C, 1, 1)
        scale = self.fc2(self.activation(self.fc1(scale)))  # (B, C, 1, 1)
        return self.scale_activation(scale) * x  # (B, C, H, W)


class StochasticDepth(nn.Module):
    """Drop a residual branch for whole samples with probability `p` while training, and scale
    the kept ones by `1 / (1 - p)` (Huang et al., https://arxiv.org/abs/1603.09382; torchvision's
    `StochasticDepth(p, "row")`). The identity in eval mode or when `p == 0`."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"stochastic depth probability p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        keep = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
        keep.bernoulli_(survival).div_(survival)  # (B, 1, 1, 1)
        return x * keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class BasicCNNBlock(nn.Module):
    """The seed's basic block: (3x3 conv -> BN -> ReLU) twice, spatial size kept.

    As in the seed, the convs keep their bias (redundant before BatchNorm, harmless).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))  # (B, C_out, H, W)
        return F.relu(self.bn2(self.conv2(x)))  # (B, C_out, H, W)


class DepthwiseSeparableConv(nn.Module):
    """The seed's MobileNet v1 block (Howard et al., https://arxiv.org/abs/1704.04861):
    a 3x3 depthwise conv (`groups=in_channels`) -> BN -> ReLU, then a 1x1 pointwise conv -> BN ->
    ReLU. Weights: `9 * C_in + C_in * C_out` instead of a full conv's `9 * C_in * C_out`.

    Departs from the seed in dropping the conv biases (BatchNorm follows each conv, so a bias
    only adds parameters), which makes the weight count above exact.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels, bias=False
        )
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.depthwise(x)))  # (B, C_in, H/s, W/s)
        return F.relu(self.bn2(self.pointwise(x)))  # (B, C_out, H/s, W/s)


class SEBlock(nn.Module):
    """The seed's squeeze-and-excitation block: global average pool, `Linear(C, C // r)` -> ReLU
    -> `Linear(C // r, C)` -> sigmoid, then scale each channel.

    Departs from the seed in keeping at least one hidden unit (`max(1, C // r)`), so that
    `channels < reduction` does not build a zero-width layer.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        hidden = max(1, channels // reduction)
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.excitation = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        batch, channels = x.shape[:2]
        weights = self.squeeze(x).view(batch, channels)  # (B, C)
        weights = self.excitation(weights).view(batch, channels, 1, 1)  # (B, C, 1, 1)
        return x * weights  # (B, C, H, W)


def linear_or_identity(in_features: int, num_classes: int) -> nn.Module:
    """A `Linear(in_features, num_classes)` classifier, or `nn.Identity` for `num_classes == 0`
    (timm's convention: the model then returns its pooled features)."""
    if num_classes < 0:
        raise InputError(f"num_classes must be >= 0 (0: no classifier), got {num_classes}")
    return nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()


def checkpoint_sequential(blocks: Iterable[Callable[[Tensor], Tensor]], x: Tensor) -> Tensor:
    """Run `blocks` one after another, each under `torch.utils.checkpoint` (non-reentrant), so
    that only block inputs are kept for backward and the rest is recomputed.

    The seed checkpoints layers by hand; this is the same idea over a model's stages. Outputs
    and gradients equal the plain run (RNG state is replayed, so dropout and stochastic depth
    agree). BatchNorm in train mode updates its running statistics again on the recompute.
    """
    for block in blocks:
        x = checkpoint(block, x, use_reentrant=False)
    return x
