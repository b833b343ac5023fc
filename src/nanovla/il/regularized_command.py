"""`nanovla finetune`: behavior-regularized fine-tuning of a checkpoint on a new task family.

The chain (the algorithm is `nanovla.il.regularized`):

1. check every input before anything is written (checkpoint, image size, tasks, beta, --out);
2. new demonstrations of `--tasks` (recorded once, cached under `data/` like `nanovla train`'s);
3. for `lwf`: pi_ref's own rollouts of the old tasks, recorded into `OUT/reference-rollouts`
   (only their frames are used); for `replay`: the checkpoint's own training demonstrations;
4. pi and pi_ref = the checkpoint extended to the new words and ranges (`extend_reference`);
5. the old and new families evaluated *before*, on the same seeded episodes as after;
6. the engine (`nanovla.train.engine.Trainer`) trains `RegularizedBC`; checkpoints under
   `OUT/checkpoints/`;
7. evaluated after; `OUT/eval.json` is `nanovla train`'s schema for the old + new families, plus
   `before` (the same for the checkpoint) and `finetune` (the forgetting table and the options).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from nanovla.constants import CHECKPOINTS_DIR, EVAL_FILE, INFO_PATH
from nanovla.errors import ExistsError, InputError, MissingError
from nanovla.eval.evaluate import EvalConfig, evaluate, format_table
from nanovla.io import write_json
from nanovla.world.tasks import TASK_FAMILIES

REFERENCE_DIR = "reference-rollouts"
"""OUT/<this>: pi_ref's rollouts of the old tasks (lwf)"""
REFERENCE_SEED = 20_000
"""collection seed of pi_ref's rollouts (+ --seed): away from demonstrations, validation, eval"""
DEFAULT_BETA: dict[str, float] = {"lwf": 10.0, "new": 10.0, "l2": 0.05, "replay": 1.0, "none": 0.0}
"""beta when --beta is not given. Each term has its own scale: D's gradient is 2 * error per
entry while the BC loss (smooth L1) pushes with about 1 per entry, so D needs beta ~10 to hold
errors of a few hundredths; l2 is a sum over ~0.3 M weights; replay is a BC loss like the new one"""


