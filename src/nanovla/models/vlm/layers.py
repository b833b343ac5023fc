"""What both VLMs share: the image encoder (a zoo model's token grid) and key/value-cached steps
through `nanovla.nn`'s Transformer layers.

Image encoder: `create_model(config.vision, num_classes=0)` and its `forward_features`: a
(B, C, h, w) feature map (vla_cnn) is read as h*w tokens of width C, a ViT's (B, 1 + N, C)
tokens are taken as they are; a learned position embedding per token is added (a CNN grid has
no notion of where a cell is once flattened).

KV cache: in training, a layer sees the whole sequence at once (`nanovla.nn`'s layers, fused
attention). In generation, every new token would recompute the keys and values of all earlier
ones; `self_attention_step` instead keeps each layer's keys and values (B, H, S, d_k) and only
projects the new tokens, appending to them. It runs the same layer's own projections, norms and
feed-forward, so the two paths are the same function of the weights (tests/test_vlm.py checks
that cached decoding equals full recomputation). The cache is a plain tuple of batch-first
tensors, which `nanovla.nn.decoding.reorder_state` reorders for beam search.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nanovla.errors import InputError
from nanovla.models.registry import create_model
from nanovla.models.vlm.configuration import VLMConfig
from nanovla.nn.attention import MultiHeadAttention, scaled_dot_product_attention
from nanovla.nn.transformer import TransformerDecoderLayer, TransformerEncoderLayer

PIXEL_MEAN, PIXEL_STD = 0.5, 0.25
"""uint8 pixels become (x / 255 - mean) / std"""


def check_images(images: object, image_size: int, argument: str = "images") -> Tensor:
    """(N, H, W, 3) uint8 numpy array or tensor -> (N, 3, H, W) float32, normalized.

    Anything else (wrong dtype, rank, size or channel count) is an InputError naming `argument`
    and what was expected."""
    if not isinstance(images, Tensor):
        import numpy as np

        if not isinstance(images, np.ndarray):
            raise InputError(f"{argument}: expected a uint8 array (N, H, W, 3), got {type(images).__name__}")  # fmt: skip
        images = torch.from_numpy(np.ascontiguousarray(images))
    expected = (image_size, image_size, 3)
    if images.dtype != torch.uint8:
        raise InputError(f"{argument}: dtype {str(images.dtype).removeprefix('torch.')}, expected uint8 (N, {image_size}, {image_size}, 3)")  # fmt: skip
    if images.dim() != 4 or tuple(images.shape[1:]) != expected:
        raise InputError(f"{argument}: shape {tuple(images.shape)}, expected (N, {image_size}, {image_size}, 3) uint8")  # fmt: skip
    pixels = images.permute(0, 3, 1, 2).float() / 255.0
    return (pixels - PIXEL_MEAN) / PIXEL_STD


class ImageEncoder(nn.Module):
    """Images (B, 3, H, W) float -> tokens (B, N, C) from the zoo model's `forward_features`."""

    def __init__(self, config: VLMConfig) -> None:
        super().__init__()
        if config.vision == "vla_cnn":
            widths = tuple(config.vision_widths)
            self.backbone = create_model("vla_cnn", num_classes=0, global_pool="", widths=widths)
        else:
            self.backbone = create_model(
                config.vision, num_classes=0, img_size=config.image_size, global_pool=""
            )
        with torch.no_grad():
            probe = self._tokens(torch.zeros(1, 3, config.image_size, config.image_size))
        self.num_tokens, self.width = probe.shape[1], probe.shape[2]
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens, self.width))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def _tokens(self, pixels: Tensor) -> Tensor:
        features = self.backbone.forward_features(pixels)
        if features.dim() == 4:  # (B, C, h, w) grid -> (B, h*w, C)
            return features.flatten(2).transpose(1, 2)
        return features  # (B, N, C) tokens

    def forward(self, pixels: Tensor) -> Tensor:
        return self._tokens(pixels) + self.pos_embed


def step_mask(attend: Tensor, queries: int) -> Tensor:
    """(B, 1, T, S) bool: query i (the last T of S positions) may see key j if j <= its own
    position and key j is not padding (`attend` (B, S), True = real token)."""
    keys = attend.shape[1]
    causal = torch.ones(queries, keys, dtype=torch.bool, device=attend.device)
    causal = causal.tril(diagonal=keys - queries)  # (T, S), aligned bottom-right
    return causal[None, None] & attend[:, None, None, :]


def _split(attention: MultiHeadAttention, x: Tensor) -> Tensor:
    batch, length, _ = x.shape
    return x.reshape(batch, length, attention.num_heads, attention.d_k).transpose(1, 2)


def _merge(attention: MultiHeadAttention, out: Tensor) -> Tensor:
    batch, _, length, _ = out.shape
    return attention.W_o(out.transpose(1, 2).reshape(batch, length, attention.d_model))


def self_attention_step(
    attention: MultiHeadAttention, x: Tensor, past: tuple[Tensor, Tensor] | None, mask: Tensor
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Attend from the new tokens x (B, T, E) to the cached keys/values plus their own.

    past: (k, v), each (B, H, S - T, d_k), or None; mask: (B, 1, T, S) bool.
    Returns the output (B, T, E) and the grown cache (B, H, S, d_k) x 2."""
    q = _split(attention, attention.W_q(x))
    k, v = _split(attention, attention.W_k(x)), _split(attention, attention.W_v(x))
    if past is not None:
        k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
    out, _ = scaled_dot_product_attention(q, k, v, mask=mask)
    return _merge(attention, out), (k, v)


def memory_keys(attention: MultiHeadAttention, memory: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-attention keys and values of the encoder memory (B, N, E), computed once."""
    return _split(attention, attention.W_k(memory)), _split(attention, attention.W_v(memory))


def encoder_layer_step(
    layer: TransformerEncoderLayer, x: Tensor, past: tuple | None, mask: Tensor
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """One pre-norm `TransformerEncoderLayer` used as a causal LM layer, with a KV cache."""
    out, cache = self_attention_step(layer.self_attn, layer.norm1(x), past, mask)
    x = x + layer.dropout(out)
    return x + layer.dropout(layer.feed_forward(layer.norm2(x))), cache


def decoder_layer_step(
    layer: TransformerDecoderLayer,
    x: Tensor,
    past: tuple | None,
    mask: Tensor,
    memory_kv: tuple[Tensor, Tensor],
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """One pre-norm `TransformerDecoderLayer` step: cached self-attention, cross-attention to
    the precomputed memory keys/values, feed-forward."""
    out, cache = self_attention_step(layer.self_attn, layer.norm1(x), past, mask)
    x = x + layer.dropout(out)
    q = _split(layer.cross_attn, layer.cross_attn.W_q(layer.norm2(x)))
    attended, _ = scaled_dot_product_attention(q, *memory_kv)
    x = x + layer.dropout(_merge(layer.cross_attn, attended))
    return x + layer.dropout(layer.feed_forward(layer.norm3(x))), cache


def text_positions(attend: Tensor) -> Tensor:
    """(B, T) position of each token counted from the row's first real token (pads -> 0)."""
    return (attend.long().cumsum(dim=1) - 1).clamp(min=0)
