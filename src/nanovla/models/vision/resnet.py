"""ResNet-18/34/50 (He et al., "Deep Residual Learning for Image Recognition",
https://arxiv.org/abs/1512.03385), torchvision-compatible.

Parameter counts and `state_dict` keys and shapes equal torchvision's `resnet18` (11,689,512),
`resnet34` (21,797,672) and `resnet50` (25,557,032) at 1000 classes, and the forward pass runs
the same ops in the same order, so a torchvision checkpoint loads with `strict=True` and gives
the same outputs: `conv1`, `bn1`, `layer{1..4}.{i}.conv1/bn1/conv2/bn2(/conv3/bn3)`,
`layer{k}.0.downsample.0` (1x1 conv) / `downsample.1` (BN), `fc`.

Checked against torchvision 0.29.2's own code: from the same seed, the same initial weights and
bit-identical outputs and gradients in eval and train mode; `tests/test_cnn_golden.py` keeps
outputs recorded from torchvision.

Using a torchvision checkpoint the user has on disk (nothing is downloaded):

    model = create_model("resnet18")
    path = "resnet18-f37072fd.pth"  # torchvision's ImageNet weights, saved earlier
    model.load_state_dict(torch.load(path, weights_only=True), strict=True)
    # new classes: keep the backbone, drop the 1000-way head
    model = create_model("resnet18", num_classes=10)
    state = {k: v for k, v in torch.load(path, weights_only=True).items() if not k.startswith("fc.")}
    model.load_state_dict(state, strict=False)

Departures from the seed's `ResidualBlock` / `ResNet18`, all for torchvision compatibility:
- convs have no bias (each is followed by BatchNorm, whose shift makes a bias redundant), and
  the projection shortcut is called `downsample`, not `shortcut`;
- `Bottleneck` (ResNet-50) puts the stride on the 3x3 conv (ResNet "v1.5", as torchvision);
- convs use Kaiming-normal (fan-out) initialisation, as torchvision does;
- `in_chans` other than 3 changes only `conv1`'s input channels.

`num_classes=0` (timm's convention) makes `fc` an `nn.Identity`: the state dict is the one above
without `fc.*`, 11,176,512 parameters for ResNet-18 (torchvision's count minus its 513,000-weight
`fc`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nanovla.errors import InputError
from nanovla.models.registry import register_model
from nanovla.models.vision.layers import checkpoint_sequential, linear_or_identity


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut; ResNet-18/34."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (B, C_out, H/s, W/s)
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)  # (B, C_out, H/s, W/s)
        out += identity  # the skip connection
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride, v1.5) -> 1x1 expand by 4; ResNet-50."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (B, P, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (B, P, H/s, W/s)
        out = self.bn3(self.conv3(out))  # (B, 4P, H/s, W/s)
        identity = x if self.downsample is None else self.downsample(x)  # (B, 4P, H/s, W/s)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """ResNet: 7x7 stem + max-pool, four stages of residual blocks, global pool, linear head.

    Args:
        block: `BasicBlock` (18/34) or `Bottleneck` (50).
        layers: blocks per stage, e.g. `(2, 2, 2, 2)` for ResNet-18.
        num_classes: size of the classifier output; 0 makes `fc` an identity, so `forward`
            returns the pooled `(B, num_features)` features (timm's convention).
        in_chans: input image channels.

    `forward_features` returns the last stage's map `(B, 512 * expansion, H/32, W/32)`.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or min(layers) < 1:
            raise InputError(f"layers must be four positive block counts, got {layers}")
        if num_classes < 0 or in_chans < 1:
            raise InputError(
                f"num_classes must be >= 0 and in_chans >= 1, got {num_classes}, {in_chans}"
            )
        self.num_classes = num_classes
        self.grad_checkpointing = False
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.num_features = self.head_hidden_size = 512 * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc: nn.Module = linear_or_identity(self.num_features, num_classes)
        self._init_weights()

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        stage = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        stage += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def get_classifier(self) -> nn.Module:
        """The head: `fc` (an `nn.Identity` when `num_classes == 0`)."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace `fc` with a freshly initialised `num_classes`-way head (0: identity)."""
        self.fc = linear_or_identity(self.num_features, num_classes)
        self.num_classes = num_classes

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each residual block in backward instead of storing its activations."""
        self.grad_checkpointing = enable

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, in_chans, H, W) -> (B, num_features, H/32, W/32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        stages = (self.layer1, self.layer2, self.layer3, self.layer4)
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint_sequential([b for stage in stages for b in stage], x)
        for stage in stages:
            x = stage(x)
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """(B, C, h, w) -> pooled (B, C) if `pre_logits`, else logits (B, num_classes)."""
        x = torch.flatten(self.avgpool(x), 1)  # (B, C)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def resnet18(num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-18: BasicBlock x (2, 2, 2, 2); 11,689,512 parameters at 1000 classes."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, in_chans=in_chans)


@register_model
def resnet34(num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-34: BasicBlock x (3, 4, 6, 3); 21,797,672 parameters at 1000 classes."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes=num_classes, in_chans=in_chans)


@register_model
def resnet50(num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-50 (v1.5): Bottleneck x (3, 4, 6, 3); 25,557,032 parameters at 1000 classes."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes, in_chans=in_chans)
