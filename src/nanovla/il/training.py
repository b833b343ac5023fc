"""Train a policy on a dataset into a run directory and evaluate it: the step the imitation
algorithms repeat (each DAgger round, its BC baseline).

It composes the layers as `nanovla train` does (`BatchLoader` -> `Trainer` with a `RunRecord`
in each checkpoint -> `evaluate`), so every directory it trains into is a normal run: its
`checkpoints/last` evaluates with `nanovla eval`, drives `nanovla collect --policy`, and resumes
exactly when the process was killed (the engine's resume).

As `nanovla train` does (`pipeline.RunHooks`), the engine keeps a weight EMA (`train/ema.py`,
`TrainSpec.ema_decay`, the main job's 0.999 with its warmup d_n = min(decay, (1+n)/(10+n)))
updated after every optimizer step and saved in every checkpoint as `pretrained_model/ema/`;
the evaluation judges the EMA weights, and `judged_checkpoint(run_dir)` names the folder that
holds them (`nanovla eval RUN/checkpoints/last/pretrained_model/ema` judges the same weights).
A resumed run restores the saved average exactly. `ema_decay=0` trains and judges the raw
weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nanovla.constants import CHECKPOINTS_DIR, LAST_LINK, PRETRAINED_DIR
from nanovla.errors import InputError, MissingError
from nanovla.eval.evaluate import VALIDATION_SEED, EvalConfig, evaluate
from nanovla.eval.select import BestCheckpoint, validate

if TYPE_CHECKING:
    from nanovla.train.ema import EMAHooks


@dataclass
class TrainSpec:
    """How to train and judge one policy (the options an imitation command shares)."""

    tasks: tuple[str, ...]
    image_size: int
    instructions: str
    eval: EvalConfig
    lr: float = 2e-3
    batch_size: int = 64
    augment_shift: int = 2
    color_swap: float = 0.0
    """colour-swap probability of the loader (`data/color_swap.py`); 0 = off"""
    num_threads: int = 0
    amp: str = "none"
    """autocast precision of the training step (`TrainConfig.amp`): none | bf16 | fp16"""
    progress: bool = True
    ema_decay: float = 0.999
    """weight EMA decay (train/ema.py); the EMA weights are the ones evaluated; 0 = off"""
    select_every: int = 0
    """validate every this many steps (and at the last) and judge the best-validating weights
    (`eval/select.py`); 0 = judge the last ones"""
    select_episodes: int = 50
    """validation episodes per family (seen instructions, validation seeds)"""


def load_policy(path: Path, option: str, image_size: int) -> Any:
    """The policy saved at `path` (named `option` in errors), refused when it takes other
    image sizes than `image_size`."""
    from nanovla.models.policy import Policy
    from nanovla.train.checkpoint import pretrained_dir

    if not Path(path).exists():
        raise MissingError(f"{option} {path}: checkpoint not found")
    policy = Policy.from_pretrained(pretrained_dir(path))
    if policy.config.image_size != image_size:
        raise InputError(
            f"{option} {path}: the policy takes {policy.config.image_size}x"
            f"{policy.config.image_size} images, this run records {image_size}x{image_size} "
            "(--image-size)"
        )
    return policy


def new_policy(options: Any, image_size: int, dataset: Any, seed: int) -> Any:
    """New weights drawn from `seed` (and nothing else) for `dataset`'s statistics and tasks;
    `options` is a `PolicyOptions` / `PolicyConfig`."""
    from nanovla.models.policy import Policy, PolicyConfig
    from nanovla.train.rng import seed_everything
    from nanovla.train_command import plain_config

    seed_everything(seed)
    return Policy.from_dataset(plain_config(options, PolicyConfig, image_size=image_size), dataset)


def _trainer(spec: TrainSpec, out_dir: Path, policy: Any, dataset: Any, seed: int, steps: int) -> Any:  # fmt: skip
    """The engine on `dataset`, resuming `out_dir`'s checkpoint when there is one."""
    from nanovla.data import BatchLoader
    from nanovla.train.config import TrainConfig
    from nanovla.train.ema import EMAHooks
    from nanovla.train.engine import Trainer
    from nanovla.train.run_record import RunRecord
    from nanovla.world.experts import EXPERT_VERSION

    try:
        loader = BatchLoader(
            dataset,
            spec.batch_size,
            chunk=policy.config.chunk,
            val_fraction=0.0,
            augment_shift=spec.augment_shift,
            color_swap=spec.color_swap,
            seed=seed,
        )
    except InputError as error:
        raise InputError(f"{dataset.root}: {error} (--batch-size {spec.batch_size})") from error
    config = TrainConfig(
        steps=steps,
        eval_every=spec.select_every,
        lr=spec.lr,
        warmup_steps=min(200, steps - 1),
        batch_size=spec.batch_size,
        seed=seed,
        log_every=100,
        num_threads=spec.num_threads,
        amp=spec.amp,
        progress=spec.progress,
        tensorboard=False,
    )
    record = RunRecord(
        families=tuple(spec.tasks),
        image_size=spec.image_size,
        instructions=spec.instructions,
        dataset=str(dataset.root),
        episodes=dataset.num_episodes,
        seed=seed,
        expert_version=EXPERT_VERSION,
    )
    resume = (out_dir / CHECKPOINTS_DIR / LAST_LINK).exists()
    hooks = EMAHooks(record, spec.ema_decay)
    best = BestCheckpoint(out_dir, on_save=record.save) if spec.select_every > 0 else None
    trainer = Trainer(
        policy.train(),
        loader,
        config,
        out_dir,
        eval_fn=None if best is None else _validation(spec, hooks, best),
        on_save=hooks.on_save,
        resume=resume,
    )
    hooks.attach(trainer)
    trainer.ema, trainer.best = hooks.ema, best
    return trainer


