"""`nanovla train`: the main job — demonstrations -> dataset -> VLA policy -> BC -> evaluation.

With no arguments it records expert demonstrations of reach, push and pick_place in the embedded
world (English and Korean training instructions, 64x64 images; cached under `data/` so the
second run skips it), trains the default policy by behavior cloning, evaluates it on fixed seeded
episodes for seen, held-out and Korean instructions, prints the success table and writes
`OUT/eval.json`, rollout GIFs and the checkpoints under `OUT/checkpoints/`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tyro

from nanovla.errors import ExistsError, InputError, MissingError
from nanovla.eval.evaluate import EvalConfig, evaluate, format_table, write_json
from nanovla.models.policy import Policy, PolicyConfig
from nanovla.train.config import TrainConfig
from nanovla.train.engine import Trainer
from nanovla.world.experts import EXPERT_VERSION

COMMAND_FILE = "train_command.json"


def _default_train() -> TrainConfig:
    return TrainConfig(steps=7000, lr=2e-3, warmup_steps=200, log_every=100, eval_every=0)


def default_policy_config() -> PolicyConfig:
    """The policy of the default `nanovla train` run (benchmarks measure this one)."""
    # One stride-2 stage fewer than vla_cnn's default: FiLM and the readout work on a 16x16 grid
    # (64x64 images), which generalized to new scenes measurably faster per second of training
    # than the 8x8 grid on the default suite (validation action L1 at equal wall time).
    return PolicyConfig(vision_widths=(32,))


@dataclass
class TrainCommand:
    """Collect demonstrations (cached), train a VLA policy by behavior cloning, evaluate it.

    Options you will most likely change come first.
    """

    out: Path | None = None
    """run directory (default: runs/<timestamp>); holds checkpoints/, logs/, eval.json, videos/"""
    tasks: tuple[str, ...] = ("reach", "push", "pick_place")
    """task families to learn: reach, push, pick_place, sort"""
    episodes: int = 6000
    """expert demonstrations to record (all families together); distinct scenes are what a
    policy needs to generalize, and recording is cheap (~100 episodes/s)"""
    resume: bool = False
    """continue the run in --out from its last checkpoint, with the options it was started with"""
    instructions: str = "train+ko"
    """instruction templates of the demonstrations: train | ko | train+ko | heldout | ko_heldout"""
    image_size: int = 64
    """camera images are image_size x image_size RGB"""
    dataset: Path | None = None
    """dataset directory; default: data/<tasks>-<episodes>ep-<hash of the collection options>,
    recorded on the first run and reused afterwards"""
    expert_noise: float = 0.3
    """DART: std of Gaussian noise on the expert's executed motion while recording (the recorded
    label stays clean); 0.3 lifted seen success 0.75 -> 0.81 on the default suite"""
    collect_envs: int = 32
    """parallel worlds while recording demonstrations"""
    seed: int = 0
    """seed of the demonstrations' initial states and of training"""
    batch_size: int = 64
    """frames per training batch"""
    augment_shift: int = 2
    """random-shift augmentation in pixels (replicate-pad and crop back); 0 = off"""
    val_fraction: float = 0.05
    """fraction of episodes held out for the validation loss"""
    eval_every_episodes: int = 20
    """episodes per family in the periodic evaluation (train.eval_every sets how often)"""
    policy: PolicyConfig = field(default_factory=default_policy_config)
    """the policy architecture"""
    train: TrainConfig = field(default_factory=_default_train)
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


def dataset_dir(command: TrainCommand) -> Path:
    """Where the demonstrations for `command` live: given, or keyed by the collection options."""
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


def ensure_dataset(command: TrainCommand) -> Path:
    """Record the demonstrations unless a dataset already sits at `dataset_dir(command)`."""
    from nanovla.data.collect import CollectConfig, collect

    path = dataset_dir(command)
    if (path / "meta" / "info.json").is_file():
        print(f"train: using cached demonstrations in {path}")
        return path
    if path.exists() and any(path.iterdir()):
        raise InputError(
            f"{path} exists but holds no meta/info.json: not a dataset; remove it or pass --dataset"
        )
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
        )
    )


def _load_command(out: Path) -> TrainCommand:
    """For --resume: the command the run was started with (saved in OUT/train_command.json)."""
    path = out / COMMAND_FILE
    if not path.is_file():
        raise MissingError(f"--resume: {path} not found; is {out} a nanovla train run?")
    try:
        command = _from_dict(TrainCommand, json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError) as error:
        raise InputError(f"--resume: {path} does not hold a train command: {error}") from error
    command.out, command.resume = out, True
    return command


