"""Attention masks: one convention inside nanovla, converters for the others.

The convention (the same as `F.scaled_dot_product_attention`): a mask is broadcastable to the
attention scores (B, H, L, S) and is either
- **bool, True = may attend** (False positions get -inf before the softmax), or
- **floating, additive**: added to the scores (0 = attend, -inf = blocked, anything in between
  is a bias).

Other conventions you will meet, and how to convert:
- the seed: a 0/1 mask with `scores.masked_fill(mask == 0, -1e9)`, i.e. 1 = attend. Pass
  `mask.bool()`; integer masks are rejected rather than guessed.
- `torch.nn.MultiheadAttention` / `nn.TransformerEncoderLayer`: a bool `attn_mask` or
  `key_padding_mask` means **True = ignore** (the opposite). `MultiHeadAttention` takes
  `key_padding_mask` in that torch convention (drop-in), and `padding_to_attention_mask` converts it.
- Hugging Face `attention_mask` (B, S): 1 = real token, 0 = padding — its padding mask is
  `attention_mask == 0`; `lengths_to_padding_mask` builds one from sequence lengths.

A query row whose keys are all blocked has no defined softmax: both attention paths return zeros
for it (as `F.scaled_dot_product_attention` does; `nn.MultiheadAttention` returns NaN).
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_mask(mask: Tensor, name: str = "mask") -> None:
    """Raise ValueError unless `mask` is bool (True = attend) or floating (additive)."""
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise ValueError(
            f"{name} must be bool (True = attend) or floating (additive, -inf = blocked), got "
            f"{mask.dtype}; for a seed-style 0/1 mask (1 = attend) pass {name}.bool()"
        )


def causal_mask(
    size: int, key_size: int | None = None, device: torch.device | str | None = None
) -> Tensor:
    """(L, S) bool mask, True where key position s <= query position l (no looking ahead).

    `key_size` defaults to `size`; when they differ the mask is aligned top-left, as
    `F.scaled_dot_product_attention(is_causal=True)` aligns it.
    """
    if size < 1 or (key_size is not None and key_size < 1):
        raise ValueError(f"causal_mask sizes must be >= 1, got size={size}, key_size={key_size}")
    key_size = size if key_size is None else key_size
    return torch.ones(size, key_size, dtype=torch.bool, device=device).tril()


def lengths_to_padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) sequence lengths -> (B, max_len) bool, **True = padding** (torch's key_padding_mask)."""
    if lengths.dim() != 1:
        raise ValueError(f"lengths must have shape (B,), got {tuple(lengths.shape)}")
    if bool((lengths < 1).any()) or bool((lengths > max_len).any()):
        raise ValueError(f"lengths must lie in [1, {max_len}], got {lengths.tolist()}")
    positions = torch.arange(max_len, device=lengths.device)  # (T,)
    return positions[None, :] >= lengths[:, None]  # (B, T)


def padding_to_attention_mask(key_padding_mask: Tensor) -> Tensor:
    """torch-style key padding mask (B, S) -> our attention mask (B, 1, 1, S).

    bool: True = padding (ignore) becomes False = blocked; floating masks are additive already.
    """
    check_mask(key_padding_mask, "key_padding_mask")
    if key_padding_mask.dim() != 2:
        raise ValueError(
            f"key_padding_mask must have shape (B, S), got {tuple(key_padding_mask.shape)}"
        )
    if key_padding_mask.dtype == torch.bool:
        key_padding_mask = ~key_padding_mask
    return key_padding_mask[:, None, None, :]  # (B, 1, 1, S): same keys for every head and query


def merge_masks(*masks: Tensor | None) -> Tensor | None:
    """Combine masks (our convention) into one: a key is attended only if every mask allows it.

    All bool -> logical and (stays bool, which the fused kernels like); otherwise each bool mask
    becomes additive (0 / -inf) and they are summed. None entries are skipped; all None -> None.
    """
    present = [mask for mask in masks if mask is not None]
    if not present:
        return None
    for mask in present:
        check_mask(mask)
    if len(present) == 1:
        return present[0]
    if all(mask.dtype == torch.bool for mask in present):
        merged = present[0]
        for mask in present[1:]:
            merged = merged & mask
        return merged
    dtype = next(mask.dtype for mask in present if mask.is_floating_point())
    merged = None
    for mask in present:
        additive = to_additive_mask(mask, dtype)
        merged = additive if merged is None else merged + additive
    return merged


def to_additive_mask(mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """bool (True = attend) -> floating 0 / -inf; floating masks are returned unchanged."""
    check_mask(mask)
    if mask.dtype != torch.bool:
        return mask
    additive = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return additive.masked_fill(~mask, float("-inf"))
