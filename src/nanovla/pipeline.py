"""`nanovla train`: the main job — demonstrations -> dataset -> VLA policy -> BC -> evaluation.

With no arguments it records expert demonstrations of reach, push and pick_place in the embedded
world (English and Korean training instructions, 64x64 images; cached under `data/` so the
second run skips it), trains the default policy by behavior cloning, evaluates it on fixed seeded
episodes for seen, held-out and Korean instructions, prints the success table and writes
`OUT/eval.json`, rollout GIFs and the checkpoints under `OUT/checkpoints/`.

`--resume` continues the run in `--out` with the options it was started with; options that only
say how long to train, how often to log, save or validate, and how to evaluate at the end may be
given again and are applied; any other option given with `--resume` is refused by name.

This module sits above every layer: it is the one place that chains collection (data/),
the policy (models/), the engine (train/) and evaluation (eval/).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import tyro

from nanovla.codec import from_json, to_json
from nanovla.constants import (
    CHECKPOINTS_DIR,
    COMMAND_FILE,
    EVAL_FILE,
    INFO_PATH,
    LAST_LINK,
    VIDEOS_DIR,
)
from nanovla.errors import ExistsError, InputError, MissingError
from nanovla.eval.evaluate import (
    VALIDATION_SEED,
    EvalConfig,
    evaluate,
    format_table,
    seed_range,
)
from nanovla.io import read_json, write_json
from nanovla.models.policy import Policy, PolicyConfig
from nanovla.train.config import TrainConfig
from nanovla.train.run_record import RunRecord

RESUMABLE: tuple[str, ...] = (
    "train.steps",
    "train.log_every",
    "train.save_every",
    "train.keep_last",
    "train.eval_every",
    "train.num_threads",
    "train.tensorboard",
    "train.progress",
    "eval",
    "eval_every_episodes",
)
"""Options `--resume` applies when given again (dotted names; `eval` = every `--eval.*`).
Raising `--train.steps` extends the run; the learning-rate schedule is recomputed for the new
total, so it continues from where the new schedule stands at the resumed step."""


@dataclass
class TrainLoopOptions(TrainConfig):
    """The training loop (`TrainConfig`) as `nanovla train` exposes it: batch size, seed, resume
    and progress are the command's own `--batch-size`, `--seed`, `--resume`, `--no-progress`
    (one option per setting)."""

    batch_size: tyro.conf.Suppress[int] = 64
    seed: tyro.conf.Suppress[int] = 0
    resume: tyro.conf.Suppress[bool] = False
    progress: tyro.conf.Suppress[bool] = True


@dataclass
class PolicyOptions(PolicyConfig):
    """The policy (`PolicyConfig`) as `nanovla train` exposes it: the image size is the command's
    own `--image-size` (the demonstrations are recorded at it too)."""

    image_size: tyro.conf.Suppress[int] = 64


def _plain(config: Any, cls: type, **changes: Any) -> Any:
    """`config` (an *Options subclass) as an instance of the plain config `cls`."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if f.init}
    return cls(**{**values, **changes})


def _default_train() -> TrainLoopOptions:
    # eval_every: the validation loss (8 held-out batches) and 10 validation rollouts per family
    # every 1000 steps cost a few seconds per run and do not change the weights.
    return TrainLoopOptions(steps=7000, lr=2e-3, warmup_steps=200, log_every=100, eval_every=1000)


def default_policy_config() -> PolicyOptions:
    """The policy of the default `nanovla train` run (benchmarks measure this one)."""
    # One stride-2 stage fewer than vla_cnn's default: FiLM and the readout work on a 16x16 grid
    # (64x64 images), which generalized to new scenes measurably faster per second of training
    # than the 8x8 grid on the default suite (validation action L1 at equal wall time).
    return PolicyOptions(vision_widths=(32,))


