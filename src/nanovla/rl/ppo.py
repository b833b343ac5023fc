"""PPO-clip with GAE(lambda): `nanovla rl ppo --env Pendulum-v1 --out DIR`.

Paper: Schulman, Wolski, Dhariwal, Radford & Klimov, "Proximal Policy Optimization Algorithms",
2017, https://arxiv.org/abs/1707.06347 (GAE: https://arxiv.org/abs/1506.02438); the details
follow CleanRL's `ppo.py` / `ppo_continuous_action.py` and "The 37 Implementation Details of
PPO" (Huang et al. 2022, https://iclr-blog-track.github.io/2022/03/25/ppo-implementation-details/).

Read top to bottom:

1. `PPOCommand`: the options (tyro), defaults per env in `DEFAULTS` (rl-zoo's tuned
   hyper-parameters for CartPole-v1; Pendulum-v1's without gSDE, see below, with half-size
   rollouts and an annealed learning rate: `DEFAULTS` says why).
2. `collect`: `num_steps` steps of every env with the current policy. Per step: sample a raw
   action and its log-probability, the value; step the envs; normalize the next observation
   (running statistics, updated here) and the reward (`RewardScaler`); where an episode was cut
   by the time limit (truncated, not terminated), add gamma V(final observation) to the reward,
   so truncation is not mistaken for a terminal state.
3. `gae` (`rl/returns.py`): advantages and value targets.
4. `update`: `update_epochs` passes over the batch in shuffled minibatches. With
   r = pi(a|s) / pi_old(a|s) and advantages A normalized per minibatch,
   L_clip = -mean(min(r A, clip(r, 1 - eps, 1 + eps) A)) (`clipped_surrogate`),
   L_V = mean((V - R)^2), or with `clip_vloss` mean(max((V - R)^2, (V_old + clip(V - V_old,
   -eps, eps) - R)^2)) (`value_loss`), loss = L_clip - ent_coef H + vf_coef L_V; gradients
   clipped to `max_grad_norm`; approx KL = mean((r - 1) - log r) (Schulman's k3 estimator);
   with `target_kl`, the epochs stop once the last minibatch's KL exceeds it. `minibatch_loss`
   is this loss through autograd; for the MLP `ActorCritic` (vector observations) `update`
   takes `rl/mlp_grad.py` instead: the same loss with its gradient written out by hand (tested
   against autograd), minibatches sliced from one packed matrix shuffled once per epoch, and
   the fused Adam kernel called directly (bit-identical to `optimizer.step()`). A gradient step
   of the 64-64 networks is overhead-bound (tiny matrices); `benchmarks/ppo_step.py` times both.
5. `train`: the loop with learning-rate (and optionally clip-range) annealing to 0, logs with
   CleanRL's keys, checkpoints every `save_every` updates, exact `--resume`, `eval.json`.

Departures from CleanRL: the value loss is the plain MSE (SB3's form; CleanRL halves it), so
`vf_coef` means what it means in SB3; time-limit truncations bootstrap from V(final obs) (SB3;
CleanRL treats them as terminal); observation and reward normalization are options inside the
algorithm rather than env wrappers, so their statistics are saved with the checkpoint
(observations: in the policy's weights; rewards: in the training state). Pendulum-v1's rl-zoo
entry uses gSDE (state-dependent exploration); here it is a plain Gaussian with the same
rollout and optimization settings.

Driving another actor-critic: `collect` and `update` touch the policy only through
`rl.policy.ActorCriticLike` (`prepare`, `dist`, `value`, `env_action`) and the observation
storage takes tensors or dicts of tensors, so a VLA policy wrapped with those four methods
(its action head as the Gaussian mean) trains with the same two functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

import torch
import torch.nn.functional as F

from nanovla.errors import InputError
from nanovla.progress import progress
from nanovla.rl import mlp_grad
from nanovla.rl import rollout as ro
from nanovla.rl.envs import VecEnv, make_vec_env
from nanovla.rl.normalize import RewardScaler
from nanovla.rl.policy import ActorCritic, ActorCriticLike, config_for
from nanovla.rl.returns import gae
from nanovla.rl.run import (
    PER_ENV,
    RunOptions,
    apply_defaults,
    check_fraction,
    check_positive,
    describe_defaults,
    run_command,
)

RL_ZOO: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(
        total_steps=100_000, num_envs=8, num_steps=32, minibatch_size=256, update_epochs=20,
        learning_rate=1e-3, anneal_lr=True, anneal_clip=True, gamma=0.98, gae_lambda=0.8,
        ent_coef=0.0, normalize_obs=False, normalize_reward=False,
    ),
    "Pendulum-v1": dict(
        total_steps=100_000, num_envs=4, num_steps=1024, minibatch_size=64, update_epochs=10,
        learning_rate=1e-3, anneal_lr=False, anneal_clip=False, gamma=0.9, gae_lambda=0.95,
        ent_coef=0.0, normalize_obs=False, normalize_reward=False,
    ),
}  # fmt: skip
"""rl-zoo's ppo.yml (lin_x: anneal to 0), in our option names (SB3: n_envs, n_steps, batch_size,
n_epochs, ...); clip range 0.2, vf_coef 0.5, max_grad_norm 0.5 (`benchmarks/ppo_vs_sb3.py` gives
them to SB3)"""
DEFAULTS: dict[str, dict[str, Any]] = {
    "CartPole-v1": RL_ZOO["CartPole-v1"],
    "Pendulum-v1": {**RL_ZOO["Pendulum-v1"], "num_steps": 512, "anneal_lr": True},
}
"""per-env defaults of the options left unset: rl-zoo's ppo.yml, except Pendulum-v1's
num_steps 512 (rl-zoo: 1024) and anneal_lr True (rl-zoo: a constant 1e-3). Half-size rollouts
with the same epochs and minibatch size make as many gradient steps per env step, twice as
often; with the learning rate annealed the final policy is also steadier. Seeds 10-13 (not
those of the benchmark): -200 reached after 40400 env steps on average vs 53800 with rl-zoo's,
final deterministic return -157.3 vs -169.2 (the `ours` and `ours=` rows of
`benchmarks/ppo_vs_sb3.py --envs Pendulum-v1 --seeds 10 11 12 13 --no-sb3`; with SB3 by
default)."""
FALLBACK: dict[str, Any] = dict(
    total_steps=500_000, num_envs=8, num_steps=128, minibatch_size=256, update_epochs=4,
    learning_rate=3e-4, anneal_lr=True, anneal_clip=False, gamma=0.99, gae_lambda=0.95,
    ent_coef=0.0, normalize_obs=True, normalize_reward=True,
)  # fmt: skip
"""defaults for envs not in DEFAULTS (CleanRL's continuous-control settings, 8 envs)"""


@dataclass
class PPOCommand(RunOptions):
    """Train a policy with PPO-clip and GAE(lambda); writes checkpoints, logs, eval.json."""

    learning_rate: Annotated[float | None, PER_ENV] = None
    """Adam learning rate"""
    anneal_lr: Annotated[bool | None, PER_ENV] = None
    """anneal the learning rate linearly to 0 over the run: True or False"""
    num_steps: Annotated[int | None, PER_ENV] = None
    """steps per env per rollout; a rollout is num_envs * num_steps env steps"""
    minibatch_size: Annotated[int | None, PER_ENV] = None
    """samples per gradient step (SB3's batch_size)"""
    update_epochs: Annotated[int | None, PER_ENV] = None
    """passes over each rollout"""
    gamma: Annotated[float | None, PER_ENV] = None
    """discount factor"""
    gae_lambda: Annotated[float | None, PER_ENV] = None
    """GAE lambda: 0 is one-step TD, 1 is Monte Carlo"""
    clip_coef: float = 0.2
    """PPO clip range eps of the ratio"""
    anneal_clip: Annotated[bool | None, PER_ENV] = None
    """anneal the clip range linearly to 0 (rl-zoo's lin_0.2): True or False"""
    clip_vloss: bool = False
    """clip the value update to +-clip_coef around the rollout's values"""
    norm_adv: bool = True
    """normalize advantages per minibatch"""
    ent_coef: Annotated[float | None, PER_ENV] = None
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient (the loss is the plain MSE, as in SB3)"""
    max_grad_norm: float = 0.5
    """gradient norm clip"""
    target_kl: float | None = None
    """stop an update's epochs once the approximate KL exceeds this (None: never)"""
    normalize_obs: Annotated[bool | None, PER_ENV] = None
    """running observation normalization, saved in the policy: True or False"""
    normalize_reward: Annotated[bool | None, PER_ENV] = None
    """scale rewards by the running std of the discounted return: True or False"""


def resolve(command: PPOCommand) -> PPOCommand:
    """Fill the per-env defaults in place and check every hyper-parameter (InputError naming the
    option)."""
    apply_defaults(command, DEFAULTS, FALLBACK)
    for name in ("learning_rate", "clip_coef", "max_grad_norm"):
        check_positive(name, getattr(command, name))
    for name in ("num_envs", "num_steps", "minibatch_size", "update_epochs", "total_steps"):
        check_positive(name, getattr(command, name))
    for name in ("ent_coef", "vf_coef"):
        check_positive(name, getattr(command, name), allow_zero=True)
    check_fraction("gamma", command.gamma)
    check_fraction("gae_lambda", command.gae_lambda)
    if command.target_kl is not None:
        check_positive("target_kl", command.target_kl)
    rollout = command.num_envs * command.num_steps
    if command.total_steps < rollout:
        raise InputError(
            f"--total-steps: {command.total_steps} is less than one rollout "
            f"(--num-envs {command.num_envs} x --num-steps {command.num_steps} = {rollout})"
        )
    return command


# ----------------------------------------------------------------------------- 4. the losses
def clipped_surrogate(
    new_logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L_clip, approx KL, clip fraction) of one minibatch (see the module docs)."""
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip)).mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()
        clipfrac = ((ratio - 1).abs() > clip).float().mean()
    return loss, approx_kl, clipfrac


def value_loss(
    new_v: torch.Tensor, old_v: torch.Tensor, returns: torch.Tensor, clip: float | None
) -> torch.Tensor:
    """MSE of the values to the returns; with `clip`, the pessimistic clipped form."""
    if clip is None:
        return F.mse_loss(new_v, returns)
    unclipped = (new_v - returns) ** 2
    clipped = (old_v + (new_v - old_v).clamp(-clip, clip) - returns) ** 2
    return torch.max(unclipped, clipped).mean()


def minibatch_loss(
    agent: ActorCriticLike, batch: dict[str, Any], idx: torch.Tensor, cmd: PPOCommand, clip: float
) -> dict[str, torch.Tensor]:
    """The PPO loss of the minibatch `idx` of `batch` through autograd (see the module docs):
    `loss` and its parts `pg_loss`, `v_loss`, `entropy`, with `approx_kl` and `clipfrac`."""
    obs = ro.index(batch["obs"], idx)
    dist = agent.dist(obs)
    new_logp = dist.log_prob(batch["raw"][idx])
    with torch.set_grad_enabled(cmd.ent_coef != 0):  # only logged when not in the loss
        entropy = dist.entropy().mean()
    adv = batch["adv"][idx]
    if cmd.norm_adv and len(idx) > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    pg_loss, approx_kl, clipfrac = clipped_surrogate(new_logp, batch["logp"][idx], adv, clip)
    new_v = agent.value(obs)
    v_clip = clip if cmd.clip_vloss else None
    v_loss = value_loss(new_v, batch["values"][idx], batch["returns"][idx], v_clip)
    loss = pg_loss - cmd.ent_coef * entropy + cmd.vf_coef * v_loss
    return {"loss": loss, "pg_loss": pg_loss, "v_loss": v_loss, "entropy": entropy,
            "approx_kl": approx_kl, "clipfrac": clipfrac}  # fmt: skip


def update(
    agent: ActorCriticLike, optimizer: torch.optim.Optimizer, batch: dict[str, Any],
    cmd: PPOCommand, clip: float, autograd: bool = False,
) -> dict[str, float]:  # fmt: skip
    """The PPO epochs over one flattened rollout `batch`; returns the last minibatch's losses.
    An MLP `ActorCritic` takes the hand-written gradient (`rl/mlp_grad.py`: the same loss and
    gradients; `benchmarks/ppo_step.py` times both) unless `autograd`; any other actor-critic
    autograd."""
    if not autograd and mlp_grad.supported(agent):
        return _update_manual(agent, optimizer, batch, cmd, clip)
    size = batch["logp"].shape[0]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for _ in range(cmd.update_epochs):
        for idx in torch.randperm(size).split(cmd.minibatch_size):
            out = minibatch_loss(agent, batch, idx, cmd, clip)
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(params, cmd.max_grad_norm)
            optimizer.step()
        if cmd.target_kl is not None and out["approx_kl"] > cmd.target_kl:
            break
    return _losses(out)


def _losses(out: dict[str, torch.Tensor]) -> dict[str, float]:
    return {"losses/policy_loss": float(out["pg_loss"].detach()),
            "losses/value_loss": float(out["v_loss"].detach()),
            "losses/entropy": float(out["entropy"].detach()),
            "losses/approx_kl": float(out["approx_kl"]),
            "losses/clipfrac": float(out["clipfrac"])}  # fmt: skip


def _update_manual(
    agent: ActorCritic, optimizer: torch.optim.Optimizer, batch: dict[str, Any], cmd: PPOCommand,
    clip: float,
) -> dict[str, float]:  # fmt: skip
    """`update` through `mlp_grad.PPOGrad`: the batch packed into one matrix, shuffled once per
    epoch (the same permutations as the autograd path), minibatches as slices of it."""
    grad = _grad_of(agent)
    packed = grad.pack(batch)
    size = packed.shape[0]
    adam_step = mlp_grad.AdamStep(optimizer)
    for _ in range(cmd.update_epochs):
        shuffled = packed[torch.randperm(size)]
        starts = range(0, size, cmd.minibatch_size)
        for start in starts:
            last = start == starts[-1]
            out = grad.step(shuffled[start : start + cmd.minibatch_size], clip, cmd, stats=last)
            adam_step()
        if cmd.target_kl is not None and out["approx_kl"] > cmd.target_kl:
            break
    return _losses(out)


def _grad_of(agent: ActorCritic) -> mlp_grad.PPOGrad:
    """The agent's `PPOGrad` (built once: it holds the flat gradient buffer)."""
    grad = getattr(agent, "_ppo_grad", None)
    if grad is None:
        grad = mlp_grad.PPOGrad(agent)
        object.__setattr__(agent, "_ppo_grad", grad)  # not a submodule: no state_dict entry
    return grad


# ----------------------------------------------------------------------------- 2. rollouts
def collect(agent: ActorCriticLike, env: Any, state: ro.RolloutState, cmd: PPOCommand) -> dict:
    """`num_steps` steps of every env; returns the (T, N) rollout with advantages and returns."""
    steps = []
    dist_value = getattr(agent, "dist_value", None)
    for _ in range(cmd.num_steps):
        with torch.no_grad():
            if dist_value is not None:
                dist, value = dist_value(state.obs)
                raw = dist.sample()
                logp = dist.log_prob(raw)
            else:
                dist = agent.dist(state.obs)
                raw = dist.sample()
                logp, value = dist.log_prob(raw), agent.value(state.obs)
        reward, done, final = ro.env_step(agent, env, state, agent.env_action(raw), cmd)
        if final is not None:  # bootstrap time-limit truncations from V(final observation)
            cut, final_obs = final
            with torch.no_grad():
                reward[cut] += cmd.gamma * agent.value(final_obs)
        steps.append({"obs": state.prev_obs, "raw": raw, "logp": logp, "values": value,
                      "rewards": reward, "dones": done})  # fmt: skip
    batch = ro.stack(steps)
    with torch.no_grad():
        last_value = agent.value(state.obs)
    batch["adv"], batch["returns"] = gae(
        batch["rewards"], batch["values"], batch["dones"], last_value, cmd.gamma, cmd.gae_lambda
    )
    return ro.flatten(batch)


# ----------------------------------------------------------------------------- 5. the loop
def train(cmd: PPOCommand, env: VecEnv | None = None) -> dict[str, Any]:
    """Run PPO as `cmd` says (resolved and checked first); returns the eval.json content.
    `env`: the training envs when the caller built them (`make_vec_env(cmd.env, ...)`, possibly
    wrapped: `benchmarks/ppo_vs_sb3.py` times episode ends), else built here."""
    resolve(cmd)
    run = ro.Run(cmd)  # checks --out and seeds; the env and the networks check the rest
    if env is None:
        env = make_vec_env(cmd.env, cmd.num_envs, cmd.world_obs, cmd.world_reward, cmd.image_size)
    elif env.num_envs != cmd.num_envs:
        raise InputError(f"--num-envs: {cmd.num_envs}, but the envs given hold {env.num_envs}")
    agent = ActorCritic(config_for(env, cmd.hidden, cmd.activation, cmd.squash, cmd.log_std,
                                   cmd.log_std_init, cmd.normalize_obs))  # fmt: skip
    with run:
        optimizer = torch.optim.Adam(agent.parameters(), lr=cmd.learning_rate, eps=1e-5, fused=True)
        num_updates = -(-cmd.total_steps // (cmd.num_envs * cmd.num_steps))  # ceil, as SB3
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _linear(cmd.anneal_lr, num_updates)
        )
        scaler = RewardScaler(cmd.num_envs, cmd.gamma) if cmd.normalize_reward else None
        state = ro.RolloutState.fresh(agent, env, cmd.seed, scaler)
        start = run.resume(agent, optimizer, scheduler, state, env)
        bar = progress(total=num_updates, initial=start, desc=f"ppo {cmd.env}", unit="update",
                       enabled=cmd.progress)  # fmt: skip
        for done in range(start, num_updates):
            began = time.perf_counter()
            batch = collect(agent, env, state, cmd)
            clip = cmd.clip_coef * _linear(cmd.anneal_clip, num_updates)(done)
            metrics = update(agent, optimizer, batch, cmd, clip)
            metrics["charts/learning_rate"] = optimizer.param_groups[0]["lr"]
            scheduler.step()
            metrics["charts/clip_range"] = clip
            metrics["losses/explained_variance"] = ro.explained_variance(batch)
            metrics["_steps"] = cmd.num_envs * cmd.num_steps
            run.end_update(state, metrics, began, bar)
            run.maybe_save(done + 1, num_updates, agent, optimizer, scheduler, state, env)
        bar.close()
        return run.finish(agent, state, f"PPO on {cmd.env}")


def _linear(anneal: bool, num_updates: int) -> Any:
    """update -> 1 - update / num_updates when annealing, else 1."""
    return (lambda update: 1.0 - update / num_updates) if anneal else (lambda update: 1.0)


def main(argv: list[str]) -> int:
    """Entry point of `nanovla rl ppo`."""
    return run_command(PPOCommand, train, argv, "nanovla rl ppo", DESCRIPTION)


DESCRIPTION = "PPO-clip with GAE(lambda) on a gymnasium id or the world. " + describe_defaults(
    DEFAULTS, FALLBACK
)
