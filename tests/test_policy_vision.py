"""The policy's vision side: vla_cnn keeps *where*, other backbones plug in by name."""

import pytest
import torch
from test_policy import make_batch, make_policy

from nanovla.models import create_model
from nanovla.models.policy.vision import tokens_to_grid
from nanovla.models.vision.vla_cnn import SpatialSoftmax


def test_spatial_softmax_finds_where_the_activation_is():
    features = torch.zeros(2, 1, 8, 8)
    features[0, 0, 1, 6] = 50.0  # top right
    features[1, 0, 7, 0] = 50.0  # bottom left
    keypoints = SpatialSoftmax()(features)  # (2, 1, 2) as (x, y) in [-1, 1]
    torch.testing.assert_close(keypoints[0, 0], torch.tensor([6 / 7 * 2 - 1, 1 / 7 * 2 - 1]))
    torch.testing.assert_close(keypoints[1, 0], torch.tensor([-1.0, 1.0]))


def test_vla_cnn_grid_and_head_shapes():
    model = create_model("vla_cnn", num_classes=5, in_chans=1)
    images = torch.randn(2, 1, 64, 64)
    grid = model.forward_features(images)
    assert grid.shape == (2, 32, 8, 8)  # 8x8 token grid, not a pooled vector
    torch.testing.assert_close(model(images), model.forward_head(grid))
    assert model.forward_head(grid, pre_logits=True).shape == (2, 96)  # (x, y, mean) per channel
    bare = create_model("vla_cnn", num_classes=0, global_pool="")
    assert not any("pool" in name or "head" in name for name, _ in bare.named_parameters())
    with pytest.raises(ValueError, match="global_pool"):
        create_model("vla_cnn", global_pool="avg")


def test_attention_readout_points_where_the_text_query_matches():
    from nanovla.models.policy.fusion import GridReadout

    readout = GridReadout((2, 4, 4), "attention", text_dim=2, heads=1, key_dim=2)
    with torch.no_grad():
        readout.keys.weight.copy_(torch.eye(2).view(2, 2, 1, 1) * 20)
        readout.keys.bias.zero_()
        readout.query.weight.copy_(torch.eye(2))
        readout.query.bias.zero_()
    grid = torch.zeros(1, 2, 4, 4)
    grid[0, 0, 0, 3] = 1.0  # "red" at the top right
    grid[0, 1, 3, 0] = 1.0  # "blue" at the bottom left
    red = readout(grid, torch.tensor([[1.0, 0.0]]))  # (1, 1 * (2 + 2))
    blue = readout(grid, torch.tensor([[0.0, 1.0]]))
    assert red[0, 0] > 0.8 and red[0, 1] < -0.8  # (x, y) near (1, -1)
    assert blue[0, 0] < -0.8 and blue[0, 1] > 0.8


def test_tokens_to_grid_drops_a_class_token():
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # cls + 2x2 patches
    grid = tokens_to_grid(tokens)
    assert grid.shape == (2, 3, 2, 2)
    torch.testing.assert_close(grid[:, :, 0, 1], tokens[:, 2])
    with pytest.raises(ValueError, match="square"):
        tokens_to_grid(torch.zeros(1, 7, 3))


@pytest.mark.parametrize("vision", ["simple_cnn", "vit_tiny_patch16_224"])
def test_other_backbones_plug_in_by_name(vision):
    policy = make_policy(vision=vision)
    loss, _ = policy(make_batch(batch_size=2))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in policy.vision.parameters() if p.requires_grad)
