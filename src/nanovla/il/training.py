"""Train a policy on a dataset into a run directory and evaluate it: the step the imitation
algorithms repeat (each DAgger round, its BC baseline).

It composes the layers as `nanovla train` does (`BatchLoader` -> `Trainer` with a `RunRecord`
in each checkpoint -> `evaluate`), so every directory it trains into is a normal run: its
`checkpoints/last` evaluates with `nanovla eval`, drives `nanovla collect --policy`, and resumes
exactly when the process was killed (the engine's resume).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanovla.constants import CHECKPOINTS_DIR, LAST_LINK
from nanovla.errors import InputError, MissingError
from nanovla.eval.evaluate import EvalConfig, evaluate


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
    num_threads: int = 0
    progress: bool = True


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
            seed=seed,
        )
    except InputError as error:
        raise InputError(f"{dataset.root}: {error} (--batch-size {spec.batch_size})") from error
    config = TrainConfig(
        steps=steps,
        lr=spec.lr,
        warmup_steps=min(200, steps - 1),
        batch_size=spec.batch_size,
        seed=seed,
        log_every=100,
        num_threads=spec.num_threads,
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
    return Trainer(policy.train(), loader, config, out_dir, on_save=record.save, resume=resume)


def train_and_evaluate(
    spec: TrainSpec, out_dir: Path, policy: Any, dataset: Any, seed: int, steps: int
) -> tuple[Any, dict[str, Any], dict[str, float]]:
    """Train `policy` on every episode of `dataset` for `steps` steps into `out_dir` (resuming
    its checkpoint), then evaluate it: returns (policy in eval mode, eval dict, seconds)."""
    started = time.perf_counter()
    trainer = _trainer(spec, out_dir, policy, dataset, seed, steps)
    trainer.fit()
    trained = time.perf_counter()
    policy = trainer.model.eval()
    result = evaluate(policy, tuple(spec.tasks), spec.eval, spec.image_size, progress=spec.progress)
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
