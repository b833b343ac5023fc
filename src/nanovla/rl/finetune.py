"""BC -> RL fine-tuning of the VLA with PPO: `nanovla rl finetune --checkpoint CKPT --out DIR`.

Papers: PPO (Schulman et al. 2017, https://arxiv.org/abs/1707.06347); fine-tuning a
demonstration-initialized policy with a policy gradient (Rajeswaran et al. 2018, DAPG,
https://arxiv.org/abs/1709.10087); a KL penalty toward the pre-trained policy so fine-tuning
does not drift away from it (Jaques et al. 2019, https://arxiv.org/abs/1907.00456; Ziegler
et al. 2019, https://arxiv.org/abs/1909.08593); asymmetric actor-critic (Pinto et al. 2017,
https://arxiv.org/abs/1710.06542). The seed's `VLAwithRLFinetuning` (stage 1 BC, stage 2 RL
"BC 70% -> RL 85%") is the shape; its `collect_rollouts` and `evaluate` are these.

Read top to bottom:

1. `FinetuneCommand`: the options. The BC checkpoint's `run.json` gives the families, image
   size and instruction templates unless `--tasks` / `--instructions` say otherwise.
2. `FinetuneEnv` (`rl/finetune_env.py`): the batched world with images and instructions
   (`make_world`), training instruction templates only (held-out paraphrases are never
   seen), the shaped or sparse reward, and the critic's privileged vector
   (`vla_actor_critic.CRITIC_DIM`).
3. `VLAActorCritic` (`rl/vla_actor_critic.py`): the BC head's first action as a Gaussian mean,
   a learned log-std, the asymmetric critic, the frozen BC reference.
4. `update`: PPO's epochs with the KL penalty in the loss,
   loss = L_clip + kl_coef * KL(pi || pi_ref) - ent_coef H + vf_coef L_V (L_clip, L_V:
   `rl.ppo.clipped_surrogate` / `value_loss`); actor and critic gradients clipped separately
   (one fresh critic's large gradients must not scale the pre-trained actor's step down). The
   first `critic_warmup` updates train the critic alone: a fresh critic's advantages are noise.
5. `train`: the BC policy evaluated (`DIR/before.json`), the rollouts (`rl.ppo.collect`: GAE),
   validation rollouts every `val_every` updates for the curve, checkpoints, the final
   evaluation (`DIR/eval.json`) and `DIR/success_vs_steps.png`.

Both JSON files are `nanovla train`'s eval.json schema (`eval.evaluate.evaluate`: seen,
heldout, ko splits, 95% Wilson intervals, on the fixed evaluation seeds); eval.json adds
`before` (each split's success before fine-tuning), `env_steps`, `train_s` and `wall_s`.

Departures: the policy stays in eval mode (dropout off, BatchNorm frozen); an episode cut by
the time limit is treated as terminal, which is exact here because the critic sees the fraction
of the step limit used (the world's auto-reset also discards the terminal state a bootstrap
would need); the KL is the closed form between Gaussians on the rollout's states, in the loss
rather than in the reward (RLHF's per-token form).

`--resume` continues a killed or interrupted run exactly: each checkpoint holds the policy,
critic and log-std, the optimizer, the RNG streams, the rollout state (current observations,
the world's state, the instruction vocabulary, the success counters) and the validation curve;
the reference stays the `--checkpoint` BC policy, and the logs past the checkpoint are dropped
(so the run reads as one). A resumed run ends bit-identical to the same run done straight
(`tests/test_rl_finetune.py`); its `wall_s` and `train_s` count the last process only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import tyro

from nanovla.constants import CONFIG_FILE, EVAL_FILE
from nanovla.errors import InputError, MissingError
from nanovla.eval.evaluate import EVAL_SEED, VALIDATION_SEED, EvalConfig, evaluate, format_table
from nanovla.io import read_json_object, write_json
from nanovla.models.policy import Policy
from nanovla.progress import progress
from nanovla.rl import rollout as ro
from nanovla.rl.finetune_checkpoint import BEFORE_FILE, restore, resume_point, save
from nanovla.rl.finetune_env import FinetuneEnv
from nanovla.rl.finetune_report import before_after_table, plot_success
from nanovla.rl.ppo import clipped_surrogate, collect, value_loss
from nanovla.rl.run import check_fraction, check_positive
from nanovla.rl.vla_actor_critic import VLAActorCritic, Vocabulary
from nanovla.train.checkpoint import pretrained_dir
from nanovla.train.lock import RunLock
from nanovla.train.logger import MetricsLogger, read_metrics
from nanovla.train.rng import seed_everything
from nanovla.train.run_record import RunRecord
from nanovla.world.tasks import TASK_FAMILIES

TRAIN_SEED = 200_000
"""the training world's seed is TRAIN_SEED + --seed: away from demonstrations, validation, eval"""
CURVE_FILE = "success_vs_steps.png"
SPLITS = ("seen", "heldout", "ko")
"""the splits of before.json and eval.json"""


