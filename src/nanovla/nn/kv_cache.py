"""Key/value cache for autoregressive decoding with `nanovla.nn`'s Transformer decoder.

Without a cache, step t of generation runs the decoder over all t tokens again: O(t^2) work per
step for the self-attention and O(t) re-projections of every earlier token. With it, each layer
keeps the per-head keys and values it has already computed:

- self-attention: the new token's key/value (B, H, 1, d_k) is appended to the cached ones and its
  query attends to all of them (nothing after it exists yet, so no causal mask is needed for a
  single new token; a longer first chunk gets a causal mask aligned to the end);
- cross-attention: the encoder memory's keys/values are projected once, on the first step, and
  reused (`static=True`).

Positions continue from `KVCache.length` (the positional encoding of the new token is at its
absolute position). The cache is a decoding `state` for `nanovla.nn.decoding`: `reorder(index)`
selects rows (beams). Cached decoding gives the same logits as recomputing the whole prefix
(tests/test_nn_decoding.py and tests/test_lab_translate.py check it), up to float rounding.

Departure from HF's `past_key_values` tuples: one small object per attention module, so the
decoder layer passes `cache=(self_cache, cross_cache)` and nothing else changes shape.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class AttentionCache:
    """Cached per-head keys and values (B, H, T, d_k) of one attention module.

    Args:
        static: True for cross-attention (keys/values of a fixed memory, projected once);
            False for self-attention (each call appends the new tokens' keys/values).
    """

    def __init__(self, static: bool) -> None:
        self.static = static
        self.keys: Tensor | None = None
        self.values: Tensor | None = None

    @property
    def length(self) -> int:
        """Number of cached key positions (0 before the first call)."""
        return 0 if self.keys is None else self.keys.shape[2]

    def update(self, attention: Any, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Keys/values to attend to after adding `k`, `v` (B, L, E) through `attention`'s
        W_k / W_v (a `MultiHeadAttention`); a static cache ignores them once filled."""
        if self.static and self.keys is not None:
            return self.keys, self.values
        new_keys = attention._split_heads(attention.W_k(k))  # (B, H, L, d_k)
        new_values = attention._split_heads(attention.W_v(v))
        if self.keys is not None:
            new_keys = torch.cat([self.keys, new_keys], dim=2)
            new_values = torch.cat([self.values, new_values], dim=2)
        self.keys, self.values = new_keys, new_values
        return new_keys, new_values

    def reorder(self, index: Tensor) -> AttentionCache:
        """A cache holding rows `index` of this one (beam search)."""
        out = AttentionCache(self.static)
        if self.keys is not None:
            out.keys = self.keys.index_select(0, index.to(self.keys.device))
            out.values = self.values.index_select(0, index.to(self.values.device))
        return out


class KVCache:
    """One (self-attention, cross-attention) cache pair per decoder layer."""

    def __init__(self, num_layers: int) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.layers = [(AttentionCache(False), AttentionCache(True)) for _ in range(num_layers)]

    @property
    def length(self) -> int:
        """Target tokens seen so far (the position of the next one)."""
        return self.layers[0][0].length

    def reorder(self, index: Tensor) -> KVCache:
        """A cache holding rows `index` of this one."""
        out = KVCache(len(self.layers))
        out.layers = [(s.reorder(index), c.reorder(index)) for s, c in self.layers]
        return out


def end_aligned_causal_mask(queries: int, keys: int, device: torch.device | None) -> Tensor:
    """(L, S) bool, True = attend: query i (absolute position S - L + i) sees keys <= it."""
    offset = keys - queries
    rows = torch.arange(queries, device=device)[:, None]
    return torch.arange(keys, device=device)[None, :] <= rows + offset