def _validation(spec: TrainSpec, hooks: EMAHooks, best: BestCheckpoint) -> Any:
    """eval_fn: seen success of the judged (EMA) weights on validation scenes
    (`VALIDATION_SEED`, never the final evaluation's), the best of them kept by `best`."""
    config = EvalConfig(
        episodes=spec.select_episodes, splits=("seen",), gifs=0, seed=VALIDATION_SEED
    )

    def eval_fn(model: Any, step: int) -> dict[str, float]:
        return validate(hooks.judged(model), tuple(spec.tasks), config, spec.image_size, step, best)

    return eval_fn


def judged_checkpoint(run_dir: Path) -> Path:
    """The weights a run trained by `train_and_evaluate` into `run_dir` was judged on: the
    selected ones (`selection/best/pretrained_model`) when it validated, else its last
    checkpoint's EMA policy folder when it kept an EMA, else the last checkpoint."""
    from nanovla.train.ema import EMA_DIR

    best = BestCheckpoint(run_dir).path
    if best is not None and best.is_dir():
        return best
    last = Path(run_dir) / CHECKPOINTS_DIR / LAST_LINK
    ema = last / PRETRAINED_DIR / EMA_DIR
    return ema if ema.is_dir() else last


def train_and_evaluate(
    spec: TrainSpec, out_dir: Path, policy: Any, dataset: Any, seed: int, steps: int
) -> tuple[Any, dict[str, Any], dict[str, float]]:
    """Train `policy` on every episode of `dataset` for `steps` steps into `out_dir` (resuming
    its checkpoint), then evaluate the weights it keeps (the EMA's when `spec.ema_decay` > 0):
    returns (that policy in eval mode, eval dict with its "checkpoint", seconds)."""
    from nanovla.models.policy import Policy

    started = time.perf_counter()
    trainer = _trainer(spec, out_dir, policy, dataset, seed, steps)
    trainer.fit()
    trained = time.perf_counter()
    policy = (trainer.model if trainer.ema is None else trainer.ema.module).eval()
    if trainer.best is not None and trainer.best.path is not None:
        policy = Policy.from_pretrained(trainer.best.path).eval()
    result = evaluate(policy, tuple(spec.tasks), spec.eval, spec.image_size, progress=spec.progress)
    result["checkpoint"] = str(judged_checkpoint(out_dir))
    if trainer.best is not None and trainer.best.best is not None:
        result["selected_step"] = int(trainer.best.best["step"])
    policy.reset()
    seconds = {
        "train": round(trained - started, 1),
        "eval": round(time.perf_counter() - trained, 1),
    }
    return policy, result, seconds


def seen_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The `seen` split of an eval dict (or its first split when `seen` was not run)."""
    splits = result["splits"]
    return splits["seen"] if "seen" in splits else next(iter(splits.values()))
