"""REINFORCE with reward-to-go and a learned baseline: `nanovla rl reinforce --env CartPole-v1`.

Paper: Williams, "Simple Statistical Gradient-Following Algorithms for Connectionist
Reinforcement Learning", Machine Learning 8, 1992, https://doi.org/10.1007/BF00992696
(reward-to-go and the baseline as in Sutton & Barto 2018, section 13.4, and OpenAI Spinning Up's
"vanilla policy gradient").

Read top to bottom:

1. `ReinforceCommand`: the options; `DEFAULTS` per env.
2. `collect_episodes`: one complete episode in each of the `num_envs` envs with the current
   (stochastic) policy. The envs are reset with seeds `seed + update * num_envs + i`; an env
   whose episode ended keeps stepping (the batch moves together) but its later steps are masked
   out. Categorical policies for discrete actions, Gaussian policies for continuous ones
   (state-independent or state-dependent log-std; the sample clipped to the box, or tanh-squashed
   with the log-probability correction: `--squash`, see `rl/distributions.py`).
3. `policy_gradient_loss`: G_t = sum_{k >= t} gamma^{k-t} r_k (reward-to-go, `rl/returns.py`:
   an action is credited only with the rewards after it, which lowers the variance of the
   estimate without biasing it). The gradient estimate is mean_t grad log pi(a_t|s_t) (G_t - b_t);
   with `--baseline` (default), b_t = V(s_t), the critic as it was before this batch, then
   fitted to the batch's G_t by `value_steps` Adam steps on the MSE (`fit_baseline`;
   subtracting any function of the state leaves the expectation unchanged and, close to
   E[G_t | s_t], lowers its variance); with `--no-baseline`, b_t = 0. `charts/weight_std` logs the
   standard deviation of the weights (G_t - b_t) multiplying the score, the variance that the
   baseline is there to cut.
4. `train`: updates until `total_steps` env steps (counting every step the envs took, masked
   ones included), logs with CleanRL's keys, checkpoints, `eval.json`.

Departures from the seed's `PolicyGradient` (which normalizes the returns of one episode and
updates after every episode): a batch of `num_envs` episodes per update, reward-to-go per step
instead of the full return, the learned value baseline instead of (or, with `--normalize`,
followed by) normalization, and the Gaussian policy's options above; Adam for both networks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import torch

from nanovla.progress import progress
from nanovla.rl import rollout as ro
from nanovla.rl.envs import make_vec_env
from nanovla.rl.policy import ActorCritic, ActorCriticLike, config_for
from nanovla.rl.returns import reward_to_go
from nanovla.rl.run import (
    PER_ENV,
    RunOptions,
    apply_defaults,
    check_fraction,
    check_positive,
    describe_defaults,
    run_command,
)

DEFAULTS: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(total_steps=300_000, num_envs=16, learning_rate=5e-3, gamma=0.99),
    "Pendulum-v1": dict(total_steps=300_000, num_envs=16, learning_rate=3e-3, gamma=0.9),
}
"""per-env defaults of the options left unset"""
FALLBACK: dict[str, Any] = dict(total_steps=300_000, num_envs=16, learning_rate=3e-3, gamma=0.99)


@dataclass
class ReinforceCommand(RunOptions):
    """Train a policy with REINFORCE; writes checkpoints, logs, eval.json."""

    learning_rate: Annotated[float | None, PER_ENV] = None
    """Adam learning rate of the policy and the baseline"""
    gamma: Annotated[float | None, PER_ENV] = None
    """discount factor of the reward-to-go"""
    baseline: bool = True
    """subtract a learned value baseline V(s_t) from the reward-to-go (--no-baseline: none)"""
    normalize: bool = False
    """standardize the weights (G_t - b_t) over each batch"""
    value_steps: int = 20
    """full-batch Adam steps fitting the baseline to each batch's reward-to-go (after the policy
    step; Spinning Up's train_v_iters)"""
    max_grad_norm: float = 10.0
    """gradient norm clip"""


def resolve(command: ReinforceCommand) -> ReinforceCommand:
    """Fill the per-env defaults in place and check the hyper-parameters."""
    apply_defaults(command, DEFAULTS, FALLBACK)
    for name in ("learning_rate", "total_steps", "num_envs", "max_grad_norm"):
        check_positive(name, getattr(command, name))
    check_positive("value_steps", command.value_steps)
    check_fraction("gamma", command.gamma)
    return command


def collect_episodes(
    agent: ActorCriticLike, env: Any, state: ro.RolloutState, seed: int, cmd: ReinforceCommand
) -> dict[str, Any]:
    """One episode per env (see the module docs); returns (T, N) tensors and the episodes."""
    state.obs = agent.prepare(env.reset(seed=seed), update_stats=True)
    state.ep_return[:], state.ep_length[:] = 0.0, 0
    active = np.ones(env.num_envs, dtype=bool)
    steps, episodes = [], [None] * env.num_envs
    while active.any():
        with torch.no_grad():
            raw = agent.dist(state.obs).sample()
        mask = torch.from_numpy(active.astype(np.float32))
        ended = state.ep_return.copy(), state.ep_length.copy()
        reward, done, _ = ro.env_step(agent, env, state, agent.env_action(raw), cmd)
        for i in np.flatnonzero(active & done.numpy().astype(bool)):
            episodes[i] = (float(ended[0][i] + reward[i]), int(ended[1][i] + 1))
        steps.append({"obs": state.prev_obs, "raw": raw, "rewards": reward * mask,
                      "dones": done, "mask": mask})  # fmt: skip
        active &= ~done.numpy().astype(bool)
    state.finished = list(episodes)
    return ro.stack(steps)


