"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
https://arxiv.org/abs/1801.04381), torchvision-compatible.

At 1000 classes and `width_mult=1.0` the model has torchvision's 3,504,872 parameters and its
`state_dict` layout, and runs the same ops in the same order, so a torchvision checkpoint loads
with `strict=True` and gives the same outputs:
- `features.0.0` / `features.0.1`: stem 3x3 conv (stride 2) / BN, then ReLU6;
- `features.{1..17}.conv.*`: inverted residuals. With expansion: `conv.0.0/0.1` 1x1 expand
  conv/BN (+ReLU6), `conv.1.0/1.1` 3x3 depthwise conv/BN (+ReLU6), `conv.2` 1x1 linear
  projection conv, `conv.3` its BN. With `expand_ratio == 1`: `conv.0.0/0.1` depthwise,
  `conv.1` projection conv, `conv.2` BN;
- `features.18.0/18.1`: 1x1 conv to 1280 channels / BN (+ReLU6);
- `classifier.0` dropout, `classifier.1` linear.

`num_classes=0` (timm's convention) makes `classifier.1` an `nn.Identity`, so `forward` returns
the pooled 1280 features (after the dropout, in train mode, as timm's `forward_head`) and the
state dict is the one above without `classifier.1.*`.

Checked against torchvision 0.29.2's own code: from the same seed, the same initial weights and
bit-identical outputs and gradients in eval and train mode; `tests/test_cnn_golden.py` keeps
outputs recorded from torchvision.

Departures from the seed's `MobileNetV2Block`: convs have no bias (BatchNorm follows each), the
hidden width is `round(in * t)` and channel counts are rounded to multiples of 8
(`make_divisible`), and Kaiming-normal / N(0, 0.01) initialisation — all as torchvision, so the
weights interchange. `in_chans` changes only the stem conv's input channels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nanovla.errors import InputError
from nanovla.models.registry import register_model
from nanovla.models.vision.layers import (
    ConvNormAct,
    checkpoint_sequential,
    linear_or_identity,
    make_divisible,
)

# (expand ratio t, output channels c, repeats n, first stride s) from Table 2 of the paper.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """Expand (1x1, ReLU6) -> depthwise 3x3 (ReLU6) -> linear 1x1 projection; the skip
    connection is used when the block keeps both stride 1 and the channel count."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(inp, hidden_dim, kernel_size=1, activation=nn.ReLU6))
        layers += [
            ConvNormAct(
                hidden_dim, hidden_dim, stride=stride, groups=hidden_dim, activation=nn.ReLU6
            ),
            nn.Conv2d(hidden_dim, oup, 1, bias=False),  # linear bottleneck: no activation
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)  # (B, C, H, W)
        return self.conv(x)  # (B, C_out, H/s, W/s)


def _init_linear(module: nn.Linear) -> None:
    nn.init.normal_(module.weight, 0, 0.01)
    nn.init.zeros_(module.bias)


class MobileNetV2(nn.Module):
    """MobileNetV2 with a width multiplier.

    Args:
        num_classes: size of the classifier output; 0 = identity head (pooled features).
        in_chans: input image channels.
        width_mult: scales every layer's channels (rounded to multiples of `round_nearest`);
            the last conv keeps at least 1280 channels.
        round_nearest: channel counts are multiples of this (1 turns rounding off).
        dropout: dropout probability before the classifier.

    `forward_features` returns `(B, num_features, H/32, W/32)` with `num_features` 1280 at
    `width_mult <= 1`.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        width_mult: float = 1.0,
        round_nearest: int = 8,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise InputError(f"width_mult must be > 0, got {width_mult}")
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {dropout}")
        if num_classes < 0 or in_chans < 1:
            raise InputError(
                f"num_classes must be >= 0 and in_chans >= 1, got {num_classes}, {in_chans}"
            )
        self.num_classes = num_classes
        self.grad_checkpointing = False
        input_channel = make_divisible(32 * width_mult, round_nearest)
        self.num_features = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        self.head_hidden_size = self.num_features
        features: list[nn.Module] = [
            ConvNormAct(in_chans, input_channel, stride=2, activation=nn.ReLU6)
        ]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            output_channel = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(
                    InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t)
                )
                input_channel = output_channel
        features.append(
            ConvNormAct(input_channel, self.num_features, kernel_size=1, activation=nn.ReLU6)
        )
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), linear_or_identity(self.num_features, num_classes)
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
        """Recompute each `features` block in backward instead of storing its activations."""
        self.grad_checkpointing = enable

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, in_chans, H, W) -> (B, num_features, H/32, W/32)."""
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint_sequential(self.features, x)
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """(B, C, h, w) -> pooled (B, C) if `pre_logits`, else logits (B, num_classes)."""
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, (1, 1)), 1)  # (B, C)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def mobilenet_v2(
    num_classes: int = 1000, in_chans: int = 3, width_mult: float = 1.0
) -> MobileNetV2:
    """MobileNetV2; 3,504,872 parameters at 1000 classes and width 1.0."""
    return MobileNetV2(num_classes=num_classes, in_chans=in_chans, width_mult=width_mult)
