"""EfficientNet-B0..B3 (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks", https://arxiv.org/abs/1905.11946), torchvision-compatible.

Compound scaling: B0's stages (Table 1 of the paper) are widened by `width_mult` (channels,
rounded to multiples of 8) and deepened by `depth_mult` (`ceil(layers * depth_mult)`), with
torchvision's coefficients: B0 1.0/1.0, B1 1.0/1.1, B2 1.1/1.2, B3 1.2/1.4 (dropout 0.2, 0.2,
0.3, 0.3). The paper also scales the input resolution (224, 240, 260, 300); that is the caller's
choice here, since the network is fully convolutional up to its global pool.

Parameter counts and `state_dict` layout equal torchvision's (B0 5,288,548; B1 7,794,184;
B2 9,109,994; B3 12,233,232 at 1000 classes), and the ops run in torchvision's order, so its
checkpoints load with `strict=True` and give the same outputs:
- `features.0.0/0.1`: stem 3x3 conv (stride 2) / BN, SiLU;
- `features.{1..7}.{j}.block.*`: MBConv blocks. With expansion: `block.0.0/0.1` 1x1 expand,
  `block.1.0/1.1` depthwise, `block.2.fc1/fc2` squeeze-excitation (1x1 convs with bias),
  `block.3.0/3.1` linear 1x1 projection. With `expand_ratio == 1` there is no expand conv and
  the indices shift down by one (`block.0` depthwise, `block.1` SE, `block.2` projection);
- `features.8.0/8.1`: 1x1 head conv to `4 * last stage channels` (1280 B0/B1, 1408 B2, 1536 B3);
- `classifier.0` dropout, `classifier.1` linear.
`num_classes=0` (timm's convention) makes `classifier.1` an `nn.Identity`, so `forward` returns
the pooled features (after the dropout, in train mode, as timm's `forward_head`) and the state
dict is the one above without `classifier.1.*`.
BatchNorm keeps torch's defaults (eps 1e-5, momentum 0.1), as torchvision's B0..B4 do (only its
B5..B7 use eps 1e-3, momentum 0.01).

Checked against torchvision 0.29.2's own code: from the same seed, the same initial weights and
bit-identical outputs and gradients in eval and train mode; `tests/test_cnn_golden.py` keeps
outputs recorded from torchvision.

Departures from the seed: its `SEBlock` uses `nn.Linear` with `channels // 16`; MBConv's SE here
uses 1x1 convs with `max(1, block_input_channels // 4)` squeeze channels and SiLU inside, as the
paper and torchvision do. `in_chans` changes only the stem conv's input channels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nanovla.errors import InputError
from nanovla.models.registry import register_model
from nanovla.models.vision.layers import (
    ConvNormAct,
    SqueezeExcitation,
    StochasticDepth,
    checkpoint_sequential,
    linear_or_identity,
    make_divisible,
)

# B0 stages: (expand ratio, kernel, first stride, input channels, output channels, layers).
B0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


def scaled_stages(
    width_mult: float, depth_mult: float
) -> list[tuple[int, int, int, int, int, int]]:
    """B0's stages after compound scaling: channels `make_divisible(c * width_mult, 8)`, layers
    `ceil(n * depth_mult)`; same tuple layout as `B0_STAGES`."""
    return [
        (t, k, s, make_divisible(c_in * width_mult, 8), make_divisible(c_out * width_mult, 8),
         int(math.ceil(n * depth_mult)))
        for t, k, s, c_in, c_out, n in B0_STAGES
    ]  # fmt: skip


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-excitation: expand 1x1 (SiLU) -> depthwise kxk
    (SiLU) -> SE -> linear 1x1 projection, plus a stochastic-depth residual when the block
    keeps stride 1 and its channel count."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: int,
        kernel_size: int,
        stride: int,
        stochastic_depth_prob: float,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.use_res_connect = stride == 1 and in_channels == out_channels
        expanded = make_divisible(in_channels * expand_ratio, 8)
        layers: list[nn.Module] = []
        if expanded != in_channels:
            layers.append(ConvNormAct(in_channels, expanded, kernel_size=1, activation=nn.SiLU))
        layers += [
            ConvNormAct(
                expanded, expanded, kernel_size, stride=stride, groups=expanded, activation=nn.SiLU
            ),
            SqueezeExcitation(expanded, max(1, in_channels // 4), activation=nn.SiLU),
            ConvNormAct(expanded, out_channels, kernel_size=1, activation=None),
        ]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)  # (B, C_out, H/s, W/s)
        if self.use_res_connect:
            out = self.stochastic_depth(out)
            out += x
        return out


def _mbconv_stages(
    stages: list[tuple[int, int, int, int, int, int]], stochastic_depth_prob: float
) -> list[nn.Sequential]:
    """One `nn.Sequential` of MBConv blocks per stage; the first block of a stage carries its
    stride and channel change, and block `i` of `N` drops with `stochastic_depth_prob * i / N`."""
    total_blocks = sum(stage[5] for stage in stages)
    block_id = 0
    sequentials = []
    for t, k, s, c_in, c_out, n in stages:
        blocks: list[nn.Module] = []
        for i in range(n):
            sd_prob = stochastic_depth_prob * block_id / total_blocks
            blocks.append(
                MBConv(c_in if i == 0 else c_out, c_out, t, k, s if i == 0 else 1, sd_prob)
            )
            block_id += 1
        sequentials.append(nn.Sequential(*blocks))
    return sequentials


def _init_linear(module: nn.Linear) -> None:
    init_range = 1.0 / math.sqrt(module.out_features)
    nn.init.uniform_(module.weight, -init_range, init_range)
    nn.init.zeros_(module.bias)


class EfficientNet(nn.Module):
    """EfficientNet (v1) built from B0's stages by compound scaling.

    Args:
        width_mult: channel multiplier (B0 1.0 ... B3 1.2).
        depth_mult: layer-count multiplier (B0 1.0 ... B3 1.4).
        dropout: dropout probability before the classifier.
        stochastic_depth_prob: drop probability of the last block; block `i` of `N` uses
            `stochastic_depth_prob * i / N` (torchvision's linear rule).
        num_classes: size of the classifier output; 0 = identity head (pooled features).
        in_chans: input image channels.

    `forward_features` returns `(B, num_features, H/32, W/32)`.
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        dropout: float = 0.2,
        stochastic_depth_prob: float = 0.2,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if width_mult <= 0 or depth_mult <= 0:
            raise InputError(
                f"width_mult and depth_mult must be > 0, got {width_mult}, {depth_mult}"
            )
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {dropout}")
        if num_classes < 0 or in_chans < 1:
            raise InputError(
                f"num_classes must be >= 0 and in_chans >= 1, got {num_classes}, {in_chans}"
            )
        self.num_classes = num_classes
        self.grad_checkpointing = False
        stages = scaled_stages(width_mult, depth_mult)
        layers: list[nn.Module] = [
            ConvNormAct(in_chans, stages[0][3], stride=2, activation=nn.SiLU)
        ]
        layers += _mbconv_stages(stages, stochastic_depth_prob)
        self.num_features = self.head_hidden_size = 4 * stages[-1][4]
        layers.append(
            ConvNormAct(stages[-1][4], self.num_features, kernel_size=1, activation=nn.SiLU)
        )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout, inplace=True), linear_or_identity(self.num_features, num_classes)
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                _init_linear(module)

    def get_classifier(self) -> nn.Module:
        """The head: `classifier[1]`, the linear layer (an `nn.Identity` at 0 classes)."""
        return self.classifier[1]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace `classifier[1]` with a new `num_classes`-way linear layer (0: identity),
        initialised as at construction; the dropout before it stays."""
        head = linear_or_identity(self.num_features, num_classes)
        if isinstance(head, nn.Linear):
            _init_linear(head)
        self.classifier[1] = head
        self.num_classes = num_classes

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each MBConv block in backward instead of storing its activations."""
        self.grad_checkpointing = enable

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, in_chans, H, W) -> (B, num_features, H/32, W/32)."""
        if not (self.grad_checkpointing and torch.is_grad_enabled()):
            return self.features(x)
        stem, *stages, head = self.features
        blocks = [block for stage in stages for block in stage]
        return head(checkpoint_sequential(blocks, stem(x)))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """(B, C, h, w) -> pooled (B, C) if `pre_logits`, else logits (B, num_classes)."""
        x = torch.flatten(self.avgpool(x), 1)  # (B, C)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _efficientnet(
    width_mult: float, depth_mult: float, dropout: float, num_classes: int, in_chans: int
) -> EfficientNet:
    return EfficientNet(width_mult, depth_mult, dropout, num_classes=num_classes, in_chans=in_chans)


@register_model
def efficientnet_b0(num_classes: int = 1000, in_chans: int = 3) -> EfficientNet:
    """EfficientNet-B0 (224 px in the paper); 5,288,548 parameters at 1000 classes."""
    return _efficientnet(1.0, 1.0, 0.2, num_classes, in_chans)


@register_model
def efficientnet_b1(num_classes: int = 1000, in_chans: int = 3) -> EfficientNet:
    """EfficientNet-B1 (240 px in the paper); 7,794,184 parameters at 1000 classes."""
    return _efficientnet(1.0, 1.1, 0.2, num_classes, in_chans)


@register_model
def efficientnet_b2(num_classes: int = 1000, in_chans: int = 3) -> EfficientNet:
    """EfficientNet-B2 (260 px in the paper); 9,109,994 parameters at 1000 classes."""
    return _efficientnet(1.1, 1.2, 0.3, num_classes, in_chans)


@register_model
def efficientnet_b3(num_classes: int = 1000, in_chans: int = 3) -> EfficientNet:
    """EfficientNet-B3 (300 px in the paper); 12,233,232 parameters at 1000 classes."""
    return _efficientnet(1.2, 1.4, 0.3, num_classes, in_chans)
