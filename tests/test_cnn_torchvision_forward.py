"""Our ResNet / MobileNetV2 / EfficientNet compute what torchvision computes from the same weights.

torchvision cannot be imported here, so its eval-mode forward passes are rewritten below as plain
`torch.nn.functional` calls over a state dict, following torchvision's source op by op
(`torchvision/models/{resnet,mobilenetv2,efficientnet}.py`). They never touch our modules: they
read only the weights, by torchvision's key names, so they check both our op order and that each
key means what it means in torchvision.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from nanovla.models import create_model

StateDict = dict[str, Tensor]


def _bn(x: Tensor, sd: StateDict, prefix: str) -> Tensor:
    return F.batch_norm(
        x,
        sd[f"{prefix}.running_mean"],
        sd[f"{prefix}.running_var"],
        sd[f"{prefix}.weight"],
        sd[f"{prefix}.bias"],
        training=False,
        eps=1e-5,
    )


def _conv(x: Tensor, sd: StateDict, prefix: str, stride: int = 1, groups: int = 1) -> Tensor:
    weight = sd[f"{prefix}.weight"]
    padding = (weight.shape[-1] - 1) // 2
    return F.conv2d(x, weight, sd.get(f"{prefix}.bias"), stride, padding, 1, groups)


def _conv_bn(
    x: Tensor, sd: StateDict, prefix: str, stride: int = 1, depthwise: bool = False
) -> Tensor:
    """torchvision's Conv2dNormActivation without its activation: `{prefix}.0` conv, `.1` BN."""
    groups = x.shape[1] if depthwise else 1
    return _bn(_conv(x, sd, f"{prefix}.0", stride, groups), sd, f"{prefix}.1")


def reference_resnet(sd: StateDict, x: Tensor) -> Tensor:
    """torchvision `ResNet._forward_impl` with BasicBlock / Bottleneck (v1.5)."""
    x = F.max_pool2d(F.relu(_bn(_conv(x, sd, "conv1", 2), sd, "bn1")), 3, 2, 1)
    for stage in range(1, 5):
        index = 0
        while f"layer{stage}.{index}.conv1.weight" in sd:
            p, stride = f"layer{stage}.{index}", 2 if stage > 1 and index == 0 else 1
            identity = x
            if f"{p}.downsample.0.weight" in sd:
                identity = _bn(_conv(x, sd, f"{p}.downsample.0", stride), sd, f"{p}.downsample.1")
            if f"{p}.conv3.weight" in sd:  # Bottleneck: the stride sits on the 3x3 conv
                out = F.relu(_bn(_conv(x, sd, f"{p}.conv1"), sd, f"{p}.bn1"))
                out = F.relu(_bn(_conv(out, sd, f"{p}.conv2", stride), sd, f"{p}.bn2"))
                out = _bn(_conv(out, sd, f"{p}.conv3"), sd, f"{p}.bn3")
            else:
                out = F.relu(_bn(_conv(x, sd, f"{p}.conv1", stride), sd, f"{p}.bn1"))
                out = _bn(_conv(out, sd, f"{p}.conv2"), sd, f"{p}.bn2")
            x = F.relu(out + identity)
            index += 1
    return F.linear(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1), sd["fc.weight"], sd["fc.bias"])


# First-block strides of torchvision's MobileNetV2 setting, expanded to one entry per block.
MOBILENET_V2_STRIDES = [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]


