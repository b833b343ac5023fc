"""Our ResNet / MobileNetV2 / EfficientNet state dicts have torchvision's keys and shapes.

torchvision cannot be installed here, so its layout is written down twice, independently of our
model code: (1) literal key -> shape pairs read off torchvision's source
(`torchvision/models/{resnet,mobilenetv2,efficientnet}.py`, `ops/misc.py`), and (2) a
hand-written enumeration of every key a torchvision checkpoint holds, from which a "foreign"
checkpoint is built and loaded with `strict=True`. The enumeration is itself checked against
torchvision's published parameter counts, so an error in it cannot hide an error in the model.
"""

from __future__ import annotations

import pytest
import torch

from nanovla.models import create_model

Shape = tuple[int, ...]

PARAM_COUNTS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
    "efficientnet_b0": 5_288_548,
    "efficientnet_b3": 12_233_232,
}


def _bn(prefix: str, channels: int) -> dict[str, Shape]:
    return {
        f"{prefix}.weight": (channels,),
        f"{prefix}.bias": (channels,),
        f"{prefix}.running_mean": (channels,),
        f"{prefix}.running_var": (channels,),
        f"{prefix}.num_batches_tracked": (),
    }


def torchvision_resnet_keys(bottleneck: bool, blocks: tuple[int, ...]) -> dict[str, Shape]:
    """Every key of torchvision's ResNet state dict (1000 classes)."""
    keys = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    inplanes = 64
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
        for index in range(count):
            prefix = f"layer{stage}.{index}"
            out = planes * 4 if bottleneck else planes
            if bottleneck:
                keys[f"{prefix}.conv1.weight"] = (planes, inplanes, 1, 1)
                keys[f"{prefix}.conv2.weight"] = (planes, planes, 3, 3)
                keys[f"{prefix}.conv3.weight"] = (out, planes, 1, 1)
                keys |= _bn(f"{prefix}.bn1", planes) | _bn(f"{prefix}.bn2", planes)
                keys |= _bn(f"{prefix}.bn3", out)
            else:
                keys[f"{prefix}.conv1.weight"] = (planes, inplanes, 3, 3)
                keys[f"{prefix}.conv2.weight"] = (planes, planes, 3, 3)
                keys |= _bn(f"{prefix}.bn1", planes) | _bn(f"{prefix}.bn2", planes)
            if index == 0 and (stage > 1 or inplanes != out):
                keys[f"{prefix}.downsample.0.weight"] = (out, inplanes, 1, 1)
                keys |= _bn(f"{prefix}.downsample.1", out)
            inplanes = out
    return keys | {"fc.weight": (1000, inplanes), "fc.bias": (1000,)}


def torchvision_mobilenet_v2_keys() -> dict[str, Shape]:
    """Every key of torchvision's MobileNetV2 state dict (width 1.0, 1000 classes)."""
    keys = {"features.0.0.weight": (32, 3, 3, 3), **_bn("features.0.1", 32)}
    table = [(1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1)]
    index, inp = 1, 32
    for expand, out, count in table:
        for _ in range(count):
            hidden, prefix = inp * expand, f"features.{index}.conv"
            if expand == 1:
                keys[f"{prefix}.0.0.weight"] = (hidden, 1, 3, 3)
                keys |= _bn(f"{prefix}.0.1", hidden)
                keys[f"{prefix}.1.weight"] = (out, hidden, 1, 1)
                keys |= _bn(f"{prefix}.2", out)
            else:
                keys[f"{prefix}.0.0.weight"] = (hidden, inp, 1, 1)
                keys |= _bn(f"{prefix}.0.1", hidden)
                keys[f"{prefix}.1.0.weight"] = (hidden, 1, 3, 3)
                keys |= _bn(f"{prefix}.1.1", hidden)
                keys[f"{prefix}.2.weight"] = (out, hidden, 1, 1)
                keys |= _bn(f"{prefix}.3", out)
            index, inp = index + 1, out
    keys["features.18.0.weight"] = (1280, 320, 1, 1)
    keys |= _bn("features.18.1", 1280)
    return keys | {"classifier.1.weight": (1000, 1280), "classifier.1.bias": (1000,)}


