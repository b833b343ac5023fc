"""What every `nanovla rl` command shares: its common options, the run directory, checkpoints,
the deterministic evaluation, the learning-curve plot and the non-finite check.

A run directory `DIR`:

```
DIR/checkpoints/<update>/pretrained_model/   config.json, model.safetensors (the ActorCritic,
                                             observation statistics inside), train_config.json
DIR/checkpoints/<update>/training_state/     optimizer, scheduler, RNG, and the rollout state
DIR/checkpoints/last -> <update>             (`loader_state`: envs, last observation, reward
                                             scaler, episode counters)
DIR/logs/metrics.jsonl (+ TensorBoard events) CleanRL's keys: charts/episodic_return, losses/...
DIR/learning_curve.png, DIR/eval.json
```

Checkpoints go through the training engine's writers (`train/checkpoint.py`, `train/state.py`:
atomic, SHA-256 manifest); their step is the number of updates done. `eval.json` holds
`{"env", "mean_return", "std_return", "episodes", "returns", "seed", "env_steps", ...}` (world
ids also `success_rate`): the
deterministic policy (the mode of its distribution) on `episodes` episodes whose envs are seeded
`EVAL_SEED`, `EVAL_SEED + 1`, ... (disjoint from the training seeds below 10^6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import tyro

from nanovla.codec import to_json
from nanovla.constants import (
    CHECKPOINTS_DIR,
    EVAL_FILE,
    PRETRAINED_DIR,
    TRAIN_CONFIG_FILE,
    TRAINING_STATE_DIR,
)
from nanovla.errors import ExistsError, InputError, MissingError, NanovlaError
from nanovla.io import read_json_object, write_json
from nanovla.rl.envs import WORLD_OBS, WORLD_REWARDS, check_env_id, make_vec_env
from nanovla.rl.policy import ActorCritic
from nanovla.train.checkpoint import latest_checkpoint, write_checkpoint
from nanovla.train.rng import capture_rng_state
from nanovla.train.state import load_training_state, save_training_state

EVAL_SEED = 1_000_000
PER_ENV = tyro.conf.arg(help_behavior_hint="(default: per env)")
"""help hint of the options whose default depends on --env (a command's DEFAULTS table)"""
CURVE_FILE = "learning_curve.png"
RESUME_FREE = ("out", "resume", "progress", "tensorboard", "keep_last")
"""options that may differ between a run and its `--resume`"""


class NonFiniteEnvError(NanovlaError, ArithmeticError):
    """An env returned NaN or inf; the message names the env, the step and the last checkpoint."""


@dataclass
class RunOptions:
    """Options every `nanovla rl` command takes."""

    env: str = "CartPole-v1"
    """gymnasium id (CartPole-v1, Acrobot-v1, Pendulum-v1, MountainCarContinuous-v0, ...) or a
    world id (nanovla/Reach-v0, nanovla/Push-v0, ...)"""
    out: Path = Path("runs/rl")
    """run directory: checkpoints/, logs/, learning_curve.png, eval.json"""
    seed: int = 0
    """seeds torch and the training envs (env i gets seed + i)"""
    total_steps: Annotated[int | None, PER_ENV] = None
    """env steps to train for, over all envs"""
    num_envs: Annotated[int | None, PER_ENV] = None
    """envs stepped together"""
    eval_episodes: int = 10
    """seeded episodes of the final deterministic evaluation (eval.json)"""
    save_every: int = 10
    """updates between checkpoints (the last update is always saved)"""
    keep_last: int = 3
    """checkpoints kept on disk, newest first (0: all)"""
    resume: bool = False
    """continue the run in --out from checkpoints/last, bit-identically"""
    hidden: tuple[int, ...] = (64, 64)
    """hidden layer widths of the actor and of the critic"""
    activation: str = "tanh"
    """hidden activation: tanh or relu"""
    squash: str = "clip"
    """continuous actions: clip the Gaussian sample to the action box, or tanh-squash it (with
    the log-probability correction)"""
    log_std: str = "param"
    """Gaussian log-std: state-independent parameter (param) or an actor output (state)"""
    log_std_init: float = 0.0
    """initial Gaussian log-std"""
    world_obs: str = "state"
    """world ids only: state (proprioception + subgoal positions) or image (frame +
    proprioception)"""
    world_reward: str = "shaped"
    """world ids only: shaped (distance-to-go decrease + success) or sparse (success)"""
    image_size: int = 64
    """world ids with image observations: frame side in pixels"""
    progress: bool = True
    """show a progress bar (--no-progress: none)"""
    tensorboard: bool = True
    """also write TensorBoard events when tensorboard is installed"""


def check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    """InputError naming `--name` unless value > 0 (>= 0 with allow_zero), finite."""
    bad = not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero)
    if bad:
        bound = ">= 0" if allow_zero else "> 0"
        raise InputError(f"--{name.replace('_', '-')}: must be {bound}, got {value}")


