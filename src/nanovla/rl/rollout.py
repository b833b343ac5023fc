"""The rollout loop's plumbing that PPO and REINFORCE share: the state carried between env steps
(and through a checkpoint), one env step with its bookkeeping, batch helpers, and `Run` (seeding,
run directory, lock, logs, resume, checkpoints, the final evaluation).

Observation batches are a tensor or a dict of tensors (image observations); `index`, `stack`
and `flatten` handle both. `RolloutState` holds what exact resume needs beyond the weights and
the optimizer: the current (normalized) observation, the envs' state (`envs.capture_state`),
the reward scaler, each env's running episode return and length, and the env-step counter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nanovla.io import write_json
from nanovla.rl.envs import capture_state, restore_state
from nanovla.rl.normalize import RewardScaler
from nanovla.rl.run import (
    CURVE_FILE,
    check_finite,
    evaluate,
    load_run,
    plot_curve,
    prepare_out,
    save_run,
)
from nanovla.train.guards import kill_point
from nanovla.train.lock import RunLock
from nanovla.train.logger import MetricsLogger, read_metrics
from nanovla.train.rng import restore_rng_state, seed_everything

RECENT = 20
"""episodes in the progress bar's mean return"""


# ----------------------------------------------------------------------------- batches
def index(obs: Any, idx: torch.Tensor | np.ndarray) -> Any:
    """Rows `idx` of a batch (tensor, array, or dict of them)."""
    if isinstance(obs, dict):
        return {key: value[idx] for key, value in obs.items()}
    return obs[idx]