def reference_mobilenet_v2(sd: StateDict, x: Tensor) -> Tensor:
    """torchvision `MobileNetV2._forward_impl` (eval: dropout is the identity)."""
    x = F.relu6(_conv_bn(x, sd, "features.0", 2))
    for index, stride in enumerate(MOBILENET_V2_STRIDES, start=1):
        p = f"features.{index}.conv"
        out = x
        if f"{p}.3.weight" in sd:  # expand_ratio != 1: pw, dw, pw-linear
            out = F.relu6(_conv_bn(out, sd, f"{p}.0"))
            out = F.relu6(_conv_bn(out, sd, f"{p}.1", stride, depthwise=True))
            out = _bn(_conv(out, sd, f"{p}.2"), sd, f"{p}.3")
        else:
            out = F.relu6(_conv_bn(out, sd, f"{p}.0", stride, depthwise=True))
            out = _bn(_conv(out, sd, f"{p}.1"), sd, f"{p}.2")
        x = x + out if stride == 1 and x.shape == out.shape else out
    x = F.relu6(_conv_bn(x, sd, "features.18"))
    x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
    return F.linear(x, sd["classifier.1.weight"], sd["classifier.1.bias"])


# First-block stride of each of torchvision's seven EfficientNet-B* stages.
EFFICIENTNET_STAGE_STRIDES = [1, 2, 2, 2, 1, 2, 1]


def _reference_mbconv(sd: StateDict, p: str, x: Tensor, stride: int) -> Tensor:
    index, out = 0, x
    if f"{p}.3.0.weight" in sd:  # expand 1x1 present
        out, index = F.silu(_conv_bn(out, sd, f"{p}.0")), 1
    out = F.silu(_conv_bn(out, sd, f"{p}.{index}", stride, depthwise=True))
    se = f"{p}.{index + 1}"
    scale = F.silu(_conv(F.adaptive_avg_pool2d(out, 1), sd, f"{se}.fc1"))
    out = torch.sigmoid(_conv(scale, sd, f"{se}.fc2")) * out
    out = _conv_bn(out, sd, f"{p}.{index + 2}")
    return out + x if stride == 1 and out.shape == x.shape else out


def reference_efficientnet(sd: StateDict, x: Tensor) -> Tensor:
    """torchvision `EfficientNet._forward_impl` (eval: dropout and stochastic depth are off)."""
    x = F.silu(_conv_bn(x, sd, "features.0", 2))
    for stage, stage_stride in enumerate(EFFICIENTNET_STAGE_STRIDES, start=1):
        index = 0
        while f"features.{stage}.{index}.block.0.0.weight" in sd:
            stride = stage_stride if index == 0 else 1
            x = _reference_mbconv(sd, f"features.{stage}.{index}.block", x, stride)
            index += 1
    x = F.silu(_conv_bn(x, sd, "features.8"))
    x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
    return F.linear(x, sd["classifier.1.weight"], sd["classifier.1.bias"])


REFERENCES = {
    "resnet18": reference_resnet,
    "resnet50": reference_resnet,
    "mobilenet_v2": reference_mobilenet_v2,
    "efficientnet_b0": reference_efficientnet,
    "efficientnet_b1": reference_efficientnet,
}


def _randomize_batch_norms(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Give every BN non-trivial statistics and affine terms, so that a swapped or ignored BN
    key changes the output."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            size = module.num_features
            module.weight.data = torch.rand(size, generator=generator) + 0.5
            module.bias.data = torch.randn(size, generator=generator) * 0.1
            module.running_mean = torch.randn(size, generator=generator) * 0.1
            module.running_var = torch.rand(size, generator=generator) + 0.5


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_outputs_equal_torchvision_reference(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10)
    _randomize_batch_norms(model, torch.Generator().manual_seed(1))
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = model(x)
        reference = REFERENCES[name](model.state_dict(), x)
    assert ours.abs().max() > 1e-3, "degenerate output would make the comparison vacuous"
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)


def test_reference_notices_a_wrong_weight() -> None:
    """The comparison above is sharp: perturbing one BN statistic changes the reference."""
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    state = dict(model.state_dict())
    with torch.no_grad():
        before = reference_resnet(state, x)
        state["layer3.1.bn2.running_mean"] = state["layer3.1.bn2.running_mean"] + 1.0
        after = reference_resnet(state, x)
    assert not torch.allclose(before, after, rtol=1e-4, atol=1e-5)
