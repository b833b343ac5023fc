"""Scaled dot-product attention and multi-head attention (the seed's Week 1).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + mask) V

`scaled_dot_product_attention` has two paths with the same result: the fused
`F.scaled_dot_product_attention` kernel (fast, memory-light; the default) and the explicit
softmax(QK^T/sqrt(d))V the seed writes out, taken only when the attention weights are asked for
(for heatmaps). Mask conventions are in `nanovla.nn.masks`: bool True = attend, or additive float.

Departures from the seed:
- The seed's `masked_fill(mask == 0, -1e9)` turns its own `create_causal_mask` (0 = attend,
  -inf = blocked) upside down; here bool masks mean True = attend and float masks are added, as in
  torch, and integer 0/1 masks are rejected instead of guessed.
- `MultiHeadAttention` keeps the seed's separate `W_q`, `W_k`, `W_v`, `W_o`, but for self-attention
  (q, k, v the same tensor) it runs the three projections as one matmul on the concatenated
  weights, which is what makes it as fast as `torch.nn.MultiheadAttention`'s packed `in_proj`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nanovla.nn.kv_cache import AttentionCache, end_aligned_causal_mask
from nanovla.nn.masks import causal_mask, check_mask, merge_masks, padding_to_attention_mask


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    need_weights: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor | None]:
    """softmax(q k^T * scale + mask) v over the last two dimensions.

    Args:
        q: (B, H, L, E) queries; k: (B, H, S, E) keys; v: (B, H, S, Ev) values (any leading dims).
        mask: broadcastable to (B, H, L, S); bool True = attend, or floating additive. A padding
            mask (B, S) must first become (B, 1, 1, S) (`padding_to_attention_mask`).
        is_causal: also block keys after the query position (top-left aligned).
        dropout_p: dropout on the attention weights (applied whenever > 0, as torch does; pass 0
            in eval mode).
        need_weights: take the explicit path and return the (B, H, L, S) weights.
        scale: defaults to 1 / sqrt(E).

    Returns:
        (out (B, H, L, Ev), weights (B, H, L, S) after dropout, or None when not needed).
    """
    if mask is not None:
        check_mask(mask)
    if is_causal and (need_weights or mask is not None):
        # The fused kernel takes a mask or is_causal, not both; the explicit path needs the mask.
        mask = merge_masks(mask, causal_mask(q.shape[-2], k.shape[-2], q.device))
        is_causal = False
    if not need_weights:
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale
        )
        return out, None
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, L, S)
    if mask is not None:
        scores = (
            scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        )
    weights = scores.softmax(dim=-1)  # (B, H, L, S), each row sums to 1
    if mask is not None:  # a query with every key blocked gets zeros, as the fused kernel gives
        weights = weights.masked_fill(scores.isneginf().all(dim=-1, keepdim=True), 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights  # (B, H, L, Ev)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with the seed's separate Q/K/V/O projections.

    Equal to `torch.nn.MultiheadAttention(d_model, num_heads, dropout, bias, batch_first)` once
    its weights are copied in (`load_from_torch_mha`), with and without masks.

    Args:
        d_model: model width E; split into `num_heads` heads of E / num_heads each.
        num_heads: number of heads H.
        dropout: dropout on the attention weights during training.
        bias: whether the four projections have biases.
        batch_first: inputs are (B, L, E) when True, (L, B, E) when False (as in torch).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = True,
    ) -> None:
        super().__init__()
        if num_heads < 1 or d_model % num_heads != 0:
            raise ValueError(
                f"d_model ({d_model}) must be divisible by num_heads ({num_heads}) >= 1"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.d_k = d_model // num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.W_q = nn.Linear(d_model, d_model, bias=bias)
        self.W_k = nn.Linear(d_model, d_model, bias=bias)
        self.W_v = nn.Linear(d_model, d_model, bias=bias)
        self.W_o = nn.Linear(d_model, d_model, bias=bias)

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        return x.reshape(batch, length, self.num_heads, self.d_k).transpose(1, 2)  # (B, H, L, d_k)

    def _project(
        self, q: Tensor, k: Tensor, v: Tensor, self_attention: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(B, L, E) inputs -> per-head (B, H, L, d_k) queries, keys, values."""
        if self_attention:  # q, k, v are one tensor: one (E -> 3E) matmul instead of three
            weight = torch.cat([self.W_q.weight, self.W_k.weight, self.W_v.weight])  # (3E, E)
            bias = None
            if self.W_q.bias is not None:
                bias = torch.cat([self.W_q.bias, self.W_k.bias, self.W_v.bias])  # (3E,)
            batch, length, _ = q.shape
            qkv = F.linear(q, weight, bias).reshape(batch, length, 3, self.num_heads, self.d_k)
            return qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, L, d_k)
        return (
            self._split_heads(self.W_q(q)),
            self._split_heads(self.W_k(k)),
            self._split_heads(self.W_v(v)),
        )

    def _attention_mask(
        self, mask: Tensor | None, key_padding_mask: Tensor | None, batch: int, keys: int
    ) -> Tensor | None:
        """Bring `mask` to 4-D and fold in the torch-style key padding mask."""
        if mask is not None:
            check_mask(mask)
            if mask.dim() == 3:
                mask = mask.unsqueeze(1)  # (B, L, S) -> (B, 1, L, S): same for every head
            elif mask.dim() not in (2, 4):
                raise ValueError(
                    f"mask must be (L, S), (B, L, S) or (B, H, L, S), got {tuple(mask.shape)}"
                )
        if key_padding_mask is not None:
            if key_padding_mask.shape != (batch, keys):
                raise ValueError(
                    f"key_padding_mask must have shape (B, S) = ({batch}, {keys}), got "
                    f"{tuple(key_padding_mask.shape)}"
                )
            key_padding_mask = padding_to_attention_mask(key_padding_mask)  # (B, 1, 1, S)
        return merge_masks(mask, key_padding_mask)

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = True,
        average_attn_weights: bool = False,
        cache: AttentionCache | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from queries `q` to keys `k` / values `v`.

        Args:
            q: (B, L, E) queries; k, v: (B, S, E) (sequence-first when batch_first=False).
            mask: our convention — bool True = attend, or additive float; (L, S), (B, L, S) or
                (B, H, L, S). (torch's `attn_mask` uses True = ignore: pass `~attn_mask`.)
            key_padding_mask: (B, S) in torch's convention — bool **True = padding (ignore)**, or
                additive float — so code written for `nn.MultiheadAttention` works unchanged.
            is_causal: block keys after each query position.
            need_weights: return the attention weights (explicit path); False takes the fused path.
            average_attn_weights: average the weights over heads -> (B, L, S), as torch's default.
            cache: a `nanovla.nn.kv_cache.AttentionCache` for decoding: keys/values come from
                it (after adding this call's `k`, `v`), and `is_causal` aligns the mask to the
                end (the new queries are the last positions).

        Returns:
            (out (B, L, E), weights (B, H, L, S) or (B, L, S) when averaged, or None).
        """
        self_attention = q is k and k is v
        if not self.batch_first:
            q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        batch, length, _ = q.shape
        if cache is not None:
            q_heads = self._split_heads(self.W_q(q))
            k_heads, v_heads = cache.update(self, k, v)  # (B, H, S, d_k), S includes the past
            attn_mask = self._attention_mask(mask, key_padding_mask, batch, k_heads.shape[2])
            if is_causal and length > 1:
                causal = end_aligned_causal_mask(length, k_heads.shape[2], q.device)
                attn_mask = merge_masks(attn_mask, causal)
            is_causal = False  # one new query may see every cached key
        else:
            attn_mask = self._attention_mask(mask, key_padding_mask, batch, k.shape[1])
            q_heads, k_heads, v_heads = self._project(q, k, v, self_attention)
        out, weights = scaled_dot_product_attention(
            q_heads,
            k_heads,
            v_heads,
            mask=attn_mask,
            is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
            need_weights=need_weights,
        )  # (B, H, L, d_k)
        out = self.W_o(out.transpose(1, 2).reshape(batch, length, self.d_model))  # (B, L, E)
        if not self.batch_first:
            out = out.transpose(0, 1)  # (L, B, E)
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)  # (B, L, S)
        return out, weights

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, num_heads={self.num_heads}, dropout={self.dropout}"


def convert_torch_mha_state_dict(
    state_dict: dict[str, Tensor], prefix: str = ""
) -> dict[str, Tensor]:
    """Keys of a `torch.nn.MultiheadAttention` (at `prefix`) -> our `MultiHeadAttention` keys.

    torch packs the three input projections into `in_proj_weight` (3E, E) [q; k; v]; we split it
    into `W_q`, `W_k`, `W_v`. `out_proj` becomes `W_o`. Keys outside `prefix` pass through.
    """
    packed = f"{prefix}in_proj_weight"
    if packed not in state_dict:
        raise ValueError(
            f"{packed!r} not in the state dict: only nn.MultiheadAttention with kdim == vdim == "
            "embed_dim (packed in_proj) can be converted"
        )
    converted = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            converted[key] = value
            continue
        name = key[len(prefix) :]
        if name in ("in_proj_weight", "in_proj_bias"):
            suffix = "weight" if name == "in_proj_weight" else "bias"
            for proj, chunk in zip(("W_q", "W_k", "W_v"), value.chunk(3, dim=0)):
                converted[f"{prefix}{proj}.{suffix}"] = chunk
        elif name.startswith("out_proj."):
            converted[f"{prefix}W_o.{name[len('out_proj.') :]}"] = value
        else:
            converted[key] = value
    return converted


def load_from_torch_mha(attention: MultiHeadAttention, reference: nn.MultiheadAttention) -> None:
    """Copy the weights of `reference` into `attention` (strict: every key must match)."""
    if reference.embed_dim != attention.d_model or reference.num_heads != attention.num_heads:
        raise ValueError(
            f"reference has embed_dim={reference.embed_dim}, num_heads={reference.num_heads}; "
            f"ours has d_model={attention.d_model}, num_heads={attention.num_heads}"
        )
    attention.load_state_dict(convert_torch_mha_state_dict(reference.state_dict()))
