"""The hand-written PPO gradient (`rl/mlp_grad.py`) against autograd on `rl.ppo`'s loss, and
`AdamStep` against `optimizer.step()`."""

import copy

import pytest
import torch

from nanovla.rl import mlp_grad, ppo
from nanovla.rl.policy import ActorCritic, ActorCriticConfig

CASES = {
    "categorical": (dict(discrete=True, action_dim=3), {}),
    "categorical-relu-entropy": (dict(discrete=True, action_dim=2, activation="relu"),
                                 dict(ent_coef=0.05, clip_vloss=True)),
    "gaussian-clip": (dict(discrete=False, action_dim=2), dict(clip_vloss=True, ent_coef=0.01)),
    "gaussian-tanh-state": (dict(discrete=False, action_dim=2, squash="tanh", log_std="state",
                                 log_std_init=1.8), dict(ent_coef=0.02)),
    "gaussian-no-norm-adv": (dict(discrete=False, action_dim=1, hidden=(16,)),
                             dict(norm_adv=False)),
}  # fmt: skip


def _setup(case: str, dtype: torch.dtype, n: int = 96, seed: int = 0):
    net, options = CASES[case]
    torch.manual_seed(seed)
    box = {} if net["discrete"] else dict(action_low=(-1.0,) * net["action_dim"],
                                          action_high=(1.0,) * net["action_dim"])  # fmt: skip
    agent = ActorCritic(ActorCriticConfig(obs_dim=5, **net, **box)).to(dtype)
    with torch.no_grad():  # weights away from the init, so every term has a gradient
        for p in agent.parameters():
            p.add_(0.3 * torch.randn_like(p))
    obs = torch.randn(n, 5, dtype=dtype)
    with torch.no_grad():
        dist = agent.dist(obs)
        raw = dist.sample()
        # old log-probs and values off the current ones: ratios and values on both sides of the
        # clip range
        logp = dist.log_prob(raw) + 0.4 * torch.randn(n, dtype=dtype)
        values = agent.value(obs) + 0.5 * torch.randn(n, dtype=dtype)
    batch = dict(obs=obs, raw=raw, logp=logp, values=values,
                 returns=values + torch.randn(n, dtype=dtype), adv=torch.randn(n, dtype=dtype))  # fmt: skip
    cmd = ppo.PPOCommand(env="CartPole-v1", out="unused", **options)
    ppo.apply_defaults(cmd, ppo.DEFAULTS, ppo.FALLBACK)
    return agent, batch, cmd


@pytest.mark.parametrize("max_grad_norm", [1e6, 0.5])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_manual_gradient_equals_autograd(case, dtype, max_grad_norm):
    agent, batch, cmd = _setup(case, dtype)
    cmd.max_grad_norm = max_grad_norm
    idx = torch.arange(batch["logp"].shape[0])
    ref = ppo.minibatch_loss(agent, batch, idx, cmd, 0.2)
    ref["loss"].backward()
    params = list(agent.parameters())
    ref_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    expected = [p.grad.clone() for p in params]
    assert ref["clipfrac"] > 0.1  # the clipped branch is exercised
    for p in params:
        p.grad = None
    grad = mlp_grad.PPOGrad(agent)
    out = grad.step(grad.pack(batch), 0.2, cmd, stats=True)
    tol = 1e-10 if dtype == torch.float64 else 1e-6
    names = [name for name, _ in agent.named_parameters()]
    for name, p, e in zip(names, params, expected, strict=True):
        assert torch.allclose(p.grad, e, atol=tol, rtol=0), (name, (p.grad - e).abs().max())
    for key in ("pg_loss", "v_loss", "entropy", "approx_kl", "clipfrac"):
        assert torch.allclose(out[key], ref[key].detach(), atol=tol * 10, rtol=0), key
    assert torch.allclose(out["grad_norm"], ref_norm, atol=tol * 10, rtol=1e-6)


def test_state_std_clamp_blocks_the_gradient_outside_the_range():
    agent, batch, cmd = _setup("gaussian-tanh-state", torch.float64)
    with torch.no_grad():
        agent.policy_head.bias[2:] = 10.0  # every log-std clamped to the upper bound
    grad = mlp_grad.PPOGrad(agent)
    grad.step(grad.pack(batch), 0.2, cmd, stats=False)
    assert torch.equal(
        agent.policy_head.weight.grad[2:], torch.zeros_like(agent.policy_head.weight[2:])
    )


@pytest.mark.parametrize("case", ["categorical", "gaussian-tanh-state"])
def test_update_manual_equals_autograd_over_epochs(case):
    agent, batch, cmd = _setup(case, torch.float64, n=128)
    cmd.minibatch_size, cmd.update_epochs = 32, 3
    other = copy.deepcopy(agent)
    results = []
    for net, autograd in ((agent, False), (other, True)):
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-5, fused=True)
        torch.manual_seed(1)  # the same permutations
        results.append(ppo.update(net, optimizer, batch, cmd, 0.2, autograd=autograd))
    for (name, a), b in zip(agent.named_parameters(), other.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-9, rtol=0), name
    assert results[0].keys() == results[1].keys()
    for key in results[0]:
        assert results[0][key] == pytest.approx(results[1][key], abs=1e-9), key


def test_adam_step_is_bit_identical_to_optimizer_step():
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))]
    nets.append(copy.deepcopy(nets[0]))
    optimizers = [torch.optim.Adam(n.parameters(), lr=1e-2, eps=1e-5, fused=True) for n in nets]
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda u: 1.0 - u / 10) for o in optimizers]
    fast = mlp_grad.AdamStep(optimizers[0])
    assert fast.direct
    for step in range(6):
        x = torch.randn(16, 4)
        for net, call in zip(nets, (fast, optimizers[1].step), strict=True):
            if step:
                net.zero_grad(set_to_none=False)
            net(x).pow(2).mean().backward()
            call()
        for scheduler in schedulers:
            scheduler.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)
    sa, sb = optimizers[0].state_dict(), optimizers[1].state_dict()
    for i in sa["state"]:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa["state"][i][key], sb["state"][i][key])


def test_adam_step_falls_back_for_other_optimizers():
    net = torch.nn.Linear(3, 1)
    for optimizer in (torch.optim.Adam(net.parameters(), amsgrad=True, fused=True),
                      torch.optim.Adam(net.parameters()), torch.optim.SGD(net.parameters(), 0.1)):  # fmt: skip
        assert not mlp_grad.AdamStep(optimizer).direct


@pytest.mark.parametrize("case", list(CASES))
def test_addmm_forward_equals_the_modules(case):
    agent, batch, _ = _setup(case, torch.float32)
    with torch.no_grad():
        dist, value = agent.dist_value(batch["obs"])
        out = agent.policy_head(agent.actor.mlp(batch["obs"]))  # nn.Module dispatch
        plain_value = agent.value_head(agent.critic.mlp(batch["obs"])).squeeze(-1)
    plain = agent._dist(out)
    assert torch.equal(value, plain_value)
    assert torch.equal(dist.log_prob(batch["raw"]), plain.log_prob(batch["raw"]))
