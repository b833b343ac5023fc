"""`nanovla metaworld collect|train|eval`: Meta-World MT10 with a state-based multi-task policy.

    nanovla metaworld train --tasks MT10 --out runs/mt10     # record -> train -> evaluate
    nanovla metaworld collect --tasks MT10 --episodes 100 --out data/mt10
    nanovla metaworld eval --checkpoint runs/mt10/checkpoints/last
    nanovla metaworld eval --expert --tasks MT10 --out outputs/experts.json

`train` records the scripted experts' demonstrations (cached under `data/`, keyed by the
recording options), trains one language-conditioned `StatePolicy` on every task at once with
the training engine, evaluates it with Meta-World's protocol on goal configurations it never saw
(`nanovla.eval.metaworld`), does the same for the experts, and prints both per task with 95%
Wilson intervals; `OUT/eval.json` is the policy's result, `OUT/expert_eval.json` the experts'.

This module chains data (recording), models, the engine and evaluation, so it sits above all of
them, beside `pipeline.py` (the main job's chain), rather than in a package a learner imports.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tyro

from nanovla.constants import CHECKPOINTS_DIR, INFO_PATH, LAST_LINK, PRETRAINED_DIR
from nanovla.errors import ExistsError, InputError, MissingError
from nanovla.eval.metaworld import COLLECT_SEED, EVAL_SEED
from nanovla.io import read_json, write_json
from nanovla.models.policy.state_policy import StatePolicyConfig
from nanovla.train_command import TrainLoopOptions, plain_config

EXPERT_FILE = "expert_eval.json"
SUBCOMMANDS = {
    "collect": "record the scripted experts' demonstrations as a LeRobot v3.0 dataset",
    "train": "record (cached) -> train a state-based multi-task policy -> evaluate it and the experts",
    "eval": "evaluate a checkpoint (or the experts) with Meta-World's protocol",
}


@dataclass
class Recording:
    """How the demonstrations are recorded (`collect`, and `train` when it records)."""

    tasks: tuple[str, ...] = ("MT10",)
    """Meta-World task names, or MT10 for its ten tasks"""
    episodes: int = 100
    """expert episodes per task (goal configurations from --seed upwards, 50 per seed)"""
    noise: float = 0.1
    """std of Gaussian noise on the executed action (labels stay the expert's): DART"""
    seed: int = COLLECT_SEED
    """first goal seed of the demonstrations (kept below the evaluation seed 1000); `train`
    also seeds the policy's initial weights and the batch order with it"""
    image_size: int = 0
    """record camera frames too at this size (0 = states only). Slow: a MuJoCo offscreen render
    (MUJOCO_GL=egl) costs ~100x the simulation step on a CPU; see benchmarks/metaworld_render.py"""
    max_steps: int = 500
    """time limit of an episode (Meta-World's is 500)"""
    num_envs: int = 10
    """environments stepped side by side"""
    keep_failures: bool = False
    """also keep expert episodes that never succeeded (dropped by default)"""
    progress: bool = True
    """show progress bars"""


@dataclass
class CollectCommand(Recording):
    """Record expert demonstrations of Meta-World tasks (LeRobot v3.0, state-only by default)."""

    out: Path = Path("data/metaworld")
    """dataset directory to write"""
    overwrite: bool = False
    """replace an existing dataset at --out"""


@dataclass
class PolicyOptions(StatePolicyConfig):
    """The policy (`StatePolicyConfig`); its sizes come from the dataset."""

    state_dim: tyro.conf.Suppress[int] = 39
    action_dim: tyro.conf.Suppress[int] = 4
    action_names: tyro.conf.Suppress[tuple[str, ...]] = ("dx", "dy", "dz", "grip")


@dataclass
class LoopOptions(TrainLoopOptions):
    """The training loop (`TrainConfig`): batch size, seed and progress are the command's own
    options; no validation rollouts run during training (the evaluation follows it), and a run
    is not resumed (Ctrl-C still saves a checkpoint)."""

    eval_every: tyro.conf.Suppress[int] = 0


def _default_train() -> LoopOptions:
    return LoopOptions(steps=20_000, lr=1e-3, warmup_steps=200, log_every=200, weight_decay=1e-4)


@dataclass
class TrainCommand(Recording):
    """Record (cached), train one policy on every task, evaluate it and the experts."""

    out: Path | None = None
    """run directory (default runs/metaworld-<time>)"""
    dataset: Path | None = None
    """train on this dataset instead of recording one (the recording options are then unused)"""
    batch_size: int = 256
    """frames per optimizer step"""
    val_fraction: float = 0.0
    """episodes held out of training (the validation loss is not used to stop)"""
    eval_episodes: int = 50
    """evaluation episodes per task (Meta-World's protocol: 50)"""
    eval_seed: int = EVAL_SEED
    """goal seed of the evaluation configurations"""
    expert_baseline: bool = True
    """also evaluate the scripted experts under the same protocol (OUT/expert_eval.json)"""
    threads: int = 1
    """torch CPU threads (a small MLP gains little from a second one)"""
    policy: PolicyOptions = field(default_factory=PolicyOptions)
    train: LoopOptions = field(default_factory=_default_train)


@dataclass
class EvalCommand:
    """Evaluate a state policy checkpoint, or the experts, with Meta-World's protocol."""

    checkpoint: Path | None = None
    """a run's checkpoint (runs/x/checkpoints/last) or its pretrained_model/ directory"""
    expert: bool = False
    """evaluate the scripted experts instead of a checkpoint"""
    tasks: tuple[str, ...] = ()
    """tasks to evaluate (default: the ones the checkpoint was trained on; MT10 for --expert)"""
    episodes: int = 50
    """episodes per task"""
    seed: int = EVAL_SEED
    """goal seed of the evaluation configurations"""
    max_steps: int = 500
    """time limit of an episode"""
    num_envs: int = 10
    """environments stepped side by side"""
    out: Path | None = None
    """where to write the result (default: the run's eval-<step>.json; --expert: expert_eval.json)"""
    threads: int = 1
    """torch CPU threads"""
    progress: bool = True
    """show progress bars"""


def dataset_dir(command: TrainCommand, tasks: tuple[str, ...]) -> Path:
    """The given `--dataset`, or `data/metaworld-...` keyed by the recording options."""
    if command.dataset is not None:
        return Path(command.dataset)
    key = {"tasks": list(tasks), **{k: getattr(command, k) for k in _RECORD_KEYS}}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    name = "mt10" if tasks == _mt10() else "-".join(t.removesuffix("-v3") for t in tasks)[:40]
    return Path("data") / f"metaworld-{name}-{command.episodes}ep-{digest}"


_RECORD_KEYS = ("episodes", "noise", "seed", "image_size", "max_steps", "keep_failures")


def _mt10() -> tuple[str, ...]:
    from nanovla.envs.metaworld import MT10

    return MT10


def collect(command: Recording, out: Path, overwrite: bool = False) -> dict[str, Any]:
    """Record the demonstrations into `out`; returns the recording summary."""
    from nanovla.envs.metaworld import resolve_tasks
    from nanovla.eval.metaworld import record_demonstrations

    tasks = resolve_tasks(command.tasks)
    options = {k: getattr(command, k) for k in ("seed", "noise", "image_size", "num_envs")}
    summary = record_demonstrations(
        out, tasks, command.episodes, max_steps=command.max_steps,
        keep_failures=command.keep_failures, overwrite=overwrite, progress=command.progress,
        **options,
    )  # fmt: skip
    print(
        f"collect: {summary['episodes']} episodes / {summary['frames']} frames of "
        f"{len(tasks)} tasks -> {out} ({summary['dropped_failures']} failed expert episodes dropped)"
    )
    return summary


def _actor(policy: Any) -> Any:
    def act(states: Any, instructions: list[str]) -> Any:
        return policy.select_action({"state": states, "instruction": instructions})

    return act


def train(command: TrainCommand) -> dict[str, Any]:
    """The whole `nanovla metaworld train` job; returns the policy's eval.json dict."""
    import torch

    from nanovla.envs.metaworld import resolve_tasks
    from nanovla.eval.metaworld import side_by_side

    torch.set_num_threads(command.threads)
    started = time.perf_counter()
    tasks = resolve_tasks(command.tasks)
    out = command.out or Path("runs") / time.strftime("metaworld-%Y%m%d-%H%M%S")
    if (out / CHECKPOINTS_DIR).exists():
        raise ExistsError(f"{out} already holds a run; choose another --out")
    data = ensure_dataset(command, tasks)
    collected = time.perf_counter()
    policy = fit(command, tasks, data, out)
    trained = time.perf_counter()
    result, expert = evaluate_run(command, tasks, policy, out)
    result["checkpoint"] = str(out / CHECKPOINTS_DIR / LAST_LINK)
    result["timing_s"] = {
        "collect": round(collected - started, 1),
        "train": round(trained - collected, 1),
        "eval": result.pop("eval_s"),
        "expert_eval": expert.pop("eval_s") if expert else 0.0,
        "total": round(time.perf_counter() - started, 1),
    }
    write_json(out / "eval.json", result)
    print(side_by_side(result, expert))
    timing = result["timing_s"]
    print(
        f"wall time {timing['total']:.0f} s (collect {timing['collect']:.0f} s, train "
        f"{timing['train']:.0f} s, eval {timing['eval']:.0f} s, expert eval "
        f"{timing['expert_eval']:.0f} s); wrote {out / 'eval.json'}"
    )
    return result


def ensure_dataset(command: TrainCommand, tasks: tuple[str, ...]) -> Path:
    """The demonstrations' directory: `--dataset`, the cached recording, or a new recording."""
    data = dataset_dir(command, tasks)
    if command.dataset is not None and not (data / INFO_PATH).is_file():
        raise MissingError(f"--dataset {data}: no dataset there ({INFO_PATH} missing)")
    if (data / INFO_PATH).is_file():
        print(f"train: using demonstrations in {data}")
    else:
        collect(command, data)
    return data


def fit(command: TrainCommand, tasks: tuple[str, ...], data: Path, out: Path) -> Any:
    """Train a `StatePolicy` on the dataset at `data` into `out` with the engine; returns it."""
    from nanovla.data.loader import BatchLoader
    from nanovla.data.state_dataset import StateDataset
    from nanovla.models.policy.state_policy import StatePolicy
    from nanovla.train.config import TrainConfig
    from nanovla.train.engine import Trainer
    from nanovla.train.rng import seed_everything

    dataset = StateDataset(data)
    unknown = sorted(set(dataset.tasks) - {_instruction(t) for t in tasks})
    if unknown:
        print(f"train: {data} also holds instructions of other tasks: {unknown}")
    seed_everything(command.seed)  # the initial weights come from the seed alone
    config = plain_config(command.policy, StatePolicyConfig)
    policy = StatePolicy.from_dataset(config, dataset)
    loader = BatchLoader(
        dataset, command.batch_size, chunk=config.chunk, val_fraction=command.val_fraction,
        seed=command.seed,
    )  # fmt: skip
    train_config = plain_config(
        command.train, TrainConfig, batch_size=command.batch_size, seed=command.seed,
        progress=command.progress,
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metaworld_command.json", {"tasks": list(tasks), "dataset": str(data)})
    n_params = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    print(
        f"train: {dataset.num_episodes} episodes / {dataset.num_frames} frames, policy "
        f"{n_params / 1e6:.2f}M params, {train_config.steps} steps -> {out}"
    )
    Trainer(policy, loader, train_config, out, on_save=_record_tasks(tasks)).fit()
    return policy.eval()


def evaluate_run(
    command: TrainCommand, tasks: tuple[str, ...], policy: Any, out: Path
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The policy's result and (with --expert-baseline, also written to OUT/expert_eval.json)
    the experts', each with its wall time under "eval_s"."""
    from nanovla.eval.metaworld import evaluate_metaworld

    options = dict(
        episodes=command.eval_episodes, seed=command.eval_seed, num_envs=command.num_envs,
        max_steps=command.max_steps, progress=command.progress,
    )  # fmt: skip
    results: list[dict[str, Any] | None] = []
    for actor, desc in ((_actor(policy), "eval policy"), (None, "eval experts")):
        if actor is None and not command.expert_baseline:
            results.append(None)
            continue
        start = time.perf_counter()
        result = evaluate_metaworld(actor, tasks, desc=desc, **options)
        if actor is None:
            write_json(out / EXPERT_FILE, result)
        result["eval_s"] = round(time.perf_counter() - start, 1)
        results.append(result)
    return results[0], results[1]  # type: ignore[return-value]


def _instruction(task: str) -> str:
    from nanovla.envs.metaworld import instruction

    return instruction(task)


def _record_tasks(tasks: tuple[str, ...]) -> Any:
    """on_save: write the tasks beside the weights, so `eval` knows what the policy learned."""

    def save(directory: Path) -> None:
        write_json(directory / "metaworld.json", {"tasks": list(tasks)})

    return save


def evaluate(command: EvalCommand) -> dict[str, Any]:
    """`nanovla metaworld eval`: a checkpoint's (or the experts') per-task success."""
    import torch

    from nanovla.envs.metaworld import resolve_tasks
    from nanovla.eval.metaworld import evaluate_metaworld, format_table
    from nanovla.models.policy.state_policy import StatePolicy

    torch.set_num_threads(command.threads)
    if command.expert == (command.checkpoint is not None):
        raise InputError("give exactly one of --checkpoint DIR and --expert")
    actor, tasks, out, step = None, command.tasks or ("MT10",), command.out, "expert"
    if command.checkpoint is not None:
        directory = Path(command.checkpoint)
        if (directory / PRETRAINED_DIR).is_dir():
            directory = directory / PRETRAINED_DIR
        if not directory.is_dir():
            raise MissingError(f"--checkpoint {command.checkpoint}: no such directory")
        policy = StatePolicy.from_pretrained(directory)
        actor = _actor(policy)
        if not command.tasks:
            tasks = tuple(read_json(directory / "metaworld.json")["tasks"])
        step = directory.resolve().parent.name
        if out is None:
            out = directory.resolve().parents[2] / f"eval-{step}.json"
    result = evaluate_metaworld(
        actor, resolve_tasks(tasks), command.episodes, command.seed, command.num_envs,
        command.max_steps, command.progress,
    )  # fmt: skip
    out = out or Path(EXPERT_FILE)
    write_json(out, result)
    print(format_table(result, "expert" if actor is None else "policy"))
    print(f"wrote {out}")
    return result


def main(argv: list[str]) -> int:
    """Entry point of `nanovla metaworld`: collect | train | eval."""
    from nanovla.cli import usage

    if not argv or argv[0] in ("-h", "--help"):
        summaries = {name: ("", line) for name, line in SUBCOMMANDS.items()}
        print(
            usage("nanovla metaworld", __doc__.split("\n\n")[0], summaries, "subcommand"),
            file=sys.stdout if argv else sys.stderr,
        )
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    prog = f"nanovla metaworld {name}"
    if name == "collect":
        command = tyro.cli(CollectCommand, args=rest, prog=prog)
        collect(command, command.out, overwrite=command.overwrite)
    elif name == "train":
        train(tyro.cli(TrainCommand, args=rest, prog=prog))
    elif name == "eval":
        evaluate(tyro.cli(EvalCommand, args=rest, prog=prog))
    else:
        known = ", ".join(SUBCOMMANDS)
        print(
            f"nanovla metaworld: unknown subcommand {name!r}; choose one of: {known}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