@dataclass
class TrainCommand:
    """Collect demonstrations (cached), train a VLA policy by behavior cloning, evaluate it.

    Options you will most likely change come first.
    """

    out: Annotated[Path | None, tyro.conf.arg(help_behavior_hint="(default: runs/<timestamp>)")] = (
        None
    )
    """run directory; holds checkpoints/, logs/, eval.json, videos/"""
    tasks: tuple[str, ...] = ("reach", "push", "pick_place")
    """task families to learn: reach, push, pick_place, sort"""
    episodes: int = 6000
    """expert demonstrations to record (all families together); distinct scenes are what a
    policy needs to generalize, and recording is cheap"""
    resume: bool = False
    """continue the run in --out from its last checkpoint with the options it was started with;
    only --train.steps, the logging/saving/validation intervals and --eval.* may be given again"""
    instructions: str = "train+ko"
    """instruction templates of the demonstrations: train | ko | train+ko | heldout | ko_heldout"""
    image_size: int = 64
    """camera images are image_size x image_size RGB"""
    quick: bool = False
    """a quick run instead of the full job: reach and push only, 3000 demonstrations, 5000 steps,
    30 evaluation episodes per family; about 3 minutes on 2 cores, seen success about 0.9 (the
    README gives the measured range); options given too still apply"""
    dataset: Annotated[
        Path | None,
        tyro.conf.arg(help_behavior_hint="(default: data/<tasks>-<episodes>ep-<options hash>)"),
    ] = None
    """dataset directory to train on; the default one is recorded on the first run and reused
    afterwards. A given directory must hold a dataset (or pass --collect-missing); what it holds
    (episodes, image size, families) wins over the options, and the run records its truth"""
    collect_missing: bool = False
    """record the demonstrations into --dataset when that directory does not exist yet"""
    progress: bool = True
    """progress bars (collection, training, evaluation); --no-progress silences all of them"""
    expert_noise: float = 0.3
    """DART (noise injected while demonstrating): std of Gaussian noise added to the expert's
    executed motion; the recorded label stays clean, so the demonstrations show how to recover
    from off-course states"""
    collect_envs: int = 32
    """parallel worlds while recording demonstrations"""
    seed: int = 0
    """seed of the demonstrations' initial states, the initial weights and the batch order"""
    val_seed: int = VALIDATION_SEED
    """base seed of the validation rollouts during training (--train.eval-every > 0); their
    scenes are disjoint from the final evaluation's (--eval.seed) and from the demonstrations'"""
    batch_size: int = 64
    """frames per training batch"""
    augment_shift: int = 2
    """random-shift augmentation in pixels (replicate-pad and crop back); 0 = off"""
    val_fraction: float = 0.05
    """fraction of episodes held out for the validation loss"""
    eval_every_episodes: int = 10
    """episodes per family in the validation rollouts (--train.eval-every sets how often; the
    validation loss on the --val-fraction episodes is computed at the same time); 0 = loss only"""
    policy: PolicyOptions = field(default_factory=default_policy_config)
    """the policy architecture"""
    train: TrainLoopOptions = field(default_factory=_default_train)
    """the optimizer and the training loop"""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """the final evaluation"""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise InputError(f"--episodes must be >= 1, got {self.episodes}")
        if not self.tasks:
            raise InputError("--tasks must name at least one task family")
        if not 0.0 <= self.val_fraction < 1.0:
            raise InputError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        validation, final = seed_range(self.val_seed), seed_range(self.eval.seed)
        if validation.start < final.stop and final.start < validation.stop:
            raise InputError(
                f"--val-seed {self.val_seed} and --eval.seed {self.eval.seed} give overlapping "
                f"scenes (each uses {len(final)} seeds from its base); move one of them"
            )
        if self.seed in validation or self.seed in final:
            raise InputError(
                f"--seed {self.seed} lies in the validation or evaluation seed range; the "
                "demonstrations would share scenes with them"
            )


