"""Attention against torch: F.scaled_dot_product_attention and nn.MultiheadAttention."""

import math

import pytest
import torch
from torch import nn

from nanovla.nn.attention import (
    MultiHeadAttention,
    convert_torch_mha_state_dict,
    load_from_torch_mha,
    scaled_dot_product_attention,
)
from nanovla.nn.masks import (
    causal_mask,
    lengths_to_padding_mask,
    merge_masks,
    padding_to_attention_mask,
    to_additive_mask,
)

B, H, L, S, E = 2, 4, 5, 7, 32


def _qkv(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, L, E // H, generator=gen)
    k = torch.randn(B, H, S, E // H, generator=gen)
    v = torch.randn(B, H, S, E // H, generator=gen)
    return q, k, v


def _masks() -> dict[str, torch.Tensor | None]:
    padding = lengths_to_padding_mask(torch.tensor([S, 3]), S)  # (B, S) True = padding
    return {
        "none": None,
        "padding": padding_to_attention_mask(padding),
        "bool_per_head": torch.rand(B, H, L, S, generator=torch.Generator().manual_seed(1)) > 0.3,
        "additive": torch.randn(L, S),
    }


@pytest.mark.parametrize("mask_name", ["none", "padding", "bool_per_head", "additive"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_sdpa_fast_path_equals_explicit_path(mask_name: str, is_causal: bool) -> None:
    q, k, v = _qkv()
    mask = _masks()[mask_name]
    if mask_name == "bool_per_head":
        mask[..., 0] = True  # keep one key per row, so no row is fully blocked
    fast, no_weights = scaled_dot_product_attention(q, k, v, mask=mask, is_causal=is_causal)
    slow, weights = scaled_dot_product_attention(
        q, k, v, mask=mask, is_causal=is_causal, need_weights=True
    )
    assert no_weights is None
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, L))
    if is_causal:
        assert torch.all(weights[..., ~causal_mask(L, S)] == 0)


def test_sdpa_matches_the_formula_and_blocks_masked_keys() -> None:
    q, k, v = _qkv(2)
    padding = lengths_to_padding_mask(torch.tensor([S, 3]), S)
    mask = padding_to_attention_mask(padding)  # (B, 1, 1, S)
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask, need_weights=True)
    scores = q @ k.transpose(-2, -1) / math.sqrt(E // H)
    scores = scores.masked_fill(padding[:, None, None, :], -1e9)  # the seed's way
    torch.testing.assert_close(weights, scores.softmax(-1))
    torch.testing.assert_close(out, scores.softmax(-1) @ v)
    assert torch.all(weights[1, :, :, 3:] == 0)


def test_bool_and_additive_masks_agree() -> None:
    q, k, v = _qkv(3)
    mask = torch.rand(L, S, generator=torch.Generator().manual_seed(4)) > 0.4
    mask[:, 0] = True
    by_bool, _ = scaled_dot_product_attention(q, k, v, mask=mask)
    by_float, _ = scaled_dot_product_attention(q, k, v, mask=to_additive_mask(mask))
    torch.testing.assert_close(by_bool, by_float)
    merged = merge_masks(mask, torch.zeros(L, S))
    assert merged.is_floating_point()
    torch.testing.assert_close(merged, to_additive_mask(mask))


def test_fully_blocked_rows_give_zeros_on_both_paths() -> None:
    q, k, v = _qkv(5)
    mask = torch.ones(L, S, dtype=torch.bool)
    mask[2] = False  # query 2 may attend to nothing
    for need_weights in (False, True):
        out, _ = scaled_dot_product_attention(q, k, v, mask=mask, need_weights=need_weights)
        assert torch.equal(out[:, :, 2], torch.zeros(B, H, E // H))
        assert torch.isfinite(out).all()


def test_integer_masks_are_rejected() -> None:
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="bool"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(L, S, dtype=torch.long))


def _pair(
    batch_first: bool = True, bias: bool = True
) -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    torch.manual_seed(5)
    reference = nn.MultiheadAttention(E, H, bias=bias, batch_first=batch_first).eval()
    nn.init.normal_(reference.in_proj_weight, std=0.2)
    if bias:
        nn.init.normal_(reference.in_proj_bias, std=0.2)
        nn.init.normal_(reference.out_proj.bias, std=0.2)
    ours = MultiHeadAttention(E, H, bias=bias, batch_first=batch_first).eval()
    load_from_torch_mha(ours, reference)
    return ours, reference


def _check(ours_out: tuple, ref_out: tuple) -> None:
    torch.testing.assert_close(ours_out[0], ref_out[0], atol=1e-5, rtol=1e-5)
    if ref_out[1] is not None:
        torch.testing.assert_close(ours_out[1], ref_out[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_matches_torch_without_mask(need_weights: bool) -> None:
    ours, reference = _pair()
    x = torch.randn(B, L, E)
    got = ours(x, x, x, need_weights=need_weights)
    want = reference(x, x, x, need_weights=need_weights, average_attn_weights=False)
    _check(got, want)
    assert (got[1] is None) == (not need_weights)


def test_mha_matches_torch_with_key_padding_mask() -> None:
    ours, reference = _pair()
    x = torch.randn(B, L, E)
    padding = lengths_to_padding_mask(torch.tensor([L, 2]), L)  # True = ignore, torch's way
    want = reference(x, x, x, key_padding_mask=padding, average_attn_weights=False)
    _check(ours(x, x, x, key_padding_mask=padding), want)
    _check(ours(x, x, x, key_padding_mask=padding, need_weights=False), (want[0], None))
    additive = to_additive_mask(~padding)  # float key padding masks are additive in both
    _check(ours(x, x, x, key_padding_mask=additive), want)


def test_mha_matches_torch_causal() -> None:
    ours, reference = _pair()
    x = torch.randn(B, L, E)
    blocked = ~causal_mask(L)  # torch's attn_mask: True = not allowed
    want = reference(x, x, x, attn_mask=blocked, average_attn_weights=False)
    _check(ours(x, x, x, is_causal=True), want)
    _check(ours(x, x, x, mask=causal_mask(L)), want)
    _check(ours(x, x, x, is_causal=True, need_weights=False), (want[0], None))


def test_mha_matches_torch_with_attn_masks_cross_attention() -> None:
    ours, reference = _pair()
    query, memory = torch.randn(B, L, E), torch.randn(B, S, E)
    allowed = torch.rand(B, H, L, S, generator=torch.Generator().manual_seed(6)) > 0.5
    allowed[..., 1] = True
    padding = lengths_to_padding_mask(torch.tensor([4, S]), S)
    want = reference(
        query,
        memory,
        memory,
        attn_mask=~allowed.reshape(B * H, L, S),  # torch: (B*H, L, S), True = ignore
        key_padding_mask=padding,
        average_attn_weights=False,
    )
    got = ours(query, memory, memory, mask=allowed, key_padding_mask=padding)
    _check(got, want)
    additive = torch.randn(L, S)
    want = reference(query, memory, memory, attn_mask=additive)  # averaged weights (B, L, S)
    _check(ours(query, memory, memory, mask=additive, average_attn_weights=True), want)


def test_mha_sequence_first_and_no_bias() -> None:
    ours, reference = _pair(batch_first=False, bias=False)
    x = torch.randn(L, B, E)
    _check(ours(x, x, x), reference(x, x, x, average_attn_weights=False))


def test_mha_gradients_match_torch() -> None:
    ours, reference = _pair()
    x = torch.randn(B, L, E, requires_grad=True)
    ours(x, x, x, need_weights=False)[0].square().sum().backward()
    grad_ours = x.grad.clone()
    x.grad = None
    reference(x, x, x, need_weights=False)[0].square().sum().backward()
    torch.testing.assert_close(grad_ours, x.grad, atol=1e-5, rtol=1e-5)
    grad_in_proj = torch.cat([ours.W_q.weight.grad, ours.W_k.weight.grad, ours.W_v.weight.grad])
    torch.testing.assert_close(grad_in_proj, reference.in_proj_weight.grad, atol=1e-5, rtol=1e-5)


def test_mha_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(30, 4)
    ours = MultiHeadAttention(E, H)
    x = torch.randn(B, L, E)
    with pytest.raises(ValueError, match="key_padding_mask"):
        ours(x, x, x, key_padding_mask=torch.zeros(B, L + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        ours(x, x, x, mask=torch.ones(L, dtype=torch.bool))
    with pytest.raises(ValueError, match="in_proj_weight"):
        convert_torch_mha_state_dict({"weight": torch.zeros(1)})


def test_causal_mask_and_padding_helpers() -> None:
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]]).bool())
    assert causal_mask(2, 4).shape == (2, 4)
    padding = lengths_to_padding_mask(torch.tensor([1, 3]), 3)
    assert padding.tolist() == [[False, True, True], [False, False, False]]
    with pytest.raises(ValueError, match="lengths"):
        lengths_to_padding_mask(torch.tensor([0, 2]), 3)
