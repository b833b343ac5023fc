"""nanovla.rl's formulas against hand computations and torch.distributions: GAE, reward-to-go,
the PPO clipped objective / KL / value loss, the distributions (tanh change of variables), and
the running normalization."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from nanovla.rl.distributions import Categorical, DiagGaussian, TanhGaussian, tanh_log_det
from nanovla.rl.normalize import RewardScaler, RunningMeanStd
from nanovla.rl.ppo import clipped_surrogate, value_loss
from nanovla.rl.returns import gae, reward_to_go


def column(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)[:, None]  # (T, N=1)


def test_gae_matches_a_hand_computation():
    # rewards 1, 2, 3; V 0.5, 1, 1.5; the episode ends on step 1; V(after) = 2; gamma .9, lam .8
    # t=2: delta = 3 + .9 * 2 - 1.5 = 3.3, A = 3.3
    # t=1: done, delta = 2 - 1 = 1, A = 1
    # t=0: delta = 1 + .9 * 1 - .5 = 1.4, A = 1.4 + .9 * .8 * 1 = 2.12
    adv, ret = gae(column(1, 2, 3), column(0.5, 1, 1.5), column(0, 1, 0), torch.tensor([2.0]),
                   gamma=0.9, lam=0.8)  # fmt: skip
    assert torch.allclose(adv[:, 0], torch.tensor([2.12, 1.0, 3.3], dtype=torch.float64))
    assert torch.allclose(ret[:, 0], torch.tensor([2.62, 2.0, 4.8], dtype=torch.float64))


def test_gae_with_lambda_one_is_the_bootstrapped_return_minus_value():
    torch.manual_seed(0)
    rewards, values = torch.randn(6, 3), torch.randn(6, 3)
    dones, last = torch.zeros(6, 3), torch.randn(3)
    adv, ret = gae(rewards, values, dones, last, gamma=0.7, lam=1.0)
    discounts = 0.7 ** torch.arange(6.0)
    expected = (discounts[:, None] * rewards).sum(0) + 0.7**6 * last
    assert torch.allclose(ret[0], expected, atol=1e-5)
    assert torch.allclose(adv, ret - values)


def test_reward_to_go_stops_at_episode_ends():
    # gamma .5: G3 = 4, G2 = 3 + .5 * 4 = 5, G1 = 2 (its episode ends there), G0 = 1 + .5 * 2
    got = reward_to_go(column(1, 2, 3, 4), column(0, 1, 0, 0), gamma=0.5)
    assert got[:, 0].tolist() == [2.0, 2.0, 5.0, 4.0]


def test_clipped_surrogate_matches_a_hand_computation():
    ratios = torch.tensor([1.5, 0.5, 1.1])
    old = torch.tensor([-1.0, -2.0, -0.3])
    adv = torch.tensor([1.0, 1.0, -2.0])
    loss, kl, clipfrac = clipped_surrogate(old + ratios.log(), old, adv, clip=0.2)
    # min(1.5, 1.2) * 1 = 1.2; min(0.5, 0.8) * 1 = 0.5; min(-2.2, -2.4 clipped 1.2 -> -2.4)...
    # ratio 1.1 is inside the clip range: both terms are -2.2
    assert loss.item() == pytest.approx(-(1.2 + 0.5 - 2.2) / 3)
    assert clipfrac.item() == pytest.approx(2 / 3)
    expected_kl = np.mean([(r - 1) - math.log(r) for r in (1.5, 0.5, 1.1)])
    assert kl.item() == pytest.approx(expected_kl, rel=1e-6)


def test_clipped_surrogate_gradient_vanishes_outside_the_clip_range():
    new = torch.tensor([math.log(1.5), math.log(0.5)], requires_grad=True)
    loss, _, _ = clipped_surrogate(new, torch.zeros(2), torch.tensor([1.0, -1.0]), clip=0.2)
    loss.backward()
    assert new.grad.tolist() == [0.0, 0.0]  # A > 0 above 1 + eps, A < 0 below 1 - eps: no push


def test_value_loss_plain_and_clipped():
    new, old, ret = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.5]), torch.tensor([3.0, 0.4])
    assert value_loss(new, old, ret, None).item() == pytest.approx((1.0 + 0.16) / 2)
    # clipped values: 1 + clip(1, -.2, .2) = 1.2 -> (1.2 - 3)^2 = 3.24; .5 - .2 = .3 -> .01
    clipped = value_loss(new, old, ret, 0.2).item()
    assert clipped == pytest.approx((max(1.0, 3.24) + max(0.16, 0.01)) / 2)


def test_categorical_matches_torch():
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    ours, ref = Categorical(logits), torch.distributions.Categorical(logits=logits)
    actions = torch.tensor([0, 3, 1, 2, 2])
    assert torch.allclose(ours.log_prob(actions), ref.log_prob(actions))
    assert torch.allclose(ours.entropy(), ref.entropy())
    assert torch.equal(ours.mode(), logits.argmax(-1))


def test_diag_gaussian_matches_torch():
    mean, log_std = torch.randn(6, 3), torch.randn(3) * 0.5
    ours, ref = DiagGaussian(mean, log_std), Normal(mean, log_std.exp())
    u = torch.randn(6, 3)
    assert torch.allclose(ours.log_prob(u), ref.log_prob(u).sum(-1), atol=1e-6)
    assert torch.allclose(ours.entropy(), ref.entropy().sum(-1), atol=1e-6)


def test_tanh_log_prob_matches_torch_transformed_distribution():
    mean, log_std = torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    ours = TanhGaussian(mean, log_std)
    u = mean + log_std.exp() * torch.randn(8, 2, dtype=torch.float64)
    ref = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()])
    assert torch.allclose(ours.log_prob(u), ref.log_prob(torch.tanh(u)).sum(-1), atol=1e-8)


def test_tanh_log_prob_is_the_numeric_change_of_variables():
    # p(a) = N(u) / |da/du| with da/du estimated by a central difference of tanh
    mean, log_std = torch.tensor([[0.3]], dtype=torch.float64), torch.tensor([-0.2])
    for u0 in (-2.5, -0.4, 0.0, 1.7):
        u, h = torch.tensor([[u0]], dtype=torch.float64), 1e-6
        slope = (math.tanh(u0 + h) - math.tanh(u0 - h)) / (2 * h)
        normal = Normal(mean, log_std.exp().double()).log_prob(u).sum().item()
        expected = normal - math.log(slope)
        assert TanhGaussian(mean, log_std).log_prob(u).item() == pytest.approx(expected, abs=1e-6)


def test_tanh_log_det_is_stable_where_the_naive_form_is_not():
    u = torch.tensor([30.0, -30.0])
    assert torch.isfinite(tanh_log_det(u)).all()
    assert torch.log(1 - torch.tanh(u) ** 2).isinf().all()  # the naive form underflows
    assert tanh_log_det(torch.tensor([0.5])).item() == pytest.approx(
        math.log(1 - math.tanh(0.5) ** 2)
    )


def test_running_mean_std_equals_numpy_over_all_batches():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 2)) for n in (1, 7, 40)]
    stats = RunningMeanStd((2,))
    for batch in batches:
        stats.update(torch.from_numpy(batch))
    data = np.concatenate(batches)
    # the statistics start from a pseudo-count 1e-4 at mean 0, var 1
    assert np.allclose(stats.mean.numpy(), data.mean(0), atol=1e-4)
    assert np.allclose(stats.var.numpy(), data.var(0), rtol=1e-4)
    assert stats.count.item() == pytest.approx(len(data) + 1e-4)


def test_normalize_round_trip_and_clip():
    stats = RunningMeanStd((3,), clip=5.0)
    stats.update(torch.randn(100, 3, dtype=torch.float64) * 4 + 1)
    x = torch.randn(10, 3, dtype=torch.float64) * 4 + 1
    assert torch.allclose(stats.denormalize(stats.normalize(x)), x, atol=1e-9)
    assert stats.normalize(torch.full((1, 3), 1e6, dtype=torch.float64)).max().item() == 5.0


def test_reward_scaler_divides_by_the_return_std_and_restarts_returns():
    scaler = RewardScaler(num_envs=2, gamma=0.5)
    out = scaler(np.array([1.0, 2.0]), np.array([True, False]))
    scale = math.sqrt(scaler.stats.var.item() + 1e-8)
    assert np.allclose(out, np.array([1.0, 2.0]) / scale, atol=1e-6)
    assert scaler.returns.tolist() == [0.0, 2.0]  # env 0's episode ended
    state = scaler.state_dict()
    other = RewardScaler(num_envs=2, gamma=0.5)
    other.load_state_dict(state)
    rewards, dones = np.array([0.5, -1.0]), np.array([False, False])
    assert np.array_equal(scaler(rewards, dones), other(rewards, dones))