def policy_gradient_loss(
    agent: ActorCriticLike, batch: dict[str, Any], cmd: ReinforceCommand
) -> tuple[torch.Tensor, dict[str, float], tuple[Any, torch.Tensor]]:
    """(REINFORCE loss, metrics, (observations, reward-to-go) for the baseline's fit) of a
    (T, N) batch of episodes; the baseline is the critic as it was before this batch."""
    returns = reward_to_go(batch["rewards"], batch["dones"], cmd.gamma)
    flat = ro.flatten({"obs": batch["obs"], "raw": batch["raw"], "returns": returns,
                       "mask": batch["mask"]})  # fmt: skip
    keep = flat["mask"].bool()
    obs, raw, g = ro.index(flat["obs"], keep), flat["raw"][keep], flat["returns"][keep]
    dist = agent.dist(obs)
    weights = g
    if cmd.baseline:
        with torch.no_grad():
            weights = g - agent.value(obs)
    if cmd.normalize and len(weights) > 1:
        weights = (weights - weights.mean()) / (weights.std() + 1e-8)
    pg_loss = -(dist.log_prob(raw) * weights).mean()
    metrics = {"losses/policy_loss": float(pg_loss.detach()),
               "losses/entropy": float(dist.entropy().mean().detach()),
               "charts/weight_std": float(weights.std()) if len(weights) > 1 else 0.0}  # fmt: skip
    return pg_loss, metrics, (obs, g)


def fit_baseline(
    agent: ActorCriticLike, optimizer: torch.optim.Optimizer, obs: Any, returns: torch.Tensor,
    cmd: ReinforceCommand,
) -> float:  # fmt: skip
    """`value_steps` full-batch Adam steps on mean((V(s_t) - G_t)^2); returns the last loss."""
    loss = torch.zeros(())
    for _ in range(cmd.value_steps):
        loss = torch.nn.functional.mse_loss(agent.value(obs), returns)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # only the critic gets gradients: Adam leaves the actor alone
        torch.nn.utils.clip_grad_norm_(agent.parameters(), cmd.max_grad_norm)
        optimizer.step()
    return float(loss.detach())


def train(cmd: ReinforceCommand) -> dict[str, Any]:
    """Run REINFORCE as `cmd` says (resolved and checked first); returns eval.json's content."""
    resolve(cmd)
    run = ro.Run(cmd)  # checks --out and seeds; the env and the networks check the rest
    env = make_vec_env(cmd.env, cmd.num_envs, cmd.world_obs, cmd.world_reward, cmd.image_size)
    agent = ActorCritic(config_for(env, cmd.hidden, cmd.activation, cmd.squash, cmd.log_std,
                                   cmd.log_std_init, False))  # fmt: skip
    with run:
        optimizer = torch.optim.Adam(agent.parameters(), lr=cmd.learning_rate, fused=True)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda update: 1.0)
        state = ro.RolloutState.fresh(agent, env, cmd.seed, None)
        start = run.resume(agent, optimizer, scheduler, state, env)
        bar = progress(total=cmd.total_steps, initial=state.global_step, unit="step",
                       desc=f"reinforce {cmd.env}", enabled=cmd.progress)  # fmt: skip
        done = start
        while state.global_step < cmd.total_steps:
            began, before = time.perf_counter(), state.global_step
            batch = collect_episodes(agent, env, state, cmd.seed + done * cmd.num_envs, cmd)
            loss, metrics, (obs, returns) = policy_gradient_loss(agent, batch, cmd)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(agent.parameters(), cmd.max_grad_norm)
            optimizer.step()
            if cmd.baseline:
                metrics["losses/value_loss"] = fit_baseline(agent, optimizer, obs, returns, cmd)
            scheduler.step()
            metrics.update({"losses/grad_norm": float(grad_norm), "_steps": state.global_step - before,
                            "charts/learning_rate": optimizer.param_groups[0]["lr"]})  # fmt: skip
            done += 1
            run.end_update(state, metrics, began, _StepBar(bar, state.global_step - before))
            final = state.global_step >= cmd.total_steps
            run.maybe_save(done, done if final else -1, agent, optimizer, scheduler, state, env)
        bar.close()
        return run.finish(
            agent, state, f"REINFORCE on {cmd.env}" + ("" if cmd.baseline else " (no baseline)")
        )


class _StepBar:
    """A progress bar counted in env steps, advanced by `Run.end_update`'s `update(1)`."""

    def __init__(self, bar: Any, steps: int) -> None:
        self.bar, self.steps = bar, steps

    def update(self, n: int = 1) -> None:
        self.bar.update(n * self.steps)

    def set_postfix(self, **kwargs: Any) -> None:
        self.bar.set_postfix(**kwargs)


def main(argv: list[str]) -> int:
    """Entry point of `nanovla rl reinforce`."""
    return run_command(ReinforceCommand, train, argv, "nanovla rl reinforce", DESCRIPTION)


DESCRIPTION = "REINFORCE with reward-to-go and an optional learned baseline. " + describe_defaults(
    DEFAULTS, FALLBACK
)
