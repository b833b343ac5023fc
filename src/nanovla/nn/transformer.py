"""Transformer encoder and decoder layers and stacks (the seed's Week 2, "Attention is all you need").

Each layer is residual attention + residual feed-forward, with LayerNorm either
- after each residual sum (`norm_first=False`, post-norm: the paper and the seed), or
- before each sub-layer (`norm_first=True`, pre-norm: ViT, GPT-2; trains deep stacks without warmup).

The layers equal `torch.nn.TransformerEncoderLayer` / `TransformerDecoderLayer` (batch_first=True)
once their weights are copied in with `load_from_torch_layer`; masks follow `nanovla.nn.masks`
(bool True = attend, or additive float; key padding masks in torch's True = padding convention).

Departures from the seed: the seed's single dropout is kept on both residual branches and the FFN,
but the attention weights get dropout too (as torch and the paper do); activation, pre-norm, the
LayerNorm epsilon and gradient checkpointing (per layer, `torch.utils.checkpoint`,
use_reentrant=False) are options; the stacks end with a final LayerNorm when pre-norm, which a
pre-norm stack needs (its residual stream is never normalised otherwise), as torch's
`nn.Transformer` and ViT have.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from nanovla.nn.attention import MultiHeadAttention, convert_torch_mha_state_dict
from nanovla.nn.kv_cache import AttentionCache, KVCache

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}


def feed_forward(d_model: int, d_ff: int, dropout: float, activation: str) -> nn.Sequential:
    """Position-wise FFN: Linear(d_model, d_ff) -> activation -> Dropout -> Linear(d_ff, d_model)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return nn.Sequential(
        nn.Linear(d_model, d_ff),
        ACTIVATIONS[activation](),
        nn.Dropout(dropout),
        nn.Linear(d_ff, d_model),
    )


class TransformerEncoderLayer(nn.Module):
    """Self-attention + feed-forward, each with a residual connection and LayerNorm.

    Args:
        d_model: token width. num_heads: attention heads (must divide d_model).
        d_ff: hidden width of the feed-forward network (4 * d_model is usual).
        dropout: on attention weights, the FFN hidden layer and both residual branches.
        activation: "relu" (the paper) or "gelu" (BERT, ViT).
        norm_first: pre-norm when True, post-norm (the seed) when False.
        layer_norm_eps: LayerNorm epsilon (torch 1e-5, ViT 1e-6).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.activation = activation
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.feed_forward = feed_forward(d_model, d_ff, dropout, activation)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def _attend(
        self, x: Tensor, mask: Tensor | None, key_padding_mask: Tensor | None, is_causal: bool
    ) -> Tensor:
        out, _ = self.self_attn(
            x, x, x, mask, key_padding_mask, is_causal=is_causal, need_weights=False
        )
        return self.dropout(out)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        """x: (B, T, d_model); mask: (T, T) / (B, T, T) / (B, H, T, T); key_padding_mask: (B, T)."""
        if self.norm_first:
            x = x + self._attend(self.norm1(x), mask, key_padding_mask, is_causal)
            return x + self.dropout(self.feed_forward(self.norm2(x)))
        x = self.norm1(x + self._attend(x, mask, key_padding_mask, is_causal))
        return self.norm2(x + self.dropout(self.feed_forward(x)))


class TransformerDecoderLayer(nn.Module):
    """Masked self-attention, cross-attention to the encoder output (memory), feed-forward.

    Arguments as `TransformerEncoderLayer`; the extra norm3 sits around the feed-forward block.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.activation = activation
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.feed_forward = feed_forward(d_model, d_ff, dropout, activation)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        tgt_is_causal: bool = False,
        cache: tuple[AttentionCache, AttentionCache] | None = None,
    ) -> Tensor:
        """x: (B, T, d_model) targets; memory: (B, S, d_model); masks as in the encoder layer.

        `cache` (self-attention, cross-attention caches, `nanovla.nn.kv_cache`): x holds only the
        new target tokens; earlier ones come from the cache, the memory is projected once."""
        self_cache, cross_cache = (None, None) if cache is None else cache

        def self_block(y: Tensor) -> Tensor:
            out, _ = self.self_attn(
                y, y, y, tgt_mask, tgt_key_padding_mask, tgt_is_causal, need_weights=False,
                cache=self_cache,
            )  # fmt: skip
            return self.dropout(out)

        def cross_block(y: Tensor) -> Tensor:
            out, _ = self.cross_attn(
                y, memory, memory, memory_mask, memory_key_padding_mask, need_weights=False,
                cache=cross_cache,
            )  # fmt: skip
            return self.dropout(out)

        if self.norm_first:
            x = x + self_block(self.norm1(x))
            x = x + cross_block(self.norm2(x))
            return x + self.dropout(self.feed_forward(self.norm3(x)))
        x = self.norm1(x + self_block(x))
        x = self.norm2(x + cross_block(x))
        return self.norm3(x + self.dropout(self.feed_forward(x)))


class _Stack(nn.Module):
    """Shared by the encoder and decoder stacks: layers, final norm, gradient checkpointing."""

    def __init__(self, layers: list[nn.Module], d_model: int, norm_first: bool, eps: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d_model, eps=eps) if norm_first else nn.Identity()
        self.gradient_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each layer's activations in backward instead of storing them."""
        self.gradient_checkpointing = enable

    def _run(self, x: Tensor, *args: object) -> Tensor:
        for layer in self.layers:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(layer, x, *args, use_reentrant=False)
            else:
                x = layer(x, *args)
        return self.norm(x)


