"""timm's face for every registered vision model: `num_classes=0`, `reset_classifier`,
`get_classifier`, `num_features` / `head_hidden_size`, and the policy's backbones built from them.

Like tests/test_models_registry.py these run over `list_models()`, so a new family is checked
without being named here; `DENSE` lists the models whose head is per pixel (U-Net).
"""

from __future__ import annotations

import pytest
import torch
from test_models_registry import CASES, Case
from torch import Tensor, nn

from nanovla.errors import InputError
from nanovla.models import create_model, list_models
from nanovla.models.policy.configuration_policy import PolicyConfig
from nanovla.models.policy.vision import backbone_kwargs, build_vision_encoder

DENSE = {"unet"}
"""models whose head maps every pixel: outputs (B, classes, H, W) instead of (B, classes)"""

# Parameters without the classifier (num_classes=0), each the published count at 1000 classes
# minus its 1000-way linear head: torchvision's resnet18 11,689,512 - (512 * 1000 + 1000),
# mobilenet_v2 3,504,872 - (1280 * 1000 + 1000), efficientnet_b0 5,288,548 - (1280 * 1000 +
# 1000), timm's vit_tiny_patch16_224 5,717,416 - (192 * 1000 + 1000).
BACKBONE_COUNTS = {
    "resnet18": 11_176_512,
    "resnet50": 23_508_032,
    "mobilenet_v2": 2_223_872,
    "efficientnet_b0": 4_007_548,
    "vit_tiny_patch16_224": 5_524_416,
}


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _build(name: str, num_classes: int) -> tuple[nn.Module, Tensor]:
    case = CASES.get(name, Case())
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes, **case.kwargs).eval()
    return model, case.make_input()


def _channels(features: Tensor) -> int:
    return features.shape[1] if features.ndim == 4 else features.shape[-1]  # grid or tokens


def _expected(name: str, x: Tensor, width: int) -> tuple[int, ...]:
    return (x.shape[0], width, *x.shape[-2:]) if name in DENSE else (x.shape[0], width)


@pytest.mark.parametrize("name", list_models())
def test_num_classes_zero_gives_pooled_features(name: str) -> None:
    model, x = _build(name, 0)
    assert isinstance(model.get_classifier(), nn.Identity)
    with torch.no_grad():
        out = model(x)
        features = model.forward_features(x)
        pre_logits = model.forward_head(features, pre_logits=True)
    assert out.shape == _expected(name, x, model.head_hidden_size)
    assert _channels(features) == model.num_features
    torch.testing.assert_close(out, pre_logits)  # eval mode: dropout off, the head is identity


@pytest.mark.parametrize("name", list_models())
def test_reset_classifier_replaces_the_head(name: str) -> None:
    model, x = _build(name, 0)
    model.reset_classifier(7)
    head = model.get_classifier()
    assert not isinstance(head, nn.Identity)
    assert model.num_classes == 7
    with torch.no_grad():
        assert model(x).shape == _expected(name, x, 7)
    # the reset model has the layout of one built with 7 classes: its state dict loads strictly
    built, _ = _build(name, 7)
    model.load_state_dict(built.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(model(x), built(x))
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), nn.Identity)
    with torch.no_grad():
        assert model(x).shape == _expected(name, x, model.head_hidden_size)


@pytest.mark.parametrize("name", list_models())
def test_num_classes_zero_drops_exactly_the_head(name: str) -> None:
    with_head, _ = _build(name, 5)
    backbone, _ = _build(name, 0)
    head = with_head.get_classifier()
    head_params = _count(head)
    assert head_params > 0
    assert _count(backbone) == _count(with_head) - head_params
    head_keys = {k for k in with_head.state_dict() if k.startswith(_prefix(with_head, head))}
    assert len(head_keys) == len(list(head.state_dict()))
    assert set(backbone.state_dict()) == set(with_head.state_dict()) - head_keys


def _prefix(model: nn.Module, head: nn.Module) -> str:
    return next(name for name, module in model.named_modules() if module is head) + "."


@pytest.mark.parametrize("name", sorted(BACKBONE_COUNTS))
def test_backbone_parameter_counts(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name, num_classes=0)
    assert _count(model) == BACKBONE_COUNTS[name]


def test_global_pool_none_returns_unpooled_features() -> None:
    vit = create_model("vit_tiny_patch16_224", img_size=32, num_classes=0, global_pool="").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert vit(x).shape == (2, 5, 192)  # [CLS] + 2x2 patches, nothing pooled
        vit.reset_classifier(3, global_pool="avg")
        assert vit(x).shape == (2, 3)
    lenet = create_model("lenet", num_classes=0, global_pool="")
    assert not hasattr(lenet, "fc1") and _count(lenet) == 6 * 25 + 6 + 16 * 6 * 25 + 16
    assert lenet(torch.randn(2, 1, 28, 28)).shape == (2, 16, 4, 4)
    with pytest.raises(InputError, match="num_classes=0"):
        create_model("lenet", num_classes=3, global_pool="")
    with pytest.raises(InputError, match="global_pool"):
        create_model("vit_tiny_patch16_224", global_pool="max")
    with pytest.raises(InputError, match="num_classes must be >= 0"):
        create_model("resnet18").reset_classifier(-1)


@pytest.mark.parametrize("name", list_models())
def test_policy_backbone_uses_every_parameter(name: str) -> None:
    config = PolicyConfig(vision=name, image_size=32)
    encoder, grid_shape = build_vision_encoder(config)
    images = torch.randn(2, 3, 32, 32)
    grid = encoder.forward_features(images)
    assert tuple(grid.shape) == (2, *grid_shape)
    grid.square().mean().backward()
    params = dict(encoder.named_parameters())
    assert all(p.requires_grad for p in params.values())
    unused = sorted(n for n, p in params.items() if p.grad is None)
    assert not unused, f"{name}: forward_features never uses {unused}"
    assert backbone_kwargs(config)["num_classes"] == 0
