"""The seed's "CNN basics" section: LeNet-5 and a small stack of its BasicCNNBlocks.

LeNet-5 as the seed writes it (LeCun et al., "Gradient-Based Learning Applied to Document
Recognition", http://yann.lecun.com/exdb/publis/pdf/lecun-98.pdf).

conv 5x5 (6) -> ReLU -> max-pool 2 -> conv 5x5 (16) -> ReLU -> max-pool 2 -> flatten ->
fc 120 -> ReLU -> fc 84 -> ReLU -> fc `num_classes`. With the default 1x28x28 input (MNIST) the
flattened features are `16 * 4 * 4`, exactly the seed's.

Departures from the seed:
- `in_chans` and `img_size` are arguments (the seed fixes 1 channel and 28 px); the flatten
  width follows from `img_size`: `s = ((img_size - 4) // 2 - 4) // 2`, features `16 * s * s`.
  The two valid 5x5 convs and two pools need `img_size >= 16`, so sklearn's 8x8 digits must be
  upscaled first (e.g. to 28 px with `F.interpolate(x, size=28, mode="bilinear")`).
- ReLU and max-pooling as in the seed, not the paper's scaled tanh and trainable subsampling.
- `forward_features` returns the `(B, 16, s, s)` map; `forward_head(pre_logits=True)` returns
  the 84-wide penultimate activations.
- timm's face: `num_features` is 16 (the channels of `forward_features`), `head_hidden_size` 84
  (the pre-logits width); `num_classes=0` makes `fc3` an identity, so `forward` returns the 84
  pre-logits. `global_pool=""` leaves out `fc1` / `fc2` as well (the flatten MLP is LeNet's
  "pooling" step), for callers that read the map only; it needs `num_classes=0`.

`SimpleCNN` (`simple_cnn`) is not in the seed as a model: it stacks the seed's `BasicCNNBlock`
with 2x2 max-pools between blocks and a global-average-pool linear head, so that, unlike LeNet's
fixed flatten, it takes any input size: a fast small baseline for the labs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nanovla.errors import InputError
from nanovla.models.registry import register_model
from nanovla.models.vision.layers import (
    BasicCNNBlock,
    checkpoint_sequential,
    linear_or_identity,
)

MIN_IMG_SIZE = 16
"""smallest input side for which both 5x5 convs and both 2x2 pools leave at least 1 pixel"""


class LeNet(nn.Module):
    """The seed's LeNet.

    Args:
        num_classes: size of the classifier output; 0 = identity `fc3` (84 pre-logits out).
        in_chans: input image channels (1 for MNIST / digits).
        img_size: input side in pixels (square); fixes the flatten width, must be >= 16.
        global_pool: "flatten" (the seed's flatten -> fc1 -> fc2) or "" (none: `fc1` and `fc2`
            are not built and `forward` returns the `(B, 16, s, s)` map; needs num_classes=0).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int = 28,
        global_pool: str = "flatten",
    ) -> None:
        super().__init__()
        if img_size < MIN_IMG_SIZE:
            raise InputError(
                f"img_size must be >= {MIN_IMG_SIZE} for LeNet's two 5x5 convs and pools, got "
                f"{img_size}; upscale smaller images (e.g. 8x8 digits to 28x28) first"
            )
        if num_classes < 0 or in_chans < 1:
            raise InputError(
                f"num_classes must be >= 0 and in_chans >= 1, got {num_classes}, {in_chans}"
            )
        if global_pool not in ("flatten", ""):
            raise InputError(f"lenet global_pool must be 'flatten' or '', got {global_pool!r}")
        if not global_pool and num_classes:
            raise InputError(
                "lenet global_pool='' builds no fc1/fc2 for a classifier to read; "
                f"use num_classes=0, got {num_classes}"
            )
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.img_size = img_size
        self.grad_checkpointing = False
        self.feature_size = ((img_size - 4) // 2 - 4) // 2
        self.num_features = 16
        self.head_hidden_size = 84 if global_pool else self.num_features
        self.conv1 = nn.Conv2d(in_chans, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        if global_pool:
            self.fc1 = nn.Linear(self.num_features * self.feature_size**2, 120)
            self.fc2 = nn.Linear(120, 84)
        self.fc3 = linear_or_identity(84, num_classes)

    def get_classifier(self) -> nn.Module:
        """The head: `fc3` (an `nn.Identity` when `num_classes == 0`)."""
        return self.fc3

    def reset_classifier(self, num_classes: int) -> None:
        """Replace `fc3` with a freshly initialised `num_classes`-way layer (0: identity)."""
        if num_classes and not self.global_pool:
            raise InputError("lenet built with global_pool='' has no fc1/fc2 for a classifier")
        self.fc3 = linear_or_identity(84, num_classes)
        self.num_classes = num_classes

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each conv -> ReLU -> pool stage in backward instead of storing it."""
        self.grad_checkpointing = enable

    def _stage1(self, x: Tensor) -> Tensor:
        return self.pool(F.relu(self.conv1(x)))  # (B, 6, (S - 4) / 2, ...)

    def _stage2(self, x: Tensor) -> Tensor:
        return self.pool(F.relu(self.conv2(x)))  # (B, 16, s, s)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, in_chans, img_size, img_size) -> (B, 16, s, s)."""
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise InputError(
                f"LeNet was built for {self.img_size}x{self.img_size} inputs, got "
                f"{tuple(x.shape[-2:])}; build it with img_size={x.shape[-1]} or resize the input"
            )
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint_sequential((self._stage1, self._stage2), x)
        return self._stage2(self._stage1(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """(B, 16, s, s) -> penultimate (B, 84) if `pre_logits`, else logits (B, num_classes);
        with global_pool="" the map itself."""
        if not self.global_pool:
            return x
        x = torch.flatten(x, 1)  # (B, 16 * s * s)
        x = F.relu(self.fc2(F.relu(self.fc1(x))))  # (B, 84)
        return x if pre_logits else self.fc3(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def lenet(
    num_classes: int = 10, in_chans: int = 1, img_size: int = 28, global_pool: str = "flatten"
) -> LeNet:
    """The seed's LeNet-5; 44,426 parameters at 10 classes, 1x28x28 input."""
    return LeNet(
        num_classes=num_classes, in_chans=in_chans, img_size=img_size, global_pool=global_pool
    )


class SimpleCNN(nn.Module):
    """`num_blocks` of the seed's BasicCNNBlock, widths `width * 2**i`, a 2x2 max-pool before
    every block but the first, then global average pooling and a linear classifier.

    Args:
        num_classes: size of the classifier output; 0 = identity head (pooled features).
        in_chans: input image channels.
        width: channels of the first block; doubles at each block.
        num_blocks: number of BasicCNNBlocks; inputs need sides >= `2**(num_blocks - 1)`.
        dropout: dropout probability before the classifier.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        width: int = 32,
        num_blocks: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if width < 1 or num_blocks < 1:
            raise InputError(f"width and num_blocks must be >= 1, got {width}, {num_blocks}")
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {dropout}")
        if in_chans < 1:
            raise InputError(f"in_chans must be >= 1, got {in_chans}")
        self.num_classes = num_classes
        self.grad_checkpointing = False
        widths = [width * 2**i for i in range(num_blocks)]
        self.blocks = nn.ModuleList(
            BasicCNNBlock(c_in, c_out) for c_in, c_out in zip([in_chans] + widths[:-1], widths)
        )
        self.pool = nn.MaxPool2d(2, 2)
        self.num_features = self.head_hidden_size = widths[-1]
        self.dropout = nn.Dropout(dropout)
        self.fc: nn.Module = linear_or_identity(self.num_features, num_classes)

    def get_classifier(self) -> nn.Module:
        """The head: `fc` (an `nn.Identity` when `num_classes == 0`)."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace `fc` with a freshly initialised `num_classes`-way head (0: identity)."""
        self.fc = linear_or_identity(self.num_features, num_classes)
        self.num_classes = num_classes

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in backward instead of storing its activations."""
        self.grad_checkpointing = enable

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, in_chans, H, W) -> (B, num_features, H / 2**(n-1), W / 2**(n-1))."""
        stages = [self.blocks[0]] + [nn.Sequential(self.pool, block) for block in self.blocks[1:]]
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint_sequential(stages, x)
        for stage in stages:
            x = stage(x)
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """(B, C, h, w) -> pooled (B, C) if `pre_logits`, else logits (B, num_classes)."""
        x = x.mean(dim=(2, 3))  # (B, C)
        return x if pre_logits else self.fc(self.dropout(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def simple_cnn(
    num_classes: int = 10, in_chans: int = 3, width: int = 32, num_blocks: int = 3
) -> SimpleCNN:
    """Three BasicCNNBlocks (32-64-128) with max-pools and a linear head; 289,194 parameters
    at 10 classes."""
    return SimpleCNN(num_classes=num_classes, in_chans=in_chans, width=width, num_blocks=num_blocks)