# torchvision's EfficientNet stages after scaling, (expand, kernel, out channels, layers):
# B0 read off `_efficientnet_conf`; B3 = width 1.2 (rounded to 8), depth ceil(n * 1.4).
EFFICIENTNET_STAGES = {
    "efficientnet_b0": (32, [(1, 3, 16, 1), (6, 3, 24, 2), (6, 5, 40, 2), (6, 3, 80, 3),
                             (6, 5, 112, 3), (6, 5, 192, 4), (6, 3, 320, 1)]),
    "efficientnet_b3": (40, [(1, 3, 24, 2), (6, 3, 32, 3), (6, 5, 48, 3), (6, 3, 96, 5),
                             (6, 5, 136, 5), (6, 5, 232, 6), (6, 3, 384, 2)]),
}  # fmt: skip


def _mbconv_keys(prefix: str, inp: int, expand: int, kernel: int, out: int) -> dict[str, Shape]:
    hidden, squeeze, keys, index = inp * expand, max(1, inp // 4), {}, 0
    if expand != 1:
        keys[f"{prefix}.0.0.weight"] = (hidden, inp, 1, 1)
        keys |= _bn(f"{prefix}.0.1", hidden)
        index = 1
    keys[f"{prefix}.{index}.0.weight"] = (hidden, 1, kernel, kernel)
    keys |= _bn(f"{prefix}.{index}.1", hidden)
    se = f"{prefix}.{index + 1}"
    keys |= {f"{se}.fc1.weight": (squeeze, hidden, 1, 1), f"{se}.fc1.bias": (squeeze,)}
    keys |= {f"{se}.fc2.weight": (hidden, squeeze, 1, 1), f"{se}.fc2.bias": (hidden,)}
    keys[f"{prefix}.{index + 2}.0.weight"] = (out, hidden, 1, 1)
    return keys | _bn(f"{prefix}.{index + 2}.1", out)


def torchvision_efficientnet_keys(name: str) -> dict[str, Shape]:
    """Every key of torchvision's EfficientNet-B0/B3 state dict (1000 classes)."""
    stem, stages = EFFICIENTNET_STAGES[name]
    keys = {"features.0.0.weight": (stem, 3, 3, 3), **_bn("features.0.1", stem)}
    inp = stem
    for stage, (expand, kernel, out, count) in enumerate(stages, start=1):
        for index in range(count):
            keys |= _mbconv_keys(f"features.{stage}.{index}.block", inp, expand, kernel, out)
            inp = out
    head = 4 * inp
    keys["features.8.0.weight"] = (head, inp, 1, 1)
    keys |= _bn("features.8.1", head)
    return keys | {"classifier.1.weight": (1000, head), "classifier.1.bias": (1000,)}


TORCHVISION_KEYS = {
    "resnet18": lambda: torchvision_resnet_keys(False, (2, 2, 2, 2)),
    "resnet34": lambda: torchvision_resnet_keys(False, (3, 4, 6, 3)),
    "resnet50": lambda: torchvision_resnet_keys(True, (3, 4, 6, 3)),
    "mobilenet_v2": torchvision_mobilenet_v2_keys,
    "efficientnet_b0": lambda: torchvision_efficientnet_keys("efficientnet_b0"),
    "efficientnet_b3": lambda: torchvision_efficientnet_keys("efficientnet_b3"),
}

# Literal spot checks, one line each, straight from torchvision's module structure.
SPOT_CHECKS: dict[str, dict[str, Shape]] = {
    "resnet18": {
        "conv1.weight": (64, 3, 7, 7),
        "layer1.1.conv2.weight": (64, 64, 3, 3),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "layer4.1.bn2.running_var": (512,),
        "fc.weight": (1000, 512),
    },
    "resnet50": {
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer2.0.conv2.weight": (128, 128, 3, 3),  # v1.5: the stride lives here
        "layer4.2.conv3.weight": (2048, 512, 1, 1),
        "fc.weight": (1000, 2048),
    },
    "mobilenet_v2": {
        "features.1.conv.0.0.weight": (32, 1, 3, 3),
        "features.1.conv.1.weight": (16, 32, 1, 1),
        "features.2.conv.0.0.weight": (96, 16, 1, 1),
        "features.17.conv.3.bias": (320,),
        "features.18.0.weight": (1280, 320, 1, 1),
        "classifier.1.weight": (1000, 1280),
    },
    "efficientnet_b0": {
        "features.1.0.block.0.0.weight": (32, 1, 3, 3),
        "features.1.0.block.1.fc1.weight": (8, 32, 1, 1),
        "features.2.0.block.2.fc2.bias": (96,),
        "features.6.3.block.3.0.weight": (192, 1152, 1, 1),
        "features.8.0.weight": (1280, 320, 1, 1),
        "classifier.1.weight": (1000, 1280),
    },
    "efficientnet_b3": {
        "features.0.0.weight": (40, 3, 3, 3),
        "features.1.1.block.1.fc1.weight": (6, 24, 1, 1),
        "features.7.1.block.3.0.weight": (384, 2304, 1, 1),
        "features.8.0.weight": (1536, 384, 1, 1),
    },
}


def _meta_state_shapes(name: str) -> dict[str, Shape]:
    with torch.device("meta"):
        model = create_model(name, num_classes=1000)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


@pytest.mark.parametrize("name", sorted(TORCHVISION_KEYS))
def test_enumeration_matches_published_parameter_count(name: str) -> None:
    keys = TORCHVISION_KEYS[name]()
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    learnable = [shape for key, shape in keys.items() if not key.endswith(buffers)]
    assert sum(torch.Size(shape).numel() for shape in learnable) == PARAM_COUNTS[name]


@pytest.mark.parametrize("name", sorted(TORCHVISION_KEYS))
def test_state_dict_keys_and_shapes_match_torchvision(name: str) -> None:
    ours, theirs = _meta_state_shapes(name), TORCHVISION_KEYS[name]()
    assert sorted(set(theirs) - set(ours)) == [], "keys torchvision has and we lack"
    assert sorted(set(ours) - set(theirs)) == [], "keys we have and torchvision lacks"
    wrong = {key: (ours[key], shape) for key, shape in theirs.items() if ours[key] != shape}
    assert not wrong, f"shape mismatches (ours, torchvision): {wrong}"


@pytest.mark.parametrize("name", sorted(SPOT_CHECKS))
def test_literal_spot_checks(name: str) -> None:
    ours = _meta_state_shapes(name)
    for key, shape in SPOT_CHECKS[name].items():
        assert ours.get(key) == shape, f"{name}: {key} is {ours.get(key)}, torchvision {shape}"


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "efficientnet_b0"])
def test_foreign_checkpoint_loads_strict(name: str) -> None:
    generator = torch.Generator().manual_seed(0)
    foreign = {
        key: torch.tensor(7, dtype=torch.long)
        if key.endswith("num_batches_tracked")
        else torch.rand(shape, generator=generator) + 0.5
        for key, shape in TORCHVISION_KEYS[name]().items()
    }
    model = create_model(name, num_classes=1000)
    result = model.load_state_dict(foreign, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    loaded = model.state_dict()
    for key in (
        "features.0.0.weight",
        "fc.weight",
        "classifier.1.bias",
        "layer1.0.bn1.running_var",
    ):
        if key in foreign:
            torch.testing.assert_close(loaded[key], foreign[key])


# torchvision's classifier keys, the only ones `num_classes=0` leaves out.
CLASSIFIER_PREFIX = {
    "resnet": "fc.",
    "mobilenet_v2": "classifier.1.",
    "efficientnet": "classifier.1.",
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_KEYS))
def test_backbone_is_torchvision_minus_its_classifier(name: str) -> None:
    prefix = next(v for k, v in CLASSIFIER_PREFIX.items() if name.startswith(k))
    theirs = {k: s for k, s in TORCHVISION_KEYS[name]().items() if not k.startswith(prefix)}
    with torch.device("meta"):
        backbone = create_model(name, num_classes=0)
    ours = {key: tuple(value.shape) for key, value in backbone.state_dict().items()}
    assert ours == theirs
    # and a torchvision checkpoint, its classifier dropped, loads into it strictly
    foreign = {k: torch.zeros(s) for k, s in theirs.items()}
    foreign = {k: v.long() if k.endswith("num_batches_tracked") else v for k, v in foreign.items()}
    create_model(name, num_classes=0).load_state_dict(foreign, strict=True)