def stack(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """A list of per-step dicts of (N, ...) tensors -> one dict of (T, N, ...) tensors."""
    out: dict[str, Any] = {}
    for key, first in steps[0].items():
        if isinstance(first, dict):
            out[key] = {k: torch.stack([s[key][k] for s in steps]) for k in first}
        else:
            out[key] = torch.stack([s[key] for s in steps])
    return out


def flatten(batch: dict[str, Any]) -> dict[str, Any]:
    """(T, N, ...) -> (T * N, ...) for every tensor of `batch` (dicts included)."""

    def flat(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.reshape(-1, *tensor.shape[2:])

    return {k: ({kk: flat(vv) for kk, vv in v.items()} if isinstance(v, dict) else flat(v))
            for k, v in batch.items()}  # fmt: skip


def explained_variance(batch: dict[str, Any]) -> float:
    """1 - Var(returns - values) / Var(returns) of a flattened batch (nan when Var = 0)."""
    var = float(batch["returns"].var())
    return (
        float("nan") if var == 0 else 1.0 - float((batch["returns"] - batch["values"]).var()) / var
    )


# ----------------------------------------------------------------------------- env steps
@dataclass
class RolloutState:
    """What flows from one env step to the next (and through a checkpoint)."""

    obs: Any
    scaler: RewardScaler | None
    ep_return: np.ndarray
    ep_length: np.ndarray
    global_step: int = 0
    prev_obs: Any = None
    finished: list[tuple[float, int]] = field(default_factory=list)
    recent: list[float] = field(default_factory=list)

    @classmethod
    def fresh(cls, agent: Any, env: Any, seed: int, scaler: RewardScaler | None) -> RolloutState:
        """Envs reset with `seed`; the first observation prepared (and counted in the stats)."""
        obs = agent.prepare(env.reset(seed=seed), update_stats=True)
        zeros = np.zeros(env.num_envs)
        return cls(obs, scaler, zeros.copy(), zeros.astype(np.int64))

    def to_dict(self, env: Any) -> dict[str, Any]:
        """The state for a checkpoint (with the envs' own state)."""
        return {"obs": self.obs, "env": capture_state(env), "ep_return": self.ep_return.copy(),
                "ep_length": self.ep_length.copy(), "global_step": self.global_step,
                "recent": list(self.recent),
                "scaler": None if self.scaler is None else self.scaler.state_dict()}  # fmt: skip

    def load(self, saved: dict[str, Any], env: Any) -> None:
        """Put back what `to_dict` returned (after a load_state)."""
        self.obs, self.global_step = saved["obs"], int(saved["global_step"])
        self.ep_return = np.array(saved["ep_return"], dtype=np.float64)
        self.ep_length = np.array(saved["ep_length"], dtype=np.int64)
        self.recent = [float(r) for r in saved["recent"]]
        restore_state(env, saved["env"])
        if self.scaler is not None:
            self.scaler.load_state_dict(saved["scaler"])


def env_step(agent: Any, env: Any, state: RolloutState, actions: np.ndarray, options: Any) -> tuple:
    """Step the envs; returns (reward (N,) float32 tensor, done (N,) float32, final) where final
    is None or (mask of time-limit truncations, their prepared final observations)."""
    raw_obs, reward, terminated, truncated, final_obs = env.step(actions)
    state.global_step += env.num_envs
    check_finite(options.env, state.global_step, options.out, observations=raw_obs, rewards=reward)
    done = terminated | truncated
    state.ep_return += reward
    state.ep_length += 1
    for i in np.flatnonzero(done):
        state.finished.append((float(state.ep_return[i]), int(state.ep_length[i])))
    state.ep_return[done], state.ep_length[done] = 0.0, 0
    state.prev_obs, state.obs = state.obs, agent.prepare(raw_obs, update_stats=True)
    scaled = state.scaler(reward, done) if state.scaler is not None else reward
    cut = truncated & ~terminated
    final = None
    if cut.any():
        final = (torch.from_numpy(cut), agent.prepare(index(final_obs, cut)))
    done_t = torch.from_numpy(done.astype(np.float32))
    return torch.from_numpy(np.asarray(scaled, dtype=np.float32)), done_t, final


# ----------------------------------------------------------------------------- the run
class Run:
    """One `nanovla rl` run in `options.out`. `Run(options)` checks the directory (writing
    nothing) and seeds everything; `with run:` creates it and holds its lock; then `resume`,
    `end_update`, `maybe_save`, `finish`."""

    def __init__(self, options: Any) -> None:
        self.options, self.out = options, Path(options.out)
        self.checkpoint = prepare_out(options)
        seed_everything(options.seed)
        self.logger: MetricsLogger | None = None
        self._lock = RunLock(self.out)
        self.started = time.perf_counter()

    def __enter__(self) -> Run:
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.logger is not None:
            self.logger.close()
        self._lock.__exit__(*exc)

    def resume(self, agent, optimizer, scheduler, state: RolloutState, env: Any) -> int:
        """Restore the checkpoint being resumed (if any) into these objects; opens the logs;
        returns the number of updates already done."""
        start = 0
        if self.checkpoint is not None:
            saved, training = load_run(self.checkpoint)
            agent.load_state_dict(saved.state_dict())
            optimizer.load_state_dict(training["optimizer"])
            scheduler.load_state_dict(training["scheduler"])
            restore_rng_state(training["rng"])
            state.load(training["loader"], env)
            start = int(training["step"])
        resume_step = state.global_step if self.checkpoint is not None else 0  # 0: drop all
        self.logger = MetricsLogger(self.out, self.options.tensorboard, resume_step)
        return start

    def end_update(self, state: RolloutState, metrics: dict, began: float, bar: Any) -> None:
        """Log one update (SPS, episodes that ended in it) and advance the progress bar."""
        seconds = max(time.perf_counter() - began, 1e-9)
        metrics["charts/SPS"] = metrics.pop("_steps") / seconds
        if state.finished:
            returns, lengths = zip(*state.finished, strict=True)
            metrics["charts/episodic_return"] = float(np.mean(returns))
            metrics["charts/episodic_length"] = float(np.mean(lengths))
            metrics["charts/episodes"] = len(returns)
            state.recent = (state.recent + list(returns))[-RECENT:]
            state.finished = []
        self.logger.log(state.global_step, metrics)
        bar.update(1)
        if state.recent:
            bar.set_postfix(ret=round(float(np.mean(state.recent)), 1), steps=state.global_step)

    def maybe_save(self, done: int, total: int, agent, optimizer, scheduler, state, env) -> None:
        """Checkpoint after `done` updates every `save_every` and at the end."""
        if done % max(self.options.save_every, 1) == 0 or done == total:
            rollout = state.to_dict(env)
            save_run(self.out, done, agent, optimizer, scheduler, rollout, self.options)
            kill_point("checkpoint:saved")

    def finish(self, agent: Any, state: RolloutState, title: str) -> dict[str, Any]:
        """The deterministic evaluation -> eval.json, and the learning curve PNG."""
        train_s = time.perf_counter() - self.started
        result = evaluate(agent, self.options, self.options.eval_episodes)
        result["train_s"] = round(train_s, 2)
        result["env_steps"] = state.global_step
        result["wall_s"] = round(time.perf_counter() - self.started, 2)
        self.logger.log(state.global_step, {"eval/mean_return": result["mean_return"]})
        curve = plot_curve(read_metrics(self.logger.path), self.out / CURVE_FILE, title)
        result["learning_curve"] = None if curve is None else CURVE_FILE
        write_json(self.out / "eval.json", result)
        return result
