"""A YOLO-style single-stage, anchor-free detector: small CNN backbone, FPN, decoupled head.

We follow FCOS (Tian et al., "FCOS: Fully Convolutional One-Stage Object Detection", 2019,
https://arxiv.org/abs/1904.01355): every feature-map location of every pyramid level predicts
class scores, its distances (l, t, r, b) to the four sides of a box, and a centerness in (0, 1);
a box is `(x - l, y - t, x + r, y + b)` around the location's pixel centre `(x, y)`, and its
score is `sqrt(sigmoid(class) * sigmoid(centerness))`. The head is YOLOX's decoupled head
(Ge et al., 2021, https://arxiv.org/abs/2107.08430): separate convolution stacks for
classification and for box + centerness, one head per level (BatchNorm statistics differ per
level, so the heads are not shared as in FCOS with GroupNorm). Training targets and losses
(focal loss, GIoU, centerness BCE) are in `detector_loss.py`.

    backbone  stem s2 -> stage s4 -> stage s8 -> stage s16   (ConvNormAct + a residual block)
    FPN       1x1 laterals, top-down nearest upsampling + add, 3x3 smoothing -> P2, P3, P4
    head      per level: cls (convs -> C logits), reg (convs -> 4 distances, 1 centerness)

Departures: the pyramid is P2-P4 (strides 4, 8, 16), not FCOS's P3-P7, because the world's
objects are 8-23 pixels across at 128x128 (FCOS' levels are for 32-800 pixel objects in 800 px
images); distances are `softplus(x) * stride` (FCOS v2 uses `relu(x) * stride`), which keeps a
gradient for every location. The detector takes (B, 3, S, S) float images in [0, 1] at the one
side S it was built for; anything else is an InputError (letterbox other sizes first, see
`nanovla.labs.detect_infer.letterbox`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nanovla.errors import InputError
from nanovla.models.vision.layers import ConvNormAct


@dataclass
class DetectorConfig:
    """Shape of the detector (saved beside its weights)."""

    num_classes: int = 6
    """object classes (the world's DETECTION_CLASSES)"""
    img_size: int = 128
    """input side in pixels; must be a multiple of the largest stride"""
    widths: tuple[int, ...] = (16, 24, 48, 64)
    """backbone channels at strides 2, 4, 8, 16"""
    fpn_width: int = 32
    """channels of every pyramid level and of the head"""
    head_convs: int = 2
    """3x3 convolutions in each head branch"""
    strides: tuple[int, ...] = field(default=(4, 8, 16))
    """strides of the pyramid levels the head predicts on (the last len(strides) stages)"""

    def to_dict(self) -> dict:
        return asdict(self)


def _silu(inplace: bool = True) -> nn.Module:
    return nn.SiLU(inplace=inplace)


class ResidualBlock(nn.Module):
    """x + conv3x3(conv3x3(x)), both ConvNormAct with SiLU (a ResNet basic block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(channels, channels, 3, activation=_silu)
        self.conv2 = ConvNormAct(channels, channels, 3, activation=_silu)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.conv1(x))


class Backbone(nn.Module):
    """A stride-2 stem, then one stage per further width: a stride-2 ConvNormAct and a residual
    block. Returns the feature maps of every stage (strides 2, 4, 8, ...)."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = ConvNormAct(3, widths[0], 3, stride=2, activation=_silu)
        self.stages = nn.ModuleList(
            nn.Sequential(
                ConvNormAct(c_in, c_out, 3, stride=2, activation=_silu), ResidualBlock(c_out)
            )
            for c_in, c_out in zip(widths[:-1], widths[1:])
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        features = [self.stem(x)]
        for stage in self.stages:
            features.append(stage(features[-1]))
        return features


class FPN(nn.Module):
    """Feature Pyramid Network (Lin et al., 2017, https://arxiv.org/abs/1612.03144): 1x1
    laterals to `width` channels, a top-down pathway (nearest 2x upsampling + add) and a 3x3
    smoothing conv per level."""

    def __init__(self, in_channels: tuple[int, ...], width: int) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(
            ConvNormAct(c, width, 1, activation=None) for c in in_channels
        )
        self.smooth = nn.ModuleList(
            ConvNormAct(width, width, 3, activation=_silu) for _ in in_channels
        )

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        laterals = [lateral(x) for lateral, x in zip(self.laterals, features)]
        merged = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):
            merged.insert(0, lateral + F.interpolate(merged[0], scale_factor=2.0, mode="nearest"))
        return [smooth(x) for smooth, x in zip(self.smooth, merged)]


class DecoupledHead(nn.Module):
    """One level's head: a classification branch and a regression branch (YOLOX)."""

    def __init__(self, width: int, num_classes: int, convs: int) -> None:
        super().__init__()

        def branch() -> nn.Sequential:
            return nn.Sequential(
                *(ConvNormAct(width, width, 3, activation=_silu) for _ in range(convs))
            )

        self.cls_branch, self.reg_branch = branch(), branch()
        self.cls_out = nn.Conv2d(width, num_classes, 1)
        self.box_out = nn.Conv2d(width, 4, 1)
        self.ctr_out = nn.Conv2d(width, 1, 1)
        prior = 0.01  # RetinaNet / FCOS: start every location at p = 0.01 for every class
        nn.init.constant_(self.cls_out.bias, -float(torch.log(torch.tensor((1 - prior) / prior))))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        cls_features, reg_features = self.cls_branch(x), self.reg_branch(x)
        return self.cls_out(cls_features), self.box_out(reg_features), self.ctr_out(reg_features)


def grid_points(img_size: int, strides: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """Pixel centres of every level's locations, row-major per level and levels in order:
    points (P, 2) as (x, y), their stride (P,) and their level index (P,)."""
    points, point_strides, levels = [], [], []
    for level, stride in enumerate(strides):
        cells = img_size // stride
        centres = (torch.arange(cells, dtype=torch.float32) + 0.5) * stride
        y, x = torch.meshgrid(centres, centres, indexing="ij")
        points.append(torch.stack([x.reshape(-1), y.reshape(-1)], dim=1))
        point_strides.append(torch.full((cells * cells,), float(stride)))
        levels.append(torch.full((cells * cells,), level, dtype=torch.long))
    return torch.cat(points), torch.cat(point_strides), torch.cat(levels)


class Detector(nn.Module):
    """Backbone + FPN + per-level decoupled heads. `forward_raw` gives what the loss needs;
    `forward` gives decoded boxes and scores (what is exported to ONNX)."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DetectorConfig()
        levels = len(config.strides)
        if levels > len(config.widths) - 1:
            raise InputError(f"strides: {levels} levels need at least {levels + 1} widths")
        expected = tuple(2 ** (i + 1) for i in range(len(config.widths)))[-levels:]
        if tuple(config.strides) != expected:
            raise InputError(f"strides: with {len(config.widths)} widths they are {expected}")
        if config.img_size % max(config.strides):
            raise InputError(f"img_size: {config.img_size} is not a multiple of {max(expected)}")
        self.backbone = Backbone(tuple(config.widths))
        self.fpn = FPN(tuple(config.widths[-levels:]), config.fpn_width)
        self.heads = nn.ModuleList(
            DecoupledHead(config.fpn_width, config.num_classes, config.head_convs)
            for _ in config.strides
        )
        points, strides, level = grid_points(config.img_size, tuple(config.strides))
        self.register_buffer("points", points, persistent=False)
        self.register_buffer("point_strides", strides, persistent=False)
        self.register_buffer("point_levels", level, persistent=False)

    def check_input(self, images: Tensor) -> None:
        """InputError unless `images` is (B, 3, S, S) for this detector's S."""
        size = self.config.img_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise InputError(
                f"image batch of shape {tuple(images.shape)}: this detector takes (B, 3, {size}, "
                f"{size}); letterbox other sizes to {size}x{size} first"
            )

    def forward_raw(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, 3, S, S) -> class logits (B, P, C), distances l t r b in pixels (B, P, 4) and
        centerness logits (B, P) over all P locations of all levels."""
        self.check_input(images)
        pyramid = self.fpn(self.backbone(images)[-len(self.heads) :])
        cls, box, ctr = [], [], []
        for head, features, stride in zip(self.heads, pyramid, self.config.strides):
            c, b, t = head(features)
            cls.append(c.flatten(2).transpose(1, 2))
            box.append(F.softplus(b.flatten(2).transpose(1, 2)) * stride)
            ctr.append(t.flatten(1))
        return torch.cat(cls, 1), torch.cat(box, 1), torch.cat(ctr, 1)

    def decode(self, distances: Tensor) -> Tensor:
        """(B, P, 4) distances -> (B, P, 4) pixel boxes (x0, y0, x1, y1)."""
        return torch.cat([self.points - distances[..., :2], self.points + distances[..., 2:]], -1)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, S, S) in [0, 1] -> boxes (B, P, 4) in pixels and scores (B, P, C) in [0, 1]."""
        cls, distances, ctr = self.forward_raw(images)
        scores = torch.sqrt(torch.sigmoid(cls) * torch.sigmoid(ctr)[..., None])
        return self.decode(distances), scores


def build_detector(**kwargs: object) -> Detector:
    """A Detector from DetectorConfig fields given as keywords."""
    return Detector(DetectorConfig(**kwargs))  # type: ignore[arg-type]