@dataclass
class FinetuneCommand:
    """PPO fine-tuning of a BC checkpoint in the world; writes before.json, eval.json, a plot."""

    checkpoint: Path
    """BC checkpoint of `nanovla train` (a step directory, `last`, or its pretrained_model/)"""
    out: Path = Path("runs/rl-finetune")
    """run directory: before.json, eval.json, checkpoints/, logs/, success_vs_steps.png"""
    tasks: tuple[str, ...] = ()
    """task families to fine-tune and evaluate on (empty: the checkpoint's run.json families)"""
    instructions: str = ""
    """training instruction templates (empty: the checkpoint's, e.g. train+ko)"""
    total_steps: int = 250_000
    """env steps to train for, over all envs"""
    num_envs: int = 32
    """envs stepped together"""
    num_steps: int = 64
    """steps per env per rollout; a rollout is num_envs * num_steps env steps"""
    update_epochs: int = 4
    """passes over each rollout"""
    minibatch_size: int = 256
    """samples per gradient step"""
    actor_lr: float = 3e-4
    """Adam learning rate of the policy's weights and the log-std"""
    critic_lr: float = 1e-3
    """Adam learning rate of the critic"""
    critic_warmup: int = 2
    """first updates that train the critic alone"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    clip_coef: float = 0.2
    """PPO clip range of the ratio"""
    kl_coef: float = 0.02
    """weight of KL(pi || pi_ref), the penalty toward the frozen BC policy"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """gradient norm clip, for the actor and the critic separately"""
    target_kl: float | None = 0.05
    """stop an update's epochs once the approximate KL to the rollout policy exceeds this"""
    log_std_init: float = -1.5
    """initial log-std of the Gaussian, in normalized action units (also the reference's)"""
    freeze_language: bool = True
    """keep the instruction encoder frozen"""
    freeze_vision: bool = False
    """also keep the vision encoder frozen"""
    reward: str = "shaped"
    """shaped (distance-to-go decrease + success) or sparse (success)"""
    eval_episodes: int = 200
    """episodes per family per split of before.json and eval.json"""
    val_every: int = 5
    """updates between validation rollouts (seen + heldout, validation seeds) for the curve"""
    val_episodes: int = 50
    """episodes per family per split of each validation"""
    save_every: int = 10
    """updates between checkpoints (the last update is always saved)"""
    keep_last: int = 3
    """checkpoints kept on disk (0: all)"""
    seed: int = 0
    """seeds torch and the training world"""
    resume: bool = False
    """continue the run in --out from its last checkpoint, exactly (same options required)"""
    progress: bool = True
    """show a progress bar"""
    tensorboard: bool = True
    """also write TensorBoard events when tensorboard is installed"""


# ----------------------------------------------------------------------------- 1. checks
def load_bc(checkpoint: Path) -> tuple[Policy, RunRecord | None]:
    """The BC policy and its run record; InputError / MissingError naming --checkpoint."""
    if not Path(checkpoint).exists():
        raise MissingError(f"--checkpoint: {checkpoint} not found")
    try:
        directory = pretrained_dir(checkpoint)
    except MissingError as error:
        raise MissingError(f"--checkpoint: {error}") from None
    config = read_json_object(directory / CONFIG_FILE)
    if config.get("type") != "nanovla_policy" or config.get("action_head", "tanh") != "tanh":
        kind = config.get("type", "unknown")
        raise InputError(
            f"--checkpoint: {directory} has no tanh action head to fine-tune (type {kind!r}, "
            f"action_head {config.get('action_head')!r}); give a `nanovla train` checkpoint"
        )
    return Policy.from_pretrained(directory), RunRecord.load(directory)


def resolve(cmd: FinetuneCommand, record: RunRecord | None) -> tuple[tuple[str, ...], str, int]:
    """(families, instruction templates, image size); InputError naming the option."""
    families = tuple(cmd.tasks) or (record.families if record else ())
    if not families:
        raise InputError("--tasks: the checkpoint has no run.json; name the families to train")
    unknown = [family for family in families if family not in TASK_FAMILIES]
    if unknown:
        raise InputError(f"--tasks: unknown families {unknown}; choose from {list(TASK_FAMILIES)}")
    for name in ("actor_lr", "critic_lr", "clip_coef", "max_grad_norm", "num_envs", "num_steps",
                 "update_epochs", "minibatch_size", "total_steps", "eval_episodes", "val_every",
                 "val_episodes", "save_every"):  # fmt: skip
        check_positive(name, getattr(cmd, name))
    for name in ("kl_coef", "ent_coef", "vf_coef", "critic_warmup", "keep_last"):
        check_positive(name, getattr(cmd, name), allow_zero=True)
    check_fraction("gamma", cmd.gamma)
    check_fraction("gae_lambda", cmd.gae_lambda)
    if cmd.reward not in ("shaped", "sparse"):
        raise InputError(f"--reward: got {cmd.reward!r}; allowed: shaped, sparse")
    rollout = cmd.num_envs * cmd.num_steps
    if cmd.total_steps < rollout:
        raise InputError(
            f"--total-steps: {cmd.total_steps} is less than one rollout "
            f"(--num-envs {cmd.num_envs} x --num-steps {cmd.num_steps} = {rollout})"
        )
    instructions = cmd.instructions or (record.instructions if record else "train")
    return families, instructions, record.image_size if record else 64