@dataclass
class FinetuneCommand:
    """Fine-tune a policy on a new task with loss = BC(new) + beta * D(pi, pi_ref)."""

    checkpoint: Path
    """the starting policy pi_ref: runs/RUN/checkpoints/last, a step directory or its
    pretrained_model/ (trained by nanovla train; its run.json names the old tasks)"""
    tasks: tuple[str, ...] = ("pick_place",)
    """the new task families to learn: reach, push, pick_place, sort"""
    beta: Annotated[
        float | None, tyro.conf.arg(help_behavior_hint="(default: lwf/new 10, l2 0.05, replay 1)")
    ] = None
    """weight of the regularizer; 0 = plain fine-tuning"""
    regularizer: Literal["replay", "lwf", "new", "l2", "none"] = "replay"
    """replay (the default: the one that kept the old tasks within 5 points and learned
    pick_place to >= 0.85 from a reach + push policy in 4000 steps; benchmarks/il_forgetting.py):
    BC on the checkpoint's own old demonstrations, weighted by beta; lwf: D(pi, pi_ref) on frames
    of the old tasks rendered by rolling pi_ref out (learning without forgetting: no old
    demonstrations needed); new: D on the new demonstrations' frames (the study guide's); l2:
    squared distance to the starting weights; none: plain fine-tuning. D is the chunk MSE for
    the tanh head, the KL of the bin distributions for the binned head"""
    out: Annotated[Path | None, tyro.conf.arg(help_behavior_hint="(default: runs/ft-<time>)")] = (
        None
    )
    """run directory: eval.json, checkpoints/, logs/; must not hold a run already"""
    demos: int = 2000
    """expert demonstrations of the new tasks to record (cached under data/)"""
    steps: int = 4000
    """optimizer steps of fine-tuning"""
    lr: float = 2e-3
    """peak learning rate (warmup, then cosine decay to a tenth)"""
    batch_size: int = 64
    """new-task frames per step"""
    old_batch_size: int = 32
    """lwf and replay: old-task frames added to each step"""
    seed: int = 0
    """seed of the new demonstrations, pi_ref's rollouts and the batch order"""
    reference_episodes: int = 600
    """lwf: pi_ref rollouts of the old tasks (all old families together, failures kept)"""
    old_tasks: Annotated[
        tuple[str, ...], tyro.conf.arg(help_behavior_hint="(default: the checkpoint's run.json)")
    ] = ()
    """the families the checkpoint already performs"""
    replay_dataset: Annotated[
        Path | None, tyro.conf.arg(help_behavior_hint="(default: the checkpoint's run.json)")
    ] = None
    """replay: the old demonstrations"""
    dataset: Path | None = None
    """new demonstrations to use instead of recording them (a nanovla dataset directory)"""
    image_size: Annotated[
        int | None, tyro.conf.arg(help_behavior_hint="(default: the checkpoint's)")
    ] = None
    """camera image size; must be the checkpoint's"""
    expert_noise: float = 0.3
    """DART noise of the new demonstrations (as nanovla train records them)"""
    weight_decay: float = 0.0
    """AdamW weight decay toward zero (off: it pulls away from pi_ref as well)"""
    augment_shift: int = 2
    """random-shift augmentation in pixels of the new and old frames; 0 = off"""
    num_threads: int = 0
    """torch CPU threads; 0 = torch's default"""
    progress: bool = True
    """progress bars (collection, training, evaluation)"""
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(gifs=0))
    """the before/after evaluation (the same seeded episodes for both)"""

    def check(self) -> None:
        """Every option that can be checked without reading a file; InputError naming it."""
        unknown = [task for task in self.tasks if task not in TASK_FAMILIES]
        if not self.tasks or unknown:
            raise InputError(f"--tasks: unknown task {unknown}; choose from {list(TASK_FAMILIES)}")
        unknown = [task for task in self.old_tasks if task not in TASK_FAMILIES]
        if unknown:
            raise InputError(f"--old-tasks: unknown task {unknown}; choose from {TASK_FAMILIES}")
        if self.beta is not None and not (self.beta >= 0 and self.beta != float("inf")):
            raise InputError(f"--beta must be a finite number >= 0, got {self.beta}")
        for name in ("demos", "steps", "batch_size", "old_batch_size", "reference_episodes"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1")
        if self.lr <= 0 or self.weight_decay < 0:
            raise InputError("--lr must be > 0 and --weight-decay >= 0")

    @property
    def resolved_beta(self) -> float:
        return DEFAULT_BETA[self.regularizer] if self.beta is None else self.beta


def _load_checkpoint(command: FinetuneCommand) -> tuple[Any, Any, Path]:
    """(policy, run record or None, pretrained dir); image size checked against --image-size."""
    from nanovla.models.policy import Policy
    from nanovla.train.checkpoint import pretrained_dir
    from nanovla.train.run_record import RunRecord

    if not Path(command.checkpoint).exists():
        raise MissingError(f"--checkpoint {command.checkpoint}: not found")
    pretrained = pretrained_dir(command.checkpoint)
    policy = Policy.from_pretrained(pretrained)
    size = policy.config.image_size
    if command.image_size is not None and command.image_size != size:
        raise InputError(
            f"--checkpoint {command.checkpoint} is for {size}x{size} images, not --image-size "
            f"{command.image_size}"
        )
    return policy, RunRecord.load(pretrained), pretrained


def _old_tasks(command: FinetuneCommand, record: Any) -> tuple[str, ...]:
    if command.old_tasks:
        return command.old_tasks
    if record is None:
        raise InputError(f"--checkpoint {command.checkpoint} has no run.json; pass --old-tasks")
    return tuple(record.families)


def _check_out(out: Path) -> None:
    if (out / EVAL_FILE).exists() or (out / CHECKPOINTS_DIR).exists():
        raise ExistsError(f"--out {out} already holds a run; choose another directory")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a directory")


def new_dataset_dir(command: FinetuneCommand, image_size: int) -> Path:
    """data/<tasks>-<demos>ep-<hash>, keyed as nanovla train keys its demonstrations."""
    from nanovla.world.experts import EXPERT_VERSION

    if command.dataset is not None:
        return Path(command.dataset)
    key = {
        "tasks": list(command.tasks),
        "episodes": command.demos,
        "instructions": "train+ko",
        "image_size": image_size,
        "expert_noise": command.expert_noise,
        "num_envs": 32,
        "seed": command.seed,
        "expert_version": EXPERT_VERSION,
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return Path("data") / f"{'-'.join(command.tasks)}-{command.demos}ep-{digest}"


def _record(config: Any, actor: Any = None) -> Path:
    from nanovla.data.collect import collect

    if (Path(config.out) / INFO_PATH).is_file():
        print(f"finetune: using cached {config.out}")
        return Path(config.out)
    return collect(config, actor)


def _datasets(command: FinetuneCommand, reference: Any, old: tuple[str, ...], out: Path) -> Any:
    """(new dataset, old dataset or None) as EpisodeDatasets, recorded when missing."""
    from nanovla.data import EpisodeDataset
    from nanovla.data.collect import CollectConfig

    size = reference.config.image_size
    path = new_dataset_dir(command, size)
    if command.dataset is not None and not (path / INFO_PATH).is_file():
        raise MissingError(f"--dataset {path}: no dataset there")
    base = dict(image_size=size, instructions="train+ko", progress=command.progress)
    if command.dataset is None:
        new_config = CollectConfig(
            task=",".join(command.tasks),
            episodes=command.demos,
            out=path,
            seed=command.seed,
            expert_noise=command.expert_noise,
            **base,
        )
        _record(new_config)
    new = EpisodeDataset(path, cache="auto", progress=command.progress)
    _check_dataset(new, reference, f"--dataset {path}")
    old_data = None
    if command.regularizer == "lwf" and command.resolved_beta > 0:
        rollouts = CollectConfig(
            task=",".join(old),
            episodes=command.reference_episodes,
            out=out / REFERENCE_DIR,
            seed=REFERENCE_SEED + command.seed,
            keep_failures=True,
            **base,
        )
        old_data = EpisodeDataset(_record(rollouts, reference), progress=command.progress)
    elif command.regularizer == "replay" and command.resolved_beta > 0:
        old_data = EpisodeDataset(_replay_path(command), cache="auto", progress=command.progress)
        _check_dataset(old_data, reference, f"--replay-dataset {old_data.root}")
    return new, old_data


def _replay_path(command: FinetuneCommand) -> Path:
    from nanovla.train.checkpoint import pretrained_dir
    from nanovla.train.run_record import RunRecord

    record = RunRecord.load(pretrained_dir(command.checkpoint))
    path = command.replay_dataset or (Path(record.dataset) if record is not None else None)
    if path is None or not (Path(path) / INFO_PATH).is_file():
        raise MissingError(f"--replay-dataset {path}: no dataset there (the old demonstrations)")
    return Path(path)


def _check_dataset(dataset: Any, policy: Any, name: str) -> None:
    """Frames, state and action sizes must be the policy's."""
    config = policy.config
    shape = (config.image_size, config.image_size, 3)
    sizes = (dataset.image_shape, dataset.state_dim, dataset.action_dim)
    if sizes != (shape, config.state_dim, config.action_dim):
        raise InputError(
            f"{name}: frames {dataset.image_shape}, state {dataset.state_dim}, action "
            f"{dataset.action_dim} do not match the checkpoint's {shape}, {config.state_dim}, "
            f"{config.action_dim}"
        )


def _loader(dataset: Any, command: FinetuneCommand, chunk: int, seed: int, size: int) -> Any:
    from nanovla.data import BatchLoader

    return BatchLoader(
        dataset, size, chunk=chunk, split="all", augment_shift=command.augment_shift, seed=seed
    )


def forgetting_rows(before: dict, after: dict, old: tuple[str, ...], split: str = "seen") -> list:
    """One row per family: role (old/new), before and after success with their 95% intervals."""
    rows = []
    for family in after["families"]:
        row = {"family": family, "role": "old" if family in old else "new"}
        for name, result in (("before", before), ("after", after)):
            summary = result["splits"][split]
            row[name] = summary["per_task"][family]
            row[f"{name}_ci95"] = summary["per_task_ci95"][family]
        rows.append(row)
    return rows


def format_forgetting(rows: list, episodes: int, seed: int) -> str:
    """The forgetting table as printed (seen instructions)."""
    lines = [f"{'family':<11}{'role':<5}{'before':>22}{'after':>22}", "-" * 60]
    for row in rows:
        cells = [
            f"{row[k]:.2f} [{row[k + '_ci95'][0]:.2f}, {row[k + '_ci95'][1]:.2f}]"
            for k in ("before", "after")
        ]
        lines.append(f"{row['family']:<11}{row['role']:<5}{cells[0]:>22}{cells[1]:>22}")
    lines.append(f"seen instructions, {episodes} episodes per family, seed {seed}")
    return "\n".join(lines)


def run(command: FinetuneCommand) -> dict[str, Any]:
    """The whole job; returns the eval.json dict (also written to OUT/eval.json)."""
    from nanovla.il.regularized import RegularizedBC, extend_reference
    from nanovla.train.config import TrainConfig
    from nanovla.train.engine import Trainer
    from nanovla.train.run_record import RunRecord

    started = time.perf_counter()
    out = command.out or Path("runs") / time.strftime("ft-%Y%m%d-%H%M%S")
    command.check()
    _check_out(out)
    reference, record, pretrained = _load_checkpoint(command)
    old = _old_tasks(command, record)
    families = tuple(dict.fromkeys((*old, *command.tasks)))
    beta, size = command.resolved_beta, reference.config.image_size
    new, old_data = _datasets(command, reference, old, out)
    texts = [*new.tasks, *(old_data.tasks if old_data is not None else [])]
    policy = extend_reference(reference, texts, new.stats)
    frozen = extend_reference(reference, texts, new.stats)
    show = command.progress
    before = evaluate(reference, families, command.eval, size, progress=show)
    chunk = reference.config.chunk
    old_loader = None
    if old_data is not None:
        old_loader = _loader(old_data, command, chunk, command.seed + 7, command.old_batch_size)
    model = RegularizedBC(policy, frozen, command.regularizer, beta, old_loader)
    config = TrainConfig(
        steps=command.steps,
        lr=command.lr,
        batch_size=command.batch_size,
        warmup_steps=min(100, command.steps - 1),
        log_every=100,
        weight_decay=command.weight_decay,
        seed=command.seed,
        num_threads=command.num_threads,
        progress=show,
    )
    run_record = RunRecord(
        families=families,
        image_size=size,
        instructions="train+ko",
        dataset=str(new.root),
        episodes=new.num_episodes,
        seed=command.seed,
        expert_version=record.expert_version if record else 0,
    )
    loader = _loader(new, command, chunk, command.seed, command.batch_size)
    trainer = Trainer(model, loader, config, out, on_save=run_record.save)
    print(
        f"finetune: {command.regularizer} beta={beta:g} on {new.num_frames} frames of "
        f"{', '.join(command.tasks)}, {command.steps} steps -> {out}"
    )
    trained_at = time.perf_counter()
    trainer.fit()
    trained = time.perf_counter()
    after = evaluate(policy.eval(), families, command.eval, size, progress=show)
    rows = forgetting_rows(before, after, old)
    after["checkpoint"] = str(out / CHECKPOINTS_DIR / "last")
    after["before"] = {**before, "checkpoint": str(pretrained)}
    after["finetune"] = {
        "regularizer": command.regularizer,
        "beta": beta,
        "old_families": list(old),
        "new_families": list(command.tasks),
        "dataset": str(new.root),
        "steps": command.steps,
        "forgetting": rows,
    }
    after["timing_s"] = {
        "prepare": round(trained_at - started, 1),
        "train": round(trained - trained_at, 1),
        "total": round(time.perf_counter() - started, 1),
    }
    write_json(out / EVAL_FILE, after)
    print(format_table(after))
    print(format_forgetting(rows, command.eval.episodes, command.eval.seed))
    timing = after["timing_s"]
    print(
        f"wall time {timing['total']:.0f} s (train {timing['train']:.0f} s); wrote {out / EVAL_FILE}"
    )
    return after


def main(argv: list[str]) -> int:
    """Entry point of `nanovla finetune`."""
    command = tyro.cli(
        FinetuneCommand, args=argv, prog="nanovla finetune", description=__doc__.split("\n\n")[0]
    )
    run(command)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
