"""A two-stream CNN whose shape stream cannot see hue: kind generalises to unseen colours.

Why: in the world's caption training images every green object is a box and every purple
one a ball. CLIP with the one-stream `vla_cnn` tower reads every green ball (a combination
it never saw) as a box: its first 4x4 filters see R, G and B, so each shape detector it
learns is a detector of a shape *in a colour*, and a linear probe fitted on the training
combinations reads green balls at 0.000 (`benchmarks/clip_probe.py`). Nothing in the
batches changed that (README, "lab clip"). This model changes the architecture instead,
as colour-constant and colour-equivariant CNNs do (e.g. Lengyel & van Gemert 2021,
arXiv:2103.13416, which builds hue equivariance into the filters):

    x (B, 3, H, W)
      shape stream:  chroma c = |x - mean over channels x|   (distance from the grey axis;
                     unchanged by any rotation of colours about the grey axis)
                     c / (local max of c over a 9x9 window + eps)   (so a dull and a vivid
                     object give the same map: the level of chroma says no colour either)
                     -> `VLACNN(in_chans=1, widths, extra_blocks)` -> (B, C, h, w)
      colour stream: average over each r x r cell (r = the shape stream's reduction)
                     -> 1x1 conv -> BatchNorm -> ReLU -> (B, colour_width, h, w)
      grid = concat -> (B, C + colour_width, h, w) -> keypoints + channel means (as vla_cnn)
      fused (`fuse_width` > 0, `two_stream_fused_cnn`): a 1x1 conv over the concatenated grid
                     adds `fuse_width` channels that bind a colour to the shape at the same
                     place ("the red one is the box"), pooled beside the two streams

The colour stream has no spatial filter, so it says which colours are where and nothing
about shape; the shape stream says which shapes are where and nothing about hue. The pooled
features keep both apart, and a linear readout of kind from the shape channels carries over
to a colour it was never fitted on.

Measured as CLIP's image tower (`nanovla lab clip`, 1100 steps, one seed, the rest of the lab
as its defaults; kind of held-out combos, i.e. green balls and purple boxes):
vla_cnn 0.524 (runs/clip-sc), two_stream_cnn 0.977 (runs/clip-2s; 0.997 at 2200 steps,
runs/clip-2s-2200), two_stream_fused_cnn 0.863 with held-out combos' colour down to 0.625
(runs/clip-2sf: the fused channels bring the colour-bound shape features back). A linear
probe on the pooled features fitted on the training combos reads green balls at 0.000 with
vla_cnn and 0.996 with two_stream_cnn at 2200 steps (`benchmarks/clip_probe.py`).

Departure from vla_cnn: `forward_features` returns both streams' channels; the readout and
timm's face (`num_features`, `head_hidden_size`, `forward_head`, `reset_classifier`) are
vla_cnn's own (`KeypointReadout`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from nanovla.errors import InputError
from nanovla.models.registry import register_model
from nanovla.models.vision.layers import linear_or_identity
from nanovla.models.vision.vla_cnn import VLACNN, KeypointReadout, conv_bn_relu


def normalized_chroma(x: torch.Tensor, window: int = 9, eps: float = 0.05) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W): distance from the grey axis over its local maximum."""
    chroma = (x - x.mean(dim=1, keepdim=True)).norm(dim=1, keepdim=True)
    local_max = F.max_pool2d(chroma, window, stride=1, padding=window // 2)
    return chroma / (local_max + eps)


class TwoStreamCNN(KeypointReadout):
    """Hue-blind shape stream + shape-blind colour stream (see the module doc)."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        widths: Sequence[int] = (32,),
        extra_blocks: int = 1,
        colour_width: int = 16,
        stem_stride: int = 4,
        fuse_width: int = 0,
        global_pool: str = "spatial_softmax",
    ) -> None:
        super().__init__()
        if in_chans != 3:
            raise InputError(f"two_stream_cnn: in_chans must be 3 (RGB), got {in_chans}")
        if colour_width < 1:
            raise InputError(f"two_stream_cnn: colour_width must be >= 1, got {colour_width}")
        if fuse_width < 0:
            raise InputError(f"two_stream_cnn: fuse_width must be >= 0, got {fuse_width}")
        self.shape = VLACNN(
            num_classes=0, in_chans=1, widths=widths, extra_blocks=extra_blocks,
            global_pool="", stem_stride=stem_stride,
        )  # fmt: skip
        self.reduction = self.shape.reduction
        self.colour = conv_bn_relu(3, colour_width, 1, 1, padding=0)
        self.num_classes = num_classes
        streams = self.shape.num_features + colour_width
        self.fuse = conv_bn_relu(streams, fuse_width, 1, 1, padding=0) if fuse_width else None
        self.num_features = streams + fuse_width
        self._set_pool(global_pool)
        self.head = linear_or_identity(self.head_hidden_size, num_classes)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the shape stream's conv blocks in backward."""
        self.shape.set_grad_checkpointing(enable)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C + colour_width [+ fuse_width], H/r, W/r): shape channels,
        colour channels, then the fused ones."""
        shape = self.shape.forward_features(normalized_chroma(x))
        colour = self.colour(F.avg_pool2d(x, self.reduction))
        grid = torch.cat([shape, colour], dim=1)
        return grid if self.fuse is None else torch.cat([grid, self.fuse(grid)], dim=1)


@register_model
def two_stream_cnn(
    num_classes: int = 1000,
    in_chans: int = 3,
    widths: Sequence[int] = (32,),
    extra_blocks: int = 1,
    colour_width: int = 16,
    stem_stride: int = 4,
    global_pool: str = "spatial_softmax",
) -> TwoStreamCNN:
    """Hue-blind shape stream (vla_cnn on normalised chroma) + 1x1 colour stream, concatenated."""
    return TwoStreamCNN(
        num_classes=num_classes, in_chans=in_chans, widths=widths, extra_blocks=extra_blocks,
        colour_width=colour_width, stem_stride=stem_stride, global_pool=global_pool,
    )  # fmt: skip


@register_model
def two_stream_fused_cnn(
    num_classes: int = 1000,
    in_chans: int = 3,
    widths: Sequence[int] = (32,),
    extra_blocks: int = 1,
    colour_width: int = 16,
    stem_stride: int = 4,
    fuse_width: int = 32,
    global_pool: str = "spatial_softmax",
) -> TwoStreamCNN:
    """two_stream_cnn + `fuse_width` channels of a 1x1 conv over both streams at each place."""
    return TwoStreamCNN(
        num_classes=num_classes, in_chans=in_chans, widths=widths, extra_blocks=extra_blocks,
        colour_width=colour_width, stem_stride=stem_stride, fuse_width=fuse_width,
        global_pool=global_pool,
    )  # fmt: skip