def _from_dict(cls: type, saved: dict[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from its JSON form: lists become tuples again."""
    values: dict[str, Any] = {}
    defaults = cls()
    for spec in dataclasses.fields(cls):
        if spec.name not in saved:
            continue
        value = saved[spec.name]
        default = getattr(defaults, spec.name)
        if dataclasses.is_dataclass(default):
            value = _from_dict(type(default), value)
        elif isinstance(value, list):
            value = tuple(value)
        elif spec.name in ("out", "dataset") and value is not None:
            value = Path(value)
        values[spec.name] = value
    return cls(**values)


def _periodic_eval(command: TrainCommand, val_batches: list[dict[str, Any]]) -> Any:
    """eval_fn for the Trainer: seen-instruction success on a few episodes + validation loss.

    The validation batches are drawn once, before training, so the figure is comparable across
    evaluations and a resumed run reports the same numbers as an uninterrupted one.
    """
    config = EvalConfig(episodes=command.eval_every_episodes, splits=("seen",), gifs=0)

    def eval_fn(model: Policy, step: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if val_batches:
            import torch

            with torch.inference_mode():
                losses = [float(model(batch)[0]) for batch in val_batches]
            metrics["val_loss"] = sum(losses) / len(losses)
        result = evaluate(model, command.tasks, config, command.image_size, progress=False)
        model.reset()
        metrics["success"] = result["splits"]["seen"]["success"]
        for family, rate in result["splits"]["seen"]["per_task"].items():
            metrics[f"success_{family}"] = rate
        return metrics

    return eval_fn


def run(command: TrainCommand) -> dict[str, Any]:
    """The whole job; returns the final evaluation dict (also written to OUT/eval.json)."""
    from nanovla.data import BatchLoader, EpisodeDataset

    started = time.perf_counter()
    out = command.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    if command.resume and not (out / "checkpoints" / "last").exists():
        raise MissingError(f"--resume: no checkpoint at {out / 'checkpoints' / 'last'}")
    if not command.resume and (out / "checkpoints").exists():
        raise ExistsError(f"{out} already holds a run; pass --resume to continue it")
    data_path = ensure_dataset(command)
    collected = time.perf_counter()
    dataset = EpisodeDataset(data_path)
    policy_config = dataclasses.replace(command.policy, image_size=command.image_size)
    loader = BatchLoader(
        dataset,
        command.batch_size,
        chunk=policy_config.chunk,
        val_fraction=command.val_fraction,
        augment_shift=command.augment_shift,
        seed=command.seed,
    )
    val_batches: list[dict[str, Any]] = []
    if command.val_fraction > 0:
        val_loader = BatchLoader(
            dataset,
            command.batch_size,
            chunk=policy_config.chunk,
            split="val",
            val_fraction=command.val_fraction,
            seed=command.seed,
            drop_last=False,
        )
        val_batches = [val_loader.next_batch() for _ in range(min(8, len(val_loader)))]
    policy = Policy.from_dataset(policy_config, dataset)
    train_config = dataclasses.replace(
        command.train, batch_size=command.batch_size, seed=command.seed, resume=command.resume
    )
    out.mkdir(parents=True, exist_ok=True)
    write_json(_command_dict(command, out), out / COMMAND_FILE)
    trainer = Trainer(
        policy,
        loader,
        train_config,
        out,
        eval_fn=_periodic_eval(command, val_batches),
        train_config_extra={"tasks": list(command.tasks), "dataset": str(data_path)},
    )
    n_params = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    print(
        f"train: {dataset.num_episodes} episodes / {dataset.num_frames} frames, policy "
        f"{n_params / 1e6:.2f}M trainable params, {train_config.steps} steps -> {out}"
    )
    trainer.fit()
    trained = time.perf_counter()
    policy.eval()
    result = evaluate(
        policy, command.tasks, command.eval, command.image_size, video_dir=out / "videos"
    )
    result["checkpoint"] = str(out / "checkpoints" / "last")
    result["timing_s"] = {
        "collect": round(collected - started, 1),
        "train": round(trained - collected, 1),
        "eval": round(time.perf_counter() - trained, 1),
        "total": round(time.perf_counter() - started, 1),
    }
    write_json(result, out / "eval.json")
    print(format_table(result))
    timing = result["timing_s"]
    print(
        f"wall time {timing['total']:.0f} s (collect {timing['collect']:.0f} s, train "
        f"{timing['train']:.0f} s, eval {timing['eval']:.0f} s); wrote {out / 'eval.json'}"
    )
    return result


def _command_dict(command: TrainCommand, out: Path) -> dict[str, Any]:
    saved = json.loads(json.dumps(dataclasses.asdict(command), default=str))
    saved["out"], saved["resume"] = str(out), False
    return saved


def main(argv: list[str]) -> int:
    """Entry point of `nanovla train`."""
    command = tyro.cli(TrainCommand, args=argv, prog="nanovla train", description=__doc__)
    if command.resume:
        if command.out is None:
            raise InputError("--resume needs --out naming the run directory to continue")
        command = _load_command(command.out)
    run(command)
    return 0
