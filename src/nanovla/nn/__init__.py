"""nanovla.nn: building blocks shared by the model zoo and the policies.

Attention (with the fused `F.scaled_dot_product_attention` fast path), multi-head attention,
positional encodings, Transformer encoder/decoder layers and losses — each checked against the
torch implementation users already trust.
"""

from nanovla.nn.losses import SmoothL1Loss, info_nce, masked_weighted_regression, smooth_l1_loss

__all__ = [
    "SmoothL1Loss",
    "info_nce",
    "masked_weighted_regression",
    "smooth_l1_loss",
]