def check_fraction(name: str, value: float) -> None:
    """InputError naming `--name` unless 0 <= value <= 1."""
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InputError(f"--{name.replace('_', '-')}: must be in [0, 1], got {value}")


def apply_defaults(options: Any, table: dict[str, dict[str, Any]], fallback: dict) -> None:
    """Check the options every command shares (nothing is written before), then fill those
    left None from `table[options.env]` (else `fallback`), in place."""
    check_env_id(options.env)
    if options.env.startswith("nanovla/"):
        for name, allowed in (("world_obs", WORLD_OBS), ("world_reward", WORLD_REWARDS)):
            if getattr(options, name) not in allowed:
                raise InputError(
                    f"--{name.replace('_', '-')}: got {getattr(options, name)!r}; allowed: "
                    f"{', '.join(allowed)}"
                )
    for name in ("eval_episodes", "save_every"):
        check_positive(name, getattr(options, name))
    check_positive("keep_last", options.keep_last, allow_zero=True)
    chosen = {**fallback, **table.get(options.env, {})}
    for name, value in chosen.items():
        if getattr(options, name) is None:
            setattr(options, name, value)


def describe_defaults(table: dict[str, dict[str, Any]], fallback: dict[str, Any]) -> str:
    """The per-env defaults as `--help` text: one line per env, then the fallback."""

    def options(values: dict[str, Any]) -> str:
        return ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in values.items())

    lines = [f"{env}: {options(values)}" for env, values in table.items()]
    return "Options left unset take per-env defaults.\n\n" + "\n\n".join(
        [*lines, f"other envs: {options(fallback)}"]
    )


def prepare_out(options: RunOptions) -> Path | None:
    """The checkpoint to resume from (None for a fresh run); refuses to overwrite a run."""
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} is a file; give a directory")
    last = latest_checkpoint(out)
    if options.resume:
        if last is None:
            raise MissingError(f"--resume: {out / CHECKPOINTS_DIR / 'last'} not found")
        saved = read_json_object(last / PRETRAINED_DIR / TRAIN_CONFIG_FILE)
        now = to_json(options)
        diffs = [k for k in now if k not in RESUME_FREE and saved.get(k) != now[k]]
        if diffs:
            raise InputError(
                f"--resume: options differ from the run's ({', '.join(diffs)}); resume with the "
                "options the run was started with"
            )
        return last
    if last is not None or (out / EVAL_FILE).exists():
        raise ExistsError(f"--out: {out} already holds a run; pass --resume or another --out")
    return None  # (logs of a run killed before its first checkpoint are started over)


