"""Model-specific behaviour of the CNN zoo beyond the registry-wide checks: LeNet's image sizes,
U-Net's padding and widths, the width/depth options and the errors bad arguments raise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nanovla.errors import InputError
from nanovla.models import create_model


def test_lenet_default_is_the_seeds_16x4x4() -> None:
    model = create_model("lenet")
    assert model.fc1.in_features == 16 * 4 * 4
    assert model.forward_features(torch.randn(2, 1, 28, 28)).shape == (2, 16, 4, 4)
    assert model.forward_head(torch.randn(2, 16, 4, 4), pre_logits=True).shape == (2, 84)


def test_lenet_other_sizes_and_channels() -> None:
    model = create_model("lenet", num_classes=3, in_chans=3, img_size=32)
    assert model.fc1.in_features == 16 * 5 * 5
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    digits = torch.rand(4, 1, 8, 8)  # sklearn digits, upscaled as the docstring says
    upscaled = F.interpolate(digits, size=16, mode="bilinear")
    assert create_model("lenet", img_size=16)(upscaled).shape == (4, 10)


def test_lenet_rejects_too_small_or_mismatched_images() -> None:
    with pytest.raises(ValueError, match="img_size must be >= 16"):
        create_model("lenet", img_size=8)
    with pytest.raises(ValueError, match="built for 28x28 inputs, got \\(32, 32\\)"):
        create_model("lenet")(torch.randn(1, 1, 32, 32))


def test_simple_cnn_takes_any_size_and_doubles_widths() -> None:
    model = create_model("simple_cnn", num_classes=4, in_chans=1, width=8, num_blocks=3).eval()
    assert [block.conv2.out_channels for block in model.blocks] == [8, 16, 32]
    assert model.forward_features(torch.randn(2, 1, 17, 9)).shape == (2, 32, 4, 2)
    assert model(torch.randn(2, 1, 4, 4)).shape == (2, 4)
    with pytest.raises(ValueError, match="width and num_blocks"):
        create_model("simple_cnn", num_blocks=0)


@pytest.mark.parametrize(("height", "width"), [(16, 16), (13, 19), (5, 8)])
def test_unet_keeps_any_input_size(height: int, width: int) -> None:
    model = create_model("unet", num_classes=3, base_width=4, depth=2).eval()
    x = torch.randn(2, 3, height, width)
    assert model.forward_features(x).shape == (2, 4, height, width)
    assert model(x).shape == (2, 3, height, width)


def test_unet_pads_bottom_right_with_zeros_and_crops() -> None:
    torch.manual_seed(0)
    model = create_model("unet", num_classes=2, base_width=4, depth=2).eval()
    x = torch.randn(1, 3, 13, 19)
    padded = F.pad(x, (0, 1, 0, 3))  # 16 x 20: multiples of 2**depth, so no internal padding
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(padded)[..., :13, :19])


def test_unet_widths_follow_base_width_and_depth() -> None:
    model = create_model("unet", in_chans=1, base_width=8, depth=3)
    assert [block.conv2.out_channels for block in model.encoders] == [8, 16, 32]
    assert model.bottleneck.conv2.out_channels == 64
    assert [up.out_channels for up in model.upconvs] == [32, 16, 8]
    assert model.encoders[0].conv1.in_channels == 1


def test_unet_learns_a_mask() -> None:
    torch.manual_seed(0)
    model = create_model("unet", num_classes=2, base_width=4, depth=2)
    images = torch.rand(4, 3, 12, 12)
    masks = (images[:, 0] > 0.5).long()  # (B, H, W): class 1 where the red channel is bright
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(images), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_unet_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="depth must be >= 1"):
        create_model("unet", depth=0)
    with pytest.raises(ValueError, match="base_width"):
        create_model("unet", base_width=0)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "efficientnet_b0"])
def test_in_chans_changes_only_the_stem(name: str) -> None:
    with torch.device("meta"):
        rgb = create_model(name, num_classes=7).state_dict()
        gray = create_model(name, num_classes=7, in_chans=1).state_dict()
    changed = [key for key in rgb if rgb[key].shape != gray[key].shape]
    assert len(changed) == 1 and changed[0] in ("conv1.weight", "features.0.0.weight")
    assert gray[changed[0]].shape[1] == 1


def test_mobilenet_width_multiplier_rounds_to_8() -> None:
    model = create_model("mobilenet_v2", num_classes=10, width_mult=0.5).eval()
    assert model.features[0][0].out_channels == 16
    assert model.features[17].out_channels == 160
    assert model.num_features == 1280  # the last conv never shrinks below 1280
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_efficientnet_compound_scaling_depths_and_head() -> None:
    with torch.device("meta"):
        b0, b3 = create_model("efficientnet_b0"), create_model("efficientnet_b3")
    assert [len(stage) for stage in b0.features[1:8]] == [1, 2, 2, 3, 3, 4, 1]
    assert [len(stage) for stage in b3.features[1:8]] == [2, 3, 3, 5, 5, 6, 2]
    assert (b0.num_features, b3.num_features) == (1280, 1536)
    assert (b0.classifier[0].p, b3.classifier[0].p) == (0.2, 0.3)
    probs = [block.stochastic_depth.p for stage in b0.features[1:8] for block in stage]
    assert probs[0] == 0.0 and probs == sorted(probs) and probs[-1] == pytest.approx(0.2 * 15 / 16)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("mobilenet_v2", {"width_mult": 0.0}, "width_mult must be > 0"),
        ("resnet18", {"num_classes": -1}, "num_classes must be >= 0 and in_chans >= 1"),
        ("lenet", {"img_size": 8}, "img_size must be >= 16"),
        ("vla_cnn", {"stem_stride": 0}, "stem_stride must be >= 1"),
        ("unet", {"num_classes": -1}, "num_classes >= 0"),
    ],
)
def test_bad_arguments_raise_input_error(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        create_model(name, **kwargs)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("resnet18", {}),
        ("mobilenet_v2", {}),
        ("efficientnet_b0", {}),
        ("unet", {"base_width": 4, "depth": 2}),
        ("simple_cnn", {"width": 8}),
    ],
)
def test_channels_last_gives_the_same_output(name: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, **kwargs).eval()
    x = torch.randn(2, 3, 36, 36)
    with torch.no_grad():
        contiguous = model(x)
        model = model.to(memory_format=torch.channels_last)
        channels_last = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(channels_last, contiguous, rtol=1e-4, atol=1e-5)