def _stack_layers(
    layer_type: type[nn.Module], num_layers: int, **kwargs: object
) -> list[nn.Module]:
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    return [layer_type(**kwargs) for _ in range(num_layers)]


class TransformerEncoder(_Stack):
    """`num_layers` encoder layers (+ final LayerNorm when pre-norm). Arguments as the layer's;
    `gradient_checkpointing` trades compute for memory (same outputs and gradients)."""

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        num_heads: int,
        d_ff: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        gradient_checkpointing: bool = False,
    ) -> None:
        layer_args = dict(d_model=d_model, num_heads=num_heads, d_ff=d_ff, dropout=dropout)
        layer_args |= dict(
            activation=activation, norm_first=norm_first, layer_norm_eps=layer_norm_eps
        )
        layers = _stack_layers(TransformerEncoderLayer, num_layers, **layer_args)
        super().__init__(layers, d_model, norm_first, layer_norm_eps)
        self.gradient_checkpointing = gradient_checkpointing

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        """x: (B, T, d_model) -> (B, T, d_model)."""
        return self._run(x, mask, key_padding_mask, is_causal)


class TransformerDecoder(_Stack):
    """`num_layers` decoder layers (+ final LayerNorm when pre-norm). Arguments as the encoder's."""

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        num_heads: int,
        d_ff: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        gradient_checkpointing: bool = False,
    ) -> None:
        layer_args = dict(d_model=d_model, num_heads=num_heads, d_ff=d_ff, dropout=dropout)
        layer_args |= dict(
            activation=activation, norm_first=norm_first, layer_norm_eps=layer_norm_eps
        )
        layers = _stack_layers(TransformerDecoderLayer, num_layers, **layer_args)
        super().__init__(layers, d_model, norm_first, layer_norm_eps)
        self.gradient_checkpointing = gradient_checkpointing

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        tgt_is_causal: bool = False,
        cache: KVCache | None = None,
    ) -> Tensor:
        """x: (B, T, d_model), memory: (B, S, d_model) -> (B, T, d_model).

        With `cache` (a `KVCache` of this many layers) x holds only the new target tokens."""
        if cache is not None:
            if len(cache.layers) != len(self.layers):
                raise ValueError(
                    f"cache has {len(cache.layers)} layers, decoder {len(self.layers)}"
                )
            masks = (tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask)
            for layer, layer_cache in zip(self.layers, cache.layers):
                x = layer(x, memory, *masks, tgt_is_causal, cache=layer_cache)
            return self.norm(x)
        return self._run(
            x,
            memory,
            tgt_mask,
            memory_mask,
            tgt_key_padding_mask,
            memory_key_padding_mask,
            tgt_is_causal,
        )


# torch layer key -> ours (attention modules are converted by convert_torch_mha_state_dict).
_TORCH_LAYER_KEYS = {
    "linear1.": "feed_forward.0.",
    "linear2.": "feed_forward.3.",
    "multihead_attn.": "cross_attn.",
}


def convert_torch_layer_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """State dict of `nn.TransformerEncoderLayer` / `nn.TransformerDecoderLayer` -> our keys."""
    renamed = {}
    for key, value in state_dict.items():
        for theirs, ours in _TORCH_LAYER_KEYS.items():
            if key.startswith(theirs):
                key = ours + key[len(theirs) :]
        renamed[key] = value
    converted = convert_torch_mha_state_dict(renamed, prefix="self_attn.")
    if "cross_attn.in_proj_weight" in converted:
        converted = convert_torch_mha_state_dict(converted, prefix="cross_attn.")
    return converted


def _activation_name(activation: object) -> str:
    """torch layers keep their activation as a function or a module; name it as we do."""
    if activation is F.relu or isinstance(activation, nn.ReLU):
        return "relu"
    if activation is F.gelu or isinstance(activation, nn.GELU):
        return "gelu"
    return repr(activation)


def load_from_torch_layer(
    layer: TransformerEncoderLayer | TransformerDecoderLayer,
    reference: nn.TransformerEncoderLayer | nn.TransformerDecoderLayer,
) -> None:
    """Copy a torch encoder/decoder layer's weights into ours (strict: all keys must match)."""
    encoders = (
        isinstance(layer, TransformerEncoderLayer),
        isinstance(reference, nn.TransformerEncoderLayer),
    )
    if encoders[0] != encoders[1]:
        raise ValueError(
            f"cannot load a {type(reference).__name__} into a {type(layer).__name__}: "
            "encoder layers load from encoder layers, decoder layers from decoder layers"
        )
    if reference.norm_first != layer.norm_first:
        raise ValueError(
            f"norm_first differs: reference {reference.norm_first}, ours {layer.norm_first}"
        )
    reference_activation = _activation_name(reference.activation)
    if reference_activation != layer.activation:
        raise ValueError(
            f"activation differs: reference {reference_activation}, ours {layer.activation!r}"
        )
    layer.load_state_dict(convert_torch_layer_state_dict(reference.state_dict()))