# ----------------------------------------------------------------------------- 4. the update
def ppo_loss(
    agent: VLAActorCritic, batch: dict[str, Any], idx: torch.Tensor, cmd: FinetuneCommand
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_clip + kl_coef KL - ent_coef H on rows `idx` of the rollout, and its parts."""
    obs = ro.index(batch["obs"], idx)
    dist = agent.dist(obs)
    adv = batch["adv"][idx]
    if len(idx) > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    new_logp = dist.log_prob(batch["raw"][idx])
    pg_loss, approx_kl, clipfrac = clipped_surrogate(
        new_logp, batch["logp"][idx], adv, cmd.clip_coef
    )
    kl_ref = agent.kl_to_reference(obs, dist).mean()
    entropy = dist.entropy().mean()
    loss = pg_loss + cmd.kl_coef * kl_ref - cmd.ent_coef * entropy
    parts = {"policy_loss": pg_loss, "kl_to_bc": kl_ref, "entropy": entropy,
             "approx_kl": approx_kl, "clipfrac": clipfrac}  # fmt: skip
    return loss, parts


def update(
    agent: VLAActorCritic, optimizer: torch.optim.Optimizer, batch: dict[str, Any],
    cmd: FinetuneCommand, train_actor: bool,
) -> dict[str, float]:  # fmt: skip
    """PPO epochs over one flattened rollout; the critic alone when not `train_actor`."""
    actor_params, critic_params = agent.actor_parameters(), list(agent.critic.parameters())
    parts: dict[str, torch.Tensor] = {}
    size = batch["logp"].shape[0]
    for _ in range(cmd.update_epochs):
        for idx in torch.randperm(size).split(cmd.minibatch_size):
            v_loss = value_loss(agent.value(ro.index(batch["obs"], idx)), batch["values"][idx],
                                batch["returns"][idx], None)  # fmt: skip
            loss = cmd.vf_coef * v_loss
            if train_actor:
                actor_loss, parts = ppo_loss(agent, batch, idx, cmd)
                loss = loss + actor_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(actor_params, cmd.max_grad_norm)
            torch.nn.utils.clip_grad_norm_(critic_params, cmd.max_grad_norm)
            optimizer.step()
        if train_actor and cmd.target_kl is not None and parts["approx_kl"] > cmd.target_kl:
            break
    metrics = {f"losses/{name}": float(value.detach()) for name, value in parts.items()}
    metrics["losses/value_loss"] = float(v_loss.detach())
    metrics["charts/action_std"] = float(agent.log_std.detach().exp().mean())
    return metrics


# ----------------------------------------------------------------------------- 5. the loop
def _evaluate(policy: Policy, families, episodes: int, splits, seed: int, size: int) -> dict:
    config = EvalConfig(episodes=episodes, splits=tuple(splits), seed=seed, gifs=0)
    return evaluate(policy, tuple(families), config, size, progress=False)


def _validate(agent, families, cmd, size, state, logger, curve) -> None:
    result = _evaluate(agent.policy, families, cmd.val_episodes, ("seen", "heldout"),
                       VALIDATION_SEED, size)  # fmt: skip
    seen, heldout = (result["splits"][s]["success"] for s in ("seen", "heldout"))
    curve.append((state.global_step, seen, heldout))
    logger.log(state.global_step, {"eval/seen_success": seen, "eval/heldout_success": heldout})


def _build(cmd: FinetuneCommand, policy: Policy, families, instructions: str, size: int) -> tuple:
    """(agent, optimizer, env, rollout view) of a fresh run; `_restore` fills them on resume."""
    vocabulary = Vocabulary()
    agent = VLAActorCritic(policy, vocabulary, cmd.log_std_init, freeze_language=cmd.freeze_language,
                           freeze_vision=cmd.freeze_vision)  # fmt: skip
    optimizer = torch.optim.Adam(
        [{"params": agent.actor_parameters(), "lr": cmd.actor_lr},
         {"params": agent.critic.parameters(), "lr": cmd.critic_lr}], eps=1e-5,
    )  # fmt: skip
    env = FinetuneEnv(families, cmd.num_envs, size, instructions, cmd.reward, vocabulary)
    view = SimpleNamespace(num_steps=cmd.num_steps, gamma=cmd.gamma, gae_lambda=cmd.gae_lambda,
                           env=f"world {'+'.join(families)}", out=Path(cmd.out))  # fmt: skip
    return agent, optimizer, env, view


def _before(cmd: FinetuneCommand, policy: Policy, families, size: int, resuming: bool) -> dict:
    """The BC policy's evaluation (before.json): run once, read back on `--resume`."""
    path = Path(cmd.out) / BEFORE_FILE
    if resuming:
        return read_json_object(path)
    before = _evaluate(policy, families, cmd.eval_episodes, SPLITS, EVAL_SEED, size)
    before["checkpoint"] = str(cmd.checkpoint)
    write_json(path, before)
    return before


def train(cmd: FinetuneCommand) -> dict[str, Any]:
    """Fine-tune as `cmd` says; returns the eval.json content (before.json written first)."""
    policy, record = load_bc(cmd.checkpoint)
    families, instructions, size = resolve(cmd, record)
    checkpoint = resume_point(cmd)
    seed_everything(cmd.seed)
    started, out = time.perf_counter(), Path(cmd.out)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        before = _before(cmd, policy, families, size, resuming=checkpoint is not None)
        agent, optimizer, env, view = _build(cmd, policy, families, instructions, size)
        state = ro.RolloutState.fresh(agent, env, TRAIN_SEED + cmd.seed, None)
        start, curve = 0, []
        if checkpoint is not None:
            start, curve = restore(checkpoint, agent, optimizer, env, state)
        with MetricsLogger(out, cmd.tensorboard, state.global_step) as logger:
            if checkpoint is None:
                _validate(agent, families, cmd, size, state, logger, curve)
            num_updates = cmd.total_steps // (cmd.num_envs * cmd.num_steps)
            bar = progress(total=num_updates, initial=start, desc="rl finetune", unit="update",
                           enabled=cmd.progress)  # fmt: skip
            for done in range(start, num_updates):
                began = time.perf_counter()
                batch = collect(agent, env, state, view)
                metrics = update(
                    agent, optimizer, batch, cmd, train_actor=done >= cmd.critic_warmup
                )
                rate = env.take_success_rate()
                if rate is not None:
                    metrics["charts/success_rate"] = rate
                metrics["charts/SPS"] = cmd.num_envs * cmd.num_steps / (time.perf_counter() - began)
                logger.log(state.global_step, metrics)
                bar.update(1)
                bar.set_postfix(success=round(rate or 0.0, 2), steps=state.global_step)
                if (done + 1) % cmd.val_every == 0 or done + 1 == num_updates:
                    _validate(agent, families, cmd, size, state, logger, curve)
                if (done + 1) % cmd.save_every == 0 or done + 1 == num_updates:
                    loader = {"rollout": state.to_dict(env), "curve": [list(p) for p in curve],
                              "vocabulary": list(env.vocabulary.texts)}  # fmt: skip
                    save(out, done + 1, agent, optimizer, record, cmd, loader)
            bar.close()
            return _finish(cmd, agent, families, size, state, before, curve, logger, started)


def _finish(cmd, agent, families, size, state, before, curve, logger, started) -> dict[str, Any]:
    """The final evaluation -> eval.json (with each split's success before), and the plot."""
    out = Path(cmd.out)
    train_s = time.perf_counter() - started
    result = _evaluate(agent.policy, families, cmd.eval_episodes, SPLITS, EVAL_SEED, size)
    result.update(checkpoint=str(out / "checkpoints" / "last"), env_steps=state.global_step,
                  train_s=round(train_s, 1), wall_s=round(time.perf_counter() - started, 1),
                  before={s: before["splits"][s]["success"] for s in SPLITS})  # fmt: skip
    plot_success(read_metrics(logger.path), curve, before, result, out / CURVE_FILE)
    result["curve"] = CURVE_FILE
    write_json(out / EVAL_FILE, result)
    return result


def main(argv: list[str]) -> int:
    """Entry point of `nanovla rl finetune`."""
    cmd = tyro.cli(FinetuneCommand, args=argv, prog="nanovla rl finetune",
                   description="BC -> RL fine-tuning of a VLA checkpoint with PPO in the world.")  # fmt: skip
    torch.set_num_threads(1)
    result = train(cmd)
    print(format_table(result))
    print(before_after_table(read_json_object(cmd.out / BEFORE_FILE), result))
    print(f"{result['env_steps']} env steps, {result['wall_s']:.0f} s; wrote {cmd.out / EVAL_FILE}")
    return 0
