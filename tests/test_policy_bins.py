"""The binned (classification) action head: two-hot targets, mode decoding, loss, policy use."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nanovla.models.policy import Policy, PolicyConfig
from nanovla.models.policy.heads import BinnedActionHead
from nanovla.models.policy.loss import masked_binned_loss
from tests.test_policy import make_batch, make_obs, make_policy


def test_two_hot_puts_a_value_on_its_two_nearest_bins_and_decodes_back_exactly():
    head = BinnedActionHead(in_dim=4, chunk=1, action_dim=1, bins=5)  # centres -1,-.5,0,.5,1
    values = torch.tensor([-1.0, -0.8, 0.0, 0.3, 0.99, 1.0])
    dist = head.two_hot(values)
    assert dist.shape == (6, 5)
    torch.testing.assert_close(dist.sum(-1), torch.ones(6))
    torch.testing.assert_close(dist[0], torch.tensor([1.0, 0, 0, 0, 0]))
    torch.testing.assert_close(dist[1], torch.tensor([0.6, 0.4, 0, 0, 0]))
    torch.testing.assert_close(dist[3], torch.tensor([0, 0, 0.4, 0.6, 0]))
    torch.testing.assert_close(dist[5], torch.tensor([0, 0, 0, 0, 1.0]))
    torch.testing.assert_close((dist * head.centres).sum(-1), values)  # mean recovers the value
    logits = dist.clamp_min(1e-12).log()
    torch.testing.assert_close(head.decode(logits), values, atol=1e-5, rtol=0)


def test_decode_commits_to_the_mode_where_the_mean_would_average_two_modes():
    head = BinnedActionHead(in_dim=4, chunk=1, action_dim=1, bins=21)
    probs = torch.zeros(21)
    probs[0], probs[20] = 0.55, 0.45  # "sidestep left" vs "sidestep right"
    decoded = head.decode(probs.log())
    assert decoded.item() == pytest.approx(-1.0)
    assert (probs * head.centres).sum().item() == pytest.approx(-0.1)  # what regression learns


def test_binned_loss_is_two_hot_cross_entropy_over_valid_entries():
    head = BinnedActionHead(in_dim=4, chunk=3, action_dim=2, bins=7)
    logits = torch.randn(2, 3, 2, 7)
    target = torch.rand(2, 3, 2) * 2 - 1
    is_pad = torch.tensor([[False, False, True], [False, True, True]])
    loss = masked_binned_loss(logits, head.two_hot(target), is_pad)
    ce = -(head.two_hot(target) * F.log_softmax(logits, -1)).sum(-1)  # (2, 3, 2)
    expected = torch.cat([ce[0, :2].flatten(), ce[1, :1].flatten()]).mean()
    torch.testing.assert_close(loss, expected)
    weights = torch.tensor([2.0, 0.0])
    weighted = masked_binned_loss(logits, head.two_hot(target), is_pad, weights)
    valid = torch.cat([ce[0, :2], ce[1, :1]])  # (3, 2)
    torch.testing.assert_close(weighted, (valid * weights).sum() / valid.numel())


def test_a_bins_policy_trains_acts_and_round_trips(tmp_path):
    policy = make_policy(seed=1, action_head="bins", action_bins=11)
    batch = make_batch()
    loss, metrics = policy(batch)
    assert set(metrics) == {"loss", "l1", "l1_dx", "l1_dy", "l1_grip"}
    loss.backward()
    for name, parameter in policy.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    obs = make_obs(num_envs=4)
    actions = policy.select_action(obs)
    assert actions.shape == (4, 3) and np.all(np.abs(actions) <= 1.0)
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = Policy.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.action_head == "bins" and loaded.config.action_bins == 11
    np.testing.assert_array_equal(loaded.select_action(obs), actions)


def test_a_bins_policy_fits_a_bimodal_target_at_a_mode_not_the_mean():
    """For the very same input 5 of 8 labels say -0.8 and 3 say +0.6: MSE regression learns
    their mean (-0.275), the binned head the majority mode."""
    torch.manual_seed(0)
    batch = make_batch(batch_size=8)
    for key in ("observation.image", "observation.state"):
        batch[key] = batch[key][:1].expand_as(batch[key]).contiguous()
    batch["task"] = [batch["task"][0]] * 8
    batch["action"] = torch.full_like(batch["action"], -0.8)
    batch["action"][5:] = 0.6
    batch["action_is_pad"][:] = False
    decoded = {}
    for head in ("tanh", "bins"):
        policy = make_policy(seed=0, action_head=head, loss="mse", dropout=0.0)
        optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
        for _ in range(100):
            optimizer.zero_grad()
            policy(batch)[0].backward()
            optimizer.step()
        decoded[head] = policy.select_action(_obs_of(batch))[0, 0]
    assert decoded["bins"] == pytest.approx(-0.8, abs=0.05)
    assert decoded["tanh"] == pytest.approx(-0.275, abs=0.1)


def _obs_of(batch: dict) -> dict:
    return {
        "image": batch["observation.image"][:1].permute(0, 2, 3, 1).numpy(),
        "state": batch["observation.state"][:1].numpy(),
        "instruction": batch["task"][:1],
    }


def test_bad_bin_settings_are_rejected():
    with pytest.raises(ValueError, match="action_bins"):
        PolicyConfig(action_head="bins", action_bins=1)
    with pytest.raises(ValueError, match="action_head"):
        PolicyConfig(action_head="diffusion")
