"""Shared CNN blocks: the seed's BasicCNNBlock / DepthwiseSeparableConv / SEBlock and the
torchvision-layout blocks (ConvNormAct, SqueezeExcitation, StochasticDepth, make_divisible)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nanovla.models.vision.layers import (
    BasicCNNBlock,
    ConvNormAct,
    DepthwiseSeparableConv,
    SEBlock,
    SqueezeExcitation,
    StochasticDepth,
    checkpoint_sequential,
    make_divisible,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (32.0, 32),
        (32 * 0.75, 24),
        (38.4, 40),  # EfficientNet-B3 stem: 32 * 1.2
        (19.2, 24),  # 16 * 1.2 rounds to 16, which loses > 10%, so one step up
        (3.0, 8),  # never below the divisor
    ],
)
def test_make_divisible(value: float, expected: int) -> None:
    assert make_divisible(value, 8) == expected


def test_make_divisible_rejects_bad_divisor() -> None:
    with pytest.raises(ValueError, match="divisor"):
        make_divisible(10.0, 0)


def test_conv_norm_act_layout_and_padding() -> None:
    block = ConvNormAct(4, 6, kernel_size=5, stride=2, activation=nn.SiLU)
    assert set(block.state_dict()) == {
        "0.weight",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    }  # conv without bias, BN at index 1, parameter-free activation at 2
    assert isinstance(block[2], nn.SiLU)
    assert block(torch.randn(2, 4, 9, 9)).shape == (2, 6, 5, 5)  # "same" padding, then stride
    assert len(ConvNormAct(4, 6, activation=None)) == 2


def test_squeeze_excitation_formula() -> None:
    torch.manual_seed(0)
    se = SqueezeExcitation(8, 2, activation=nn.SiLU)
    x = torch.randn(3, 8, 5, 5)
    pooled = x.mean(dim=(2, 3), keepdim=True)
    hidden = nn.functional.silu(nn.functional.conv2d(pooled, se.fc1.weight, se.fc1.bias))
    scale = torch.sigmoid(nn.functional.conv2d(hidden, se.fc2.weight, se.fc2.bias))
    torch.testing.assert_close(se(x), x * scale)
    assert se.fc1.weight.shape == (2, 8, 1, 1)


def test_stochastic_depth_drops_whole_samples_and_keeps_the_mean() -> None:
    torch.manual_seed(0)
    drop = StochasticDepth(0.25)
    x = torch.ones(4000, 3, 2, 2)
    out = drop(x)
    per_sample = out.flatten(1)
    kept = per_sample[:, 0] != 0
    assert torch.all(per_sample[kept] == 1 / 0.75)  # kept samples are rescaled
    assert torch.all(per_sample[~kept] == 0)  # dropped samples are zero everywhere
    assert abs(kept.float().mean().item() - 0.75) < 0.03
    assert abs(out.mean().item() - 1.0) < 0.05
    drop.eval()
    assert drop(x) is x
    assert StochasticDepth(0.0)(x) is x


def test_stochastic_depth_rejects_bad_probability() -> None:
    with pytest.raises(ValueError, match="stochastic depth probability"):
        StochasticDepth(1.0)


def test_basic_cnn_block_is_the_seeds() -> None:
    block = BasicCNNBlock(3, 5).eval()
    x = torch.randn(2, 3, 7, 7)
    expected = torch.relu(block.bn1(block.conv1(x)))
    expected = torch.relu(block.bn2(block.conv2(expected)))
    torch.testing.assert_close(block(x), expected)
    assert block(x).shape == (2, 5, 7, 7)
    assert block.conv1.bias is not None  # kept as the seed writes it


def test_depthwise_separable_weight_count_and_stride() -> None:
    block = DepthwiseSeparableConv(16, 32, stride=2)
    conv_weights = block.depthwise.weight.numel() + block.pointwise.weight.numel()
    assert conv_weights == 9 * 16 + 16 * 32  # vs 9 * 16 * 32 for a full 3x3 conv
    assert block.depthwise.groups == 16
    assert block(torch.randn(2, 16, 8, 8)).shape == (2, 32, 4, 4)
    with pytest.raises(ValueError, match="stride"):
        DepthwiseSeparableConv(16, 32, stride=3)


def test_se_block_scales_channels_by_a_gate_in_0_1() -> None:
    torch.manual_seed(0)
    block = SEBlock(32, reduction=16)
    assert block.excitation[0].out_features == 2
    x = torch.randn(2, 32, 4, 4)
    out = block(x)
    ratio = out / x  # one gate per (sample, channel), the same at every pixel
    assert torch.all((ratio > 0) & (ratio < 1))
    torch.testing.assert_close(ratio, ratio[..., :1, :1].expand_as(ratio))
    assert SEBlock(4, reduction=16).excitation[0].out_features == 1
    with pytest.raises(ValueError, match="reduction"):
        SEBlock(8, reduction=0)


def test_checkpoint_sequential_matches_plain_run() -> None:
    torch.manual_seed(0)
    blocks = nn.ModuleList([ConvNormAct(3, 4), SqueezeExcitation(4, 2), ConvNormAct(4, 4)])
    x = torch.randn(2, 3, 6, 6)
    plain = x
    for block in blocks:
        plain = block(plain)
    plain.sum().backward()
    plain_grads = [p.grad.clone() for p in blocks.parameters()]
    blocks.zero_grad()
    checkpointed = checkpoint_sequential(blocks, x)
    checkpointed.sum().backward()
    torch.testing.assert_close(checkpointed, plain)
    for grad, param in zip(plain_grads, blocks.parameters()):
        torch.testing.assert_close(param.grad, grad)
