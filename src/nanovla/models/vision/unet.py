"""U-Net for semantic segmentation, the seed's (Ronneberger et al., "U-Net: Convolutional
Networks for Biomedical Image Segmentation", https://arxiv.org/abs/1505.04597).

Encoder: `depth` double-conv blocks, each followed by a 2x2 max-pool, widths
`base_width * 2**i`; bottleneck at `base_width * 2**depth`; decoder: 2x2 transposed conv up,
concatenate the encoder map of the same size (the skip connection), double-conv; a 1x1 conv maps
to per-pixel class logits. With the defaults (`base_width=64`, `depth=4`) this is exactly the
seed's network (64-128-256-512, bottleneck 1024): 31,043,586 parameters for 3 -> 2 classes.

Departures from the seed:
- `base_width` and `depth` are arguments (the seed fixes 64 and 4), so the lab can train a
  narrow U-Net on a CPU; the blocks live in `ModuleList`s (`encoders`, `upconvs`, `decoders`)
  instead of `enc1..enc4` / `upconv4..1` / `dec4..1`, and the 1x1 conv is `head` (seed: `out`).
- The seed's `conv_block` (3x3 conv -> BN -> ReLU, twice) is the seed's `BasicCNNBlock`, so
  that block is reused.
- Inputs whose sides are not multiples of `2**depth` are zero-padded on the bottom/right up to
  the next multiple, and the output is cropped back, so the logits always have the input's
  `H x W` (the seed's pools and transposed convs would otherwise disagree in size at the skip
  concatenation). Inputs that are already multiples run unpadded.
- `forward_features` returns the last decoder map `(B, base_width, H, W)`; `forward_head`
  applies the 1x1 conv (`pre_logits=True` returns the map unchanged).
- timm's face, per pixel: `num_classes=0` makes `head` an identity, so `forward` returns the
  `(B, base_width, H, W)` decoder map (`num_features` channels); `reset_classifier(n)` puts a
  new 1x1 conv there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from nanovla.errors import InputError
from nanovla.models.registry import register_model
from nanovla.models.vision.layers import BasicCNNBlock


class UNet(nn.Module):
    """The seed's U-Net with configurable width and depth.

    Args:
        num_classes: logit channels per pixel; 0 = identity head (the decoder map).
        in_chans: input image channels.
        base_width: channels of the first encoder block; doubles at each level (seed: 64).
        depth: number of 2x down-samplings (seed: 4); inputs are padded to multiples of `2**depth`.
    """

    def __init__(
        self, num_classes: int = 2, in_chans: int = 3, base_width: int = 64, depth: int = 4
    ) -> None:
        super().__init__()
        if depth < 1:
            raise InputError(f"depth must be >= 1, got {depth}")
        if base_width < 1 or num_classes < 0 or in_chans < 1:
            raise InputError(
                "base_width and in_chans must be >= 1 and num_classes >= 0, got "
                f"{base_width}, {in_chans}, {num_classes}"
            )
        self.num_classes = num_classes
        self.depth = depth
        self.num_features = self.head_hidden_size = base_width
        self.grad_checkpointing = False
        widths = [base_width * 2**level for level in range(depth + 1)]
        self.encoders = nn.ModuleList(
            BasicCNNBlock(c_in, c_out) for c_in, c_out in zip([in_chans] + widths[:-2], widths[:-1])
        )
        self.pool = nn.MaxPool2d(2, 2)
        self.bottleneck = BasicCNNBlock(widths[-2], widths[-1])
        # Decoder from the deepest level up: upconvs[0] maps widths[depth] -> widths[depth - 1].
        self.upconvs = nn.ModuleList(
            nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2)
            for level in reversed(range(depth))
        )
        self.decoders = nn.ModuleList(
            BasicCNNBlock(2 * widths[level], widths[level]) for level in reversed(range(depth))
        )
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        if num_classes < 0:
            raise InputError(f"num_classes must be >= 0 (0: no head), got {num_classes}")
        return nn.Conv2d(self.num_features, num_classes, 1) if num_classes else nn.Identity()

    def get_classifier(self) -> nn.Module:
        """The per-pixel head: the 1x1 conv `head` (an `nn.Identity` at 0 classes)."""
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace `head` with a freshly initialised 1x1 conv to `num_classes` (0: identity)."""
        self.head = self._make_head(num_classes)
        self.num_classes = num_classes

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each double-conv block in backward instead of storing its activations."""
        self.grad_checkpointing = enable

    def _block(self, block: nn.Module, x: Tensor) -> Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, x, use_reentrant=False)
        return block(x)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, in_chans, H, W) -> decoder map (B, base_width, H, W), any H and W."""
        height, width = x.shape[-2:]
        multiple = 2**self.depth
        pad_h, pad_w = -height % multiple, -width % multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))  # (B, C, H', W'), H' and W' multiples of 2**depth
        skips = []
        for encoder in self.encoders:
            x = self._block(encoder, x)  # (B, w_l, H' / 2**l, W' / 2**l)
            skips.append(x)
            x = self.pool(x)
        x = self._block(self.bottleneck, x)  # (B, w_depth, H' / 2**depth, W' / 2**depth)
        for upconv, decoder, skip in zip(self.upconvs, self.decoders, reversed(skips)):
            x = torch.cat([upconv(x), skip], dim=1)  # (B, 2 * w_l, H' / 2**l, W' / 2**l)
            x = self._block(decoder, x)  # (B, w_l, H' / 2**l, W' / 2**l)
        return x[..., :height, :width]  # (B, base_width, H, W)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """(B, base_width, H, W) -> logits (B, num_classes, H, W), or `x` if `pre_logits`."""
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def unet(num_classes: int = 2, in_chans: int = 3, base_width: int = 64, depth: int = 4) -> UNet:
    """The seed's U-Net; 31,043,586 parameters at the defaults (3 -> 2 classes, width 64)."""
    return UNet(num_classes=num_classes, in_chans=in_chans, base_width=base_width, depth=depth)
