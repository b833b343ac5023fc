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

`SimpleCNN` (`simple_cnn`) is not in the seed as a model: it stacks the seed's `BasicCNNBlock`
with 2x2 max-pools between blocks and a global-average-pool linear head, so that, unlike LeNet's
fixed flatten, it takes any input size: a fast small baseline for the labs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nanovla.models.registry import register_model
from nanovla.models.vision.layers import BasicCNNBlock, checkpoint_sequential

MIN_IMG_SIZE = 16
"""smallest input side for which both 5x5 convs and both 2x2 pools leave at least 1 pixel"""


class LeNet(nn.Module):
    """The seed's LeNet.

    Args:
        num_classes: size of the classifier output.
        in_chans: input image channels (1 for MNIST / digits).
        img_size: input side in pixels (square); fixes the flatten width, must be >= 16.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28) -> None:
        super().__init__()
        if img_size < MIN_IMG_SIZE:
            raise ValueError(
                f"img_size must be >= {MIN_IMG_SIZE} for LeNet's two 5x5 convs and pools, got "
                f"{img_size}; upscale smaller images (e.g. 8x8 digits to 28x28) first"
            )
        if num_classes < 1 or in_chans < 1:
            raise ValueError(
                f"num_classes and in_chans must be >= 1, got {num_classes}, {in_chans}"
            )
        self.num_classes = num_classes
        self.img_size = img_size
        self.feature_size = ((img_size - 4) // 2 - 4) // 2
        self.num_features = 16 * self.feature_size * self.feature_size
        self.conv1 = nn.Conv2d(in_chans, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(self.num_features, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, in_chans, img_size, img_size) -> (B, 16, s, s)."""
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(
                f"LeNet was built for {self.img_size}x{self.img_size} inputs, got "
                f"{tuple(x.shape[-2:])}; build it with img_size={x.shape[-1]} or resize the input"
            )
        x = self.pool(F.relu(self.conv1(x)))  # (B, 6, (S - 4) / 2, ...)
        return self.pool(F.relu(self.conv2(x)))  # (B, 16, s, s)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """(B, 16, s, s) -> penultimate (B, 84) if `pre_logits`, else logits (B, num_classes)."""
        x = torch.flatten(x, 1)  # (B, 16 * s * s)
        x = F.relu(self.fc2(F.relu(self.fc1(x))))  # (B, 84)
        return x if pre_logits else self.fc3(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def lenet(num_classes: int = 10, in_chans: int = 1, img_size: int = 28) -> LeNet:
    """The seed's LeNet-5; 44,426 parameters at 10 classes, 1x28x28 input."""
    return LeNet(num_classes=num_classes, in_chans=in_chans, img_size=img_size)


class SimpleCNN(nn.Module):
    """`num_blocks` of the seed's BasicCNNBlock, widths `width * 2**i`, a 2x2 max-pool before
    every block but the first, then global average pooling and a linear classifier.

    Args:
        num_classes: size of the classifier output.
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
            raise ValueError(f"width and num_blocks must be >= 1, got {width}, {num_blocks}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_classes = num_classes
        self.grad_checkpointing = False
        widths = [width * 2**i for i in range(num_blocks)]
        self.blocks = nn.ModuleList(
            BasicCNNBlock(c_in, c_out) for c_in, c_out in zip([in_chans] + widths[:-1], widths)
        )
        self.pool = nn.MaxPool2d(2, 2)
        self.num_features = widths[-1]
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)

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
