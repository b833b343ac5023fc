"""The two-stream CNN (models/vision/two_stream.py): its shape stream cannot see hue."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nanovla.errors import InputError
from nanovla.labs.clip_pairs import hue_rotate
from nanovla.models import create_model
from nanovla.models.vision.two_stream import normalized_chroma


def _images(seed: int = 0) -> np.ndarray:
    """Random saturated blobs on a grey table, (4, 32, 32, 3) uint8."""
    rng = np.random.default_rng(seed)
    images = np.full((4, 32, 32, 3), 120, dtype=np.uint8)
    for image in images:
        y, x = rng.integers(4, 20, size=2)
        image[y : y + 8, x : x + 8] = rng.integers(0, 256, size=3)
    return images


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def test_normalized_chroma_by_hand_and_unchanged_by_a_hue_rotation() -> None:
    pixel = torch.tensor([0.9, 0.3, 0.0]).reshape(1, 3, 1, 1)
    expected = np.linalg.norm([0.9 - 0.4, 0.3 - 0.4, 0.0 - 0.4])  # over its own maximum
    assert normalized_chroma(pixel).item() == pytest.approx(expected / (expected + 0.05))
    images = _images()
    rotated = hue_rotate(images, np.array([1.0, 2.0, 3.0, 4.0]))
    # hue_rotate rounds to uint8, so equal within the rounding's share of the chroma
    torch.testing.assert_close(
        normalized_chroma(_tensor(rotated)), normalized_chroma(_tensor(images)), atol=0.03, rtol=0
    )


def test_shape_channels_ignore_hue_and_colour_channels_ignore_shape() -> None:
    torch.manual_seed(0)
    model = create_model("two_stream_cnn", num_classes=0, widths=(8,), colour_width=4).eval()
    images = _images()
    grid = model.forward_features(_tensor(images))
    assert grid.shape == (4, 12, 8, 8)
    # a grey (zero-chroma) shift of the table keeps chroma, so the shape channels stay
    x = _tensor(images) + 0.05
    turned = model.forward_features(x)
    torch.testing.assert_close(turned[:, :8], grid[:, :8], atol=1e-5, rtol=0)
    assert not torch.allclose(turned[:, 8:], grid[:, 8:])
    # the colour stream sees each 4x4 cell's mean colour only: shuffling pixels inside the
    # cells changes the shape channels, not the colour channels
    cells = x.reshape(4, 3, 8, 4, 8, 4)
    shuffled = cells.flip(3).reshape_as(x)
    other = model.forward_features(shuffled)
    torch.testing.assert_close(other[:, 8:], turned[:, 8:], atol=1e-5, rtol=0)
    assert model(x).shape == (4, 36) == (4, model.head_hidden_size)


def test_two_stream_classifier_and_bad_arguments() -> None:
    model = create_model("two_stream_cnn", num_classes=5)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 5)
    model.reset_classifier(0)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 3 * (32 + 16))
    with pytest.raises(InputError, match="in_chans must be 3"):
        create_model("two_stream_cnn", in_chans=1)
    with pytest.raises(InputError, match="colour_width"):
        create_model("two_stream_cnn", colour_width=0)
    with pytest.raises(InputError, match="fuse_width"):
        create_model("two_stream_fused_cnn", fuse_width=-1)


def test_fused_channels_follow_both_streams() -> None:
    torch.manual_seed(0)
    model = create_model("two_stream_fused_cnn", num_classes=0, widths=(8,), colour_width=4)
    model.eval()
    x = _tensor(_images())
    grid = model.forward_features(x)
    assert grid.shape == (4, 8 + 4 + 32, 8, 8) and model.head_hidden_size == 3 * 44
    # the fused channels are a 1x1 conv (+ BatchNorm, ReLU) of the first 12 at each place
    fuse = model.fuse
    torch.testing.assert_close(grid[:, 12:], fuse(grid[:, :12]))
    turned = model.forward_features(x + 0.05)  # grey shift: shape channels stay, others move
    torch.testing.assert_close(turned[:, :8], grid[:, :8], atol=1e-5, rtol=0)
    assert not torch.allclose(turned[:, 12:], grid[:, 12:])


def test_global_pool_empty_returns_the_grid_and_adds_no_parameters() -> None:
    pooled = create_model("two_stream_cnn", num_classes=0)
    plain = create_model("two_stream_cnn", num_classes=0, global_pool="")
    assert (
        sum(p.numel() for p in pooled.parameters())
        == sum(p.numel() for p in plain.parameters()) + 1
    )  # the spatial softmax's temperature
    x = torch.zeros(2, 3, 64, 64)
    assert plain(x).shape == (2, 48, 16, 16) and plain.head_hidden_size == 48
    pooled.reset_classifier(0, global_pool="")
    assert pooled.pool is None and pooled(x).shape == (2, 48, 16, 16)
    with pytest.raises(InputError, match="global_pool"):
        create_model("two_stream_cnn", global_pool="max")