def save_run(
    out: Path, update: int, agent: ActorCritic, optimizer: torch.optim.Optimizer,
    scheduler: Any, rollout_state: dict[str, Any], options: Any,
) -> Path:  # fmt: skip
    """Write checkpoint `update` atomically (see the module docs); returns its directory."""
    rng = capture_rng_state()

    def write(directory: Path) -> None:
        agent.save_pretrained(directory / PRETRAINED_DIR)
        write_json(directory / PRETRAINED_DIR / TRAIN_CONFIG_FILE, to_json(options))
        save_training_state(
            directory / TRAINING_STATE_DIR,
            {"step": update, "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": rng, "loader": rollout_state},
        )  # fmt: skip

    return write_checkpoint(out, update, write, keep_last=options.keep_last)


def load_run(checkpoint: Path) -> tuple[ActorCritic, dict[str, Any]]:
    """(policy, training state) of a checkpoint `save_run` wrote."""
    agent = ActorCritic.from_pretrained(checkpoint / PRETRAINED_DIR)
    return agent, load_training_state(checkpoint / TRAINING_STATE_DIR)


def check_finite(env_id: str, step: int, out: Path, **arrays: Any) -> None:
    """NonFiniteEnvError naming the env, the step and the last checkpoint if any array is not
    finite (arrays may be dicts of arrays: image observations)."""
    for name, value in arrays.items():
        parts = value.values() if isinstance(value, dict) else [value]
        if not all(np.isfinite(np.asarray(p, dtype=np.float64)).all() for p in parts):
            last = latest_checkpoint(out)
            kept = f"the last good checkpoint is {last}" if last else "no checkpoint was saved"
            raise NonFiniteEnvError(
                f"--env {env_id}: the env returned NaN/inf {name} at env step {step}; {kept}"
            )


@torch.no_grad()
def evaluate(agent: ActorCritic, options: RunOptions, episodes: int) -> dict[str, Any]:
    """The deterministic policy's return on `episodes` seeded episodes (one per env)."""
    env = make_vec_env(
        options.env, episodes, options.world_obs, options.world_reward, options.image_size
    )
    obs = env.reset(seed=EVAL_SEED)
    totals = np.zeros(episodes)
    running, solved = np.ones(episodes, dtype=bool), np.zeros(episodes, dtype=bool)
    while running.any():
        obs, reward, terminated, truncated, _ = env.step(agent.act(obs, deterministic=True))
        totals += np.where(running, reward, 0.0)
        solved |= running & terminated
        running &= ~(terminated | truncated)
    result = {
        "env": options.env,
        "mean_return": float(totals.mean()),
        "std_return": float(totals.std()),
        "episodes": int(episodes),
        "returns": [float(r) for r in totals],
        "seed": EVAL_SEED,
    }
    if options.env.startswith("nanovla/"):  # the world terminates an episode on success only
        result["success_rate"] = float(solved.mean())
    return result


def plot_curve(records: list[dict[str, float]], png: Path, title: str) -> Path | None:
    """Episodic return vs env steps (each update's mean, and a running mean) into `png`;
    None when nothing was logged or matplotlib is missing."""
    points = [
        (r["step"], r["charts/episodic_return"]) for r in records if "charts/episodic_return" in r
    ]
    if not points:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    steps, returns = np.array(points).T
    window = max(1, len(returns) // 20)
    smooth = np.convolve(returns, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, returns, alpha=0.35, label="episodic return (per update)")
    if window > 1:
        ax.plot(steps[window - 1 :], smooth, label=f"running mean of {window} updates")
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def run_command(command_cls: type, train: Any, argv: list[str], prog: str, description: str) -> int:
    """`prog ARGS`: parse `command_cls` from `argv`, `train` it on one torch thread (the
    networks are too small for more), print the deterministic evaluation's one-line summary."""
    command = tyro.cli(command_cls, args=argv, prog=prog, description=description)
    torch.set_num_threads(1)
    result = train(command)
    print(f"{command.env}: deterministic mean return {result['mean_return']:.1f} over "
          f"{result['episodes']} episodes after {result['env_steps']} env steps "
          f"({result['wall_s']:.0f} s); wrote {command.out / 'eval.json'}")  # fmt: skip
    return 0
