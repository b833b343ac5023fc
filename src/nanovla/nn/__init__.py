"""nanovla.nn: building blocks shared by the model zoo and the policies.

Attention (with the fused `F.scaled_dot_product_attention` fast path), multi-head attention,
positional encodings, Transformer encoder/decoder layers and losses — each checked against the
torch implementation users already trust. Mask conventions: see `nanovla.nn.masks`.
"""

from nanovla.nn.attention import (
    MultiHeadAttention,
    convert_torch_mha_state_dict,
    load_from_torch_mha,
    scaled_dot_product_attention,
)
from nanovla.nn.losses import (
    SmoothL1Loss,
    info_nce,
    info_nce_shared,
    masked_weighted_mean,
    masked_weighted_regression,
    smooth_l1_loss,
)
from nanovla.nn.masks import (
    causal_mask,
    lengths_to_padding_mask,
    merge_masks,
    padding_to_attention_mask,
    to_additive_mask,
)
from nanovla.nn.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_table,
)
from nanovla.nn.seq2seq import Transformer
from nanovla.nn.transformer import (
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    convert_torch_layer_state_dict,
    load_from_torch_layer,
)

__all__ = [
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "SinusoidalPositionalEncoding",
    "SmoothL1Loss",
    "Transformer",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "causal_mask",
    "convert_torch_layer_state_dict",
    "convert_torch_mha_state_dict",
    "info_nce",
    "info_nce_shared",
    "lengths_to_padding_mask",
    "load_from_torch_layer",
    "load_from_torch_mha",
    "masked_weighted_mean",
    "masked_weighted_regression",
    "merge_masks",
    "padding_to_attention_mask",
    "scaled_dot_product_attention",
    "sinusoidal_table",
    "smooth_l1_loss",
    "to_additive_mask",
]