def dataset_dir(command: TrainCommand) -> Path:
    """Where the demonstrations for `command` live: given, or keyed by the collection options."""
    from nanovla.world.experts import EXPERT_VERSION

    if command.dataset is not None:
        return Path(command.dataset)
    key = {
        "tasks": list(command.tasks),
        "episodes": command.episodes,
        "instructions": command.instructions,
        "image_size": command.image_size,
        "expert_noise": command.expert_noise,
        "num_envs": command.collect_envs,
        "seed": command.seed,
        "expert_version": EXPERT_VERSION,
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return Path("data") / f"{'-'.join(command.tasks)}-{command.episodes}ep-{digest}"


def check_given_dataset(command: TrainCommand) -> None:
    """A `--dataset` that does not exist is a typo unless `--collect-missing` says otherwise."""
    path = command.dataset
    if path is None or command.collect_missing or (Path(path) / INFO_PATH).is_file():
        return
    if not Path(path).exists():
        raise MissingError(
            f"--dataset {path}: no dataset there; check the path, or add --collect-missing to "
            "record the demonstrations into it"
        )


def ensure_dataset(command: TrainCommand) -> Path:
    """Record the demonstrations unless a dataset already sits at `dataset_dir(command)`."""
    from nanovla.data.collect import CollectConfig, collect

    path = dataset_dir(command)
    if (path / INFO_PATH).is_file():
        if command.dataset is None:
            print(f"train: using cached demonstrations in {path}")
        return path
    if path.exists() and any(path.iterdir()):
        raise InputError(
            f"{path} exists but holds no {INFO_PATH}: not a dataset; remove it or pass --dataset"
        )
    check_given_dataset(command)
    return collect(
        CollectConfig(
            task=",".join(command.tasks),
            episodes=command.episodes,
            out=path,
            num_envs=command.collect_envs,
            image_size=command.image_size,
            instructions=command.instructions,
            seed=command.seed,
            expert_noise=command.expert_noise,
            progress=command.progress,
        )
    )


def reconcile_dataset(command: TrainCommand, dataset: Any) -> TrainCommand:
    """`command` with what a given `--dataset` really holds (episodes, image size, families).

    An explicit dataset wins over the options that describe it: each difference is printed, and
    the returned command (saved as train_command.json) states the dataset's truth. Families are
    known when the dataset records them (`nanovla collect` writes them into meta/info.json).
    """
    if command.dataset is None:
        return command
    changes: dict[str, Any] = {}
    notes: list[str] = []
    if dataset.num_episodes != command.episodes:
        changes["episodes"] = dataset.num_episodes
        notes.append(f"{dataset.num_episodes} episodes (not --episodes {command.episodes})")
    height, width = dataset.image_shape[:2]  # (H, W, 3)
    if height != width:
        raise InputError(
            f"--dataset {command.dataset}: frames are {height}x{width}; the policy needs square images"
        )
    if height != command.image_size:
        changes["image_size"] = height
        notes.append(f"{height}x{width} frames (not --image-size {command.image_size})")
    recorded = dataset.info.get("nanovla", {}).get("families")
    if recorded and tuple(recorded) != tuple(command.tasks):
        changes["tasks"] = tuple(recorded)
        notes.append(f"families {', '.join(recorded)} (not --tasks {' '.join(command.tasks)})")
    if notes:
        print(
            f"train: --dataset {command.dataset} holds {'; '.join(notes)}: training on what it holds"
        )
    return dataclasses.replace(command, **changes)


def build_policy(command: TrainCommand, dataset: Any) -> Policy:
    """The policy's initial weights, drawn from `command.seed` (and nothing else)."""
    from nanovla.train.rng import seed_everything

    seed_everything(command.seed)
    config = _plain(command.policy, PolicyConfig, image_size=command.image_size)
    return Policy.from_dataset(config, dataset)


def _loaders(command: TrainCommand, dataset: Any) -> tuple[Any, list[dict[str, Any]]]:
    """The training loader and a fixed list of validation batches (drawn once, before training,
    so the validation loss is comparable across evaluations and after a resume)."""
    try:
        return _build_loaders(command, dataset)
    except InputError as error:
        raise InputError(
            f"{error} (nanovla train: --episodes {command.episodes}, --batch-size "
            f"{command.batch_size}, --val-fraction {command.val_fraction})"
        ) from error


def _build_loaders(command: TrainCommand, dataset: Any) -> tuple[Any, list[dict[str, Any]]]:
    from nanovla.data import BatchLoader

    chunk = command.policy.chunk
    loader = BatchLoader(
        dataset,
        command.batch_size,
        chunk=chunk,
        val_fraction=command.val_fraction,
        augment_shift=command.augment_shift,
        seed=command.seed,
    )
    if command.val_fraction <= 0:
        return loader, []
    val_loader = BatchLoader(
        dataset,
        command.batch_size,
        chunk=chunk,
        split="val",
        val_fraction=command.val_fraction,
        seed=command.seed,
        drop_last=False,
    )
    return loader, [val_loader.next_batch() for _ in range(min(8, len(val_loader)))]


def _validation(command: TrainCommand, val_batches: list[dict[str, Any]]) -> Any:
    """eval_fn for the Trainer: validation loss + seen-instruction success on validation scenes
    (`--val-seed`), never on the final evaluation's scenes."""
    config = EvalConfig(
        episodes=max(command.eval_every_episodes, 1),
        splits=("seen",),
        gifs=0,
        seed=command.val_seed,
    )

    def eval_fn(model: Policy, step: int) -> dict[str, float]:
        import torch

        metrics: dict[str, float] = {}
        if val_batches:
            with torch.inference_mode():
                losses = [float(model(batch)[0]) for batch in val_batches]
            metrics["val_loss"] = sum(losses) / len(losses)
        if command.eval_every_episodes > 0:
            result = evaluate(model, command.tasks, config, command.image_size, progress=False)
            model.reset()
            metrics["success"] = result["splits"]["seen"]["success"]
            for family, rate in result["splits"]["seen"]["per_task"].items():
                metrics[f"success_{family}"] = rate
        return metrics

    return eval_fn


def run(command: TrainCommand) -> dict[str, Any]:
    """The whole job; returns the final evaluation dict (also written to OUT/eval.json).

    Everything that writes into OUT runs under `OUT/.lock` (`RunLock`): a second process on the
    same run directory is refused. train_command.json is written before the demonstrations are
    recorded, so a run killed at any instant continues with `--resume`; with no checkpoint yet
    (killed before the first save) `--resume` starts again from step 0 and says so.
    """
    import shlex

    from nanovla.data import EpisodeDataset
    from nanovla.train.engine import Trainer, kill_point, naming
    from nanovla.train.lock import RunLock
    from nanovla.world.experts import EXPERT_VERSION

    started = time.perf_counter()
    out = command.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    last = out / CHECKPOINTS_DIR / LAST_LINK
    with RunLock(out):
        resume = command.resume
        if resume and not last.exists():
            if not (out / COMMAND_FILE).is_file():
                raise MissingError(f"--resume: no checkpoint at {last}")
            print(
                f"train: --resume: {out} has no checkpoint yet (it stopped before its first "
                "save); starting from step 0"
            )
            resume = False
        if not command.resume and (out / CHECKPOINTS_DIR).exists():
            raise ExistsError(f"{out} already holds a run; pass --resume to continue it")
        if not command.resume:  # first: a run killed from here on continues with --resume
            with naming(out / COMMAND_FILE):
                write_json(out / COMMAND_FILE, _command_dict(command, out))
        data_path = ensure_dataset(command)
        collected = time.perf_counter()
        dataset = EpisodeDataset(data_path, progress=command.progress)
        command = reconcile_dataset(command, dataset)
        policy = build_policy(command, dataset)
        loader, val_batches = _loaders(command, dataset)
        train_config = _plain(
            command.train,
            TrainConfig,
            batch_size=command.batch_size,
            seed=command.seed,
            resume=resume,
            progress=command.progress,
        )
        record = RunRecord(
            families=tuple(command.tasks),
            image_size=command.image_size,
            instructions=command.instructions,
            dataset=str(data_path),
            episodes=dataset.num_episodes,
            seed=command.seed,
            expert_version=EXPERT_VERSION,
        )
        trainer = Trainer(
            policy,
            loader,
            train_config,
            out,
            eval_fn=_validation(command, val_batches),
            on_save=record.save,
            resume_hint=f"nanovla train --out {shlex.quote(str(out))} --resume",
        )
        with naming(out / COMMAND_FILE):
            write_json(out / COMMAND_FILE, _command_dict(command, out))
        n_params = sum(p.numel() for p in policy.parameters() if p.requires_grad)
        print(
            f"train: {dataset.num_episodes} episodes / {dataset.num_frames} frames, policy "
            f"{n_params / 1e6:.2f}M trainable params, {train_config.steps} steps -> {out}"
        )
        trainer.fit()
        kill_point("train:evaluate")
        trained = time.perf_counter()
        policy.eval()
        with naming(out / VIDEOS_DIR):
            result = evaluate(
                policy,
                command.tasks,
                command.eval,
                command.image_size,
                video_dir=out / VIDEOS_DIR,
                progress=command.progress,
            )
        result["checkpoint"] = str(last)
        result["timing_s"] = {
            "collect": round(collected - started, 1),
            "train": round(trained - collected, 1),
            "eval": round(time.perf_counter() - trained, 1),
            "total": round(time.perf_counter() - started, 1),
        }
        with naming(out / EVAL_FILE):
            write_json(out / EVAL_FILE, result)
        print(format_table(result))
        timing = result["timing_s"]
        print(
            f"wall time {timing['total']:.0f} s (collect {timing['collect']:.0f} s, train "
            f"{timing['train']:.0f} s, eval {timing['eval']:.0f} s); wrote {out / EVAL_FILE}"
        )
        return result


def _command_dict(command: TrainCommand, out: Path) -> dict[str, Any]:
    saved = to_json(command)
    saved["out"], saved["resume"] = str(out), False
    return saved


def load_command(out: Path) -> TrainCommand:
    """The command the run in `out` was started with (its train_command.json)."""
    path = out / COMMAND_FILE
    if not path.is_file():
        raise MissingError(f"--resume: {path} not found; is {out} a nanovla train run?")
    command = from_json(TrainCommand, read_json(path), source=str(path))
    command.out, command.resume = out, True
    return command


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two config dataclasses."""
    names = []
    for spec in dataclasses.fields(old):
        a, b = getattr(old, spec.name), getattr(new, spec.name)
        name = f"{prefix}{spec.name}"
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            names += _differences(a, b, name + ".")
        elif a != b:
            names.append(name)
    return names


def _allowed_on_resume(name: str) -> bool:
    return any(name == allowed or name.startswith(allowed + ".") for allowed in RESUMABLE)


def resume_command(saved: TrainCommand, given: TrainCommand) -> TrainCommand:
    """`given` (parsed with `saved` as its defaults) if it changes only resumable options;
    otherwise an InputError naming every option that may not change on resume."""
    changed = [name for name in _differences(saved, given) if name not in ("out", "resume")]
    refused = [name for name in changed if not _allowed_on_resume(name)]
    if refused:
        flags = ", ".join("--" + name.replace("_", "-") for name in refused)
        raise InputError(
            f"--resume continues the run with the options it was started with; these may not "
            f"change: {flags} (only --train.steps, the logging/saving/validation intervals and "
            "--eval.* may)"
        )
    if changed:
        print(f"train: resuming with changed {', '.join(changed)}")
    return given


def quick_command() -> TrainCommand:
    """What `--quick` starts from (options given on the command line still apply on top)."""
    train = dataclasses.replace(_default_train(), steps=5000)
    return TrainCommand(
        quick=True,
        tasks=("reach", "push"),
        episodes=3000,
        train=train,
        eval=EvalConfig(episodes=30),
    )


def parse(argv: list[str]) -> TrainCommand:
    """The command line as a TrainCommand; with --quick, on top of `quick_command()`; with
    --resume, the saved command updated by the options that may change (`resume_command`)."""
    command = tyro.cli(TrainCommand, args=argv, prog="nanovla train", description=__doc__)
    if command.quick and not command.resume:
        command = tyro.cli(TrainCommand, args=argv, default=quick_command(), prog="nanovla train")
    if not command.resume:
        return command
    if command.out is None:
        raise InputError("--resume needs --out naming the run directory to continue")
    saved = load_command(command.out)
    given = tyro.cli(
        TrainCommand, args=argv, default=saved, prog="nanovla train", description=__doc__
    )
    return resume_command(saved, given)


def main(argv: list[str]) -> int:
    """Entry point of `nanovla train`."""
    command = parse(argv)
    check_given_dataset(command)  # before anything is written into the run directory
    run(command)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
