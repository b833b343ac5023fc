"""Registry-wide tests: every model that `list_models()` returns, present and future.

Each model is built tiny (5 classes, small inputs) and must: give the right output shape with
finite values; back-propagate finite gradients into every trainable parameter; split into
`forward_features` + `forward_head` that compose to `forward`; and give the same outputs and
gradients with `set_grad_checkpointing` on and off (every registered model offers it). The
timm-style heads (`num_classes=0`, `reset_classifier`) are checked in tests/test_models_heads.py.
Parameter counts of the torchvision/timm-compatible variants are checked at 1000 classes on the
meta device (no memory, no time).

A new model family gets the default case (a `(2, 3, 32, 32)` image, `num_classes=5`) unless it
adds an entry to `CASES` below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
from torch import Tensor, nn

from nanovla.errors import InputError
from nanovla.models import create_model, list_models
from nanovla.models.registry import model_arguments

NUM_CLASSES = 5


def _image(channels: int = 3, size: int = 32) -> Callable[[], Tensor]:
    return lambda: torch.randn(2, channels, size, size)


@dataclass(frozen=True)
class Case:
    """How to build one registered model tiny and what its output must look like."""

    kwargs: dict[str, object] = field(default_factory=dict)
    """builder keyword arguments on top of `num_classes=NUM_CLASSES`"""
    make_input: Callable[[], Tensor] = field(default_factory=_image)
    """a fresh input batch"""
    output_shape: tuple[int, ...] = (2, NUM_CLASSES)
    """the expected `forward` output shape"""


CASES: dict[str, Case] = {
    "lenet": Case(kwargs={"img_size": 28}, make_input=_image(1, 28)),
    "unet": Case(
        kwargs={"base_width": 4, "depth": 2},
        make_input=_image(3, 20),  # 20 is not a multiple of 2**depth: exercises pad/crop
        output_shape=(2, NUM_CLASSES, 20, 20),
    ),
    "vit_tiny_patch16_224": Case(kwargs={"img_size": 32, "patch_size": 16}),
    "vit_small_patch16_224": Case(kwargs={"img_size": 32, "patch_size": 16}),
    "vit_base_patch16_224": Case(kwargs={"img_size": 32, "patch_size": 16}),
}

# name -> parameters at 1000 classes (torchvision / timm) or at the seed's defaults.
PARAM_COUNTS: dict[str, int] = {
    "lenet": 44_426,  # the seed's LeNet at 10 classes (its default)
    "simple_cnn": 289_194,  # three BasicCNNBlocks 32-64-128 + linear, 10 classes (its default)
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "unet": 31_043_586,  # the seed's U-Net, 3 -> 2 classes
    "vit_tiny_patch16_224": 5_717_416,
    "vit_small_patch16_224": 22_050_664,
    "vit_base_patch16_224": 86_567_656,
}

EXPECTED_NAMES = [
    "lenet",
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v2",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "unet",
    "simple_cnn",
    "vit_tiny_patch16_224",
    "vit_small_patch16_224",
    "vit_base_patch16_224",
]


def _build(name: str) -> tuple[nn.Module, Tensor, Case]:
    case = CASES.get(name, Case())
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES, **case.kwargs)
    return model.eval(), case.make_input(), case


def _grads(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_zoo_names_are_registered() -> None:
    missing = sorted(set(EXPECTED_NAMES) - set(list_models()))
    assert not missing, f"models missing from the registry: {missing}"
    assert list_models("resnet*") == ["resnet18", "resnet34", "resnet50"]


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name: str) -> None:
    model, x, case = _build(name)
    out = model(x)
    assert out.shape == case.output_shape
    assert torch.isfinite(out).all()
    out.float().square().mean().backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable, f"{name} has no trainable parameters"
    for param_name, param in trainable:
        assert param.grad is not None, f"{name}.{param_name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name}.{param_name} has non-finite grads"


@pytest.mark.parametrize("name", list_models())
def test_features_then_head_equals_forward(name: str) -> None:
    model, x, _ = _build(name)
    with torch.no_grad():
        full = model(x)
        features = model.forward_features(x)
        split = model.forward_head(features)
        pooled = model.forward_head(features, pre_logits=True)
    torch.testing.assert_close(split, full)
    assert pooled.shape[0] == x.shape[0]
    assert torch.isfinite(pooled).all()


@pytest.mark.parametrize("name", list_models())
def test_grad_checkpointing_matches(name: str) -> None:
    model, x, _ = _build(name)
    model.train()  # dropout / stochastic depth on: checkpointing must replay their RNG
    outputs, grads = [], []
    for enable in (False, True):
        model.set_grad_checkpointing(enable)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        out = model(x)
        out.square().mean().backward()
        outputs.append(out.detach())
        grads.append(_grads(model))
    torch.testing.assert_close(outputs[1], outputs[0])
    assert grads[1].keys() == grads[0].keys()
    for param_name in grads[0]:
        torch.testing.assert_close(grads[1][param_name], grads[0][param_name], msg=param_name)


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_parameter_count(name: str) -> None:
    assert name in list_models(), f"{name} has a reference count but is not registered"
    kwargs = {} if name in ("lenet", "simple_cnn", "unet") else {"num_classes": 1000}
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    assert sum(p.numel() for p in model.parameters()) == PARAM_COUNTS[name]


def test_every_case_names_a_registered_model() -> None:
    stale = sorted(set(CASES) - set(list_models()))
    assert not stale, f"CASES has entries for unregistered models: {stale}"


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="unknown model 'resnet19'.*resnet18"):
        create_model("resnet19")
    with pytest.raises(InputError, match="unknown model 'resnet19'"):
        model_arguments("resnet19")


def test_model_arguments_name_what_each_builder_takes() -> None:
    vit = model_arguments("vit_tiny_patch16_224")
    assert {"num_classes", "in_chans", "img_size", "global_pool"} <= vit
    assert "img_size" in model_arguments("lenet")  # its flatten width is fixed at build time
    for name in ("resnet18", "mobilenet_v2", "efficientnet_b0", "vla_cnn", "unet"):
        assert "img_size" not in model_arguments(name), name  # fully convolutional
        assert {"num_classes", "in_chans"} <= model_arguments(name), name
    assert "stem_stride" in model_arguments("vla_cnn")
