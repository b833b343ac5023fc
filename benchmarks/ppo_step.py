"""The cost of one PPO gradient step of the MLP actor-critic: autograd (`rl.ppo.minibatch_loss`
+ backward + `clip_grad_norm_` + `optimizer.step()`) vs the hand-written gradient
(`rl/mlp_grad.py`) with `optimizer.step()` and with `AdamStep`, at the CartPole-v1 and
Pendulum-v1 defaults' shapes (`nanovla.rl.ppo.DEFAULTS`: rollout size, minibatch size, epochs).

Each variant runs `ppo.update` over the same random rollout, alternating variants, `--repeats`
times; printed: the median process CPU time per gradient step (CPU time, not wall time, so that
a shared machine's load shows less), and the ratio to autograd.

    OMP_NUM_THREADS=1 python benchmarks/ppo_step.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nanovla.rl import mlp_grad, ppo
from nanovla.rl.policy import ActorCritic, ActorCriticConfig

CONFIGS = {
    "CartPole-v1": ActorCriticConfig(obs_dim=4, action_dim=2, discrete=True),
    "Pendulum-v1": ActorCriticConfig(obs_dim=3, action_dim=1, discrete=False, action_low=(-2.0,),
                                     action_high=(2.0,)),
}  # fmt: skip


def setup(env_id: str) -> tuple:
    """An agent, its fused Adam, a random rollout of the defaults' size, the command."""
    cmd = ppo.PPOCommand(env=env_id, out="unused")
    ppo.apply_defaults(cmd, ppo.DEFAULTS, ppo.FALLBACK)
    agent = ActorCritic(CONFIGS[env_id])
    n = cmd.num_envs * cmd.num_steps
    obs = torch.randn(n, CONFIGS[env_id].obs_dim)
    with torch.no_grad():
        dist = agent.dist(obs)
        raw = dist.sample()
        logp, values = dist.log_prob(raw), agent.value(obs)
    batch = dict(obs=obs, raw=raw, logp=logp, values=values, returns=values + torch.randn(n),
                 adv=torch.randn(n))  # fmt: skip
    optimizer = torch.optim.Adam(agent.parameters(), lr=1e-4, eps=1e-5, fused=True)
    return agent, optimizer, batch, cmd


class OptimizerStep(mlp_grad.AdamStep):
    """`AdamStep` that always goes through `optimizer.step()`."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        super().__init__(optimizer)
        self.direct = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread; "
          "CPU us per gradient step (median)")  # fmt: skip
    adam_step = mlp_grad.AdamStep
    for env_id in CONFIGS:
        agent, optimizer, batch, cmd = setup(env_id)
        steps = cmd.update_epochs * -(-batch["logp"].shape[0] // cmd.minibatch_size)
        variants = {"autograd": (True, adam_step), "manual + optimizer.step": (False, OptimizerStep),
                    "manual + AdamStep": (False, adam_step)}  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, (autograd, step) in variants.items():
                mlp_grad.AdamStep = step  # what `ppo.update` builds for the manual path
                began = time.process_time()
                ppo.update(agent, optimizer, batch, cmd, 0.2, autograd=autograd)
                times[name].append((time.process_time() - began) / steps * 1e6)
        mlp_grad.AdamStep = adam_step
        base = np.median(times["autograd"])
        shape = f"minibatch {cmd.minibatch_size}, {steps} steps per update"
        for name, values in times.items():
            us = np.median(values)
            print(f"{env_id:<12} {shape:<34} {name:<24} {us:7.0f} us  {us / base:5.2f}x")


if __name__ == "__main__":
    main()
