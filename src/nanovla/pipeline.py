"""The main job's chain: collect (cached) -> seeded policy -> loaders -> Trainer -> evaluation.

`run(TrainCommand)` is `nanovla train` (the command, `--quick` and the `--resume` rules are in
`nanovla.train_command`). This module sits above every layer: it is the one place that chains
collection (data/), the policy (models/), the engine (train/) and evaluation (eval/).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from nanovla.constants import (
    CHECKPOINTS_DIR,
    COMMAND_FILE,
    EVAL_FILE,
    LAST_LINK,
    PRETRAINED_DIR,
    VIDEOS_DIR,
)
from nanovla.demonstrations import (
    check_given_dataset,
    dataset_dir,
    ensure_dataset,
    frame_cache_mode,
    reconcile_dataset,
)
from nanovla.errors import ExistsError, InputError, MissingError
from nanovla.eval.evaluate import (
    EvalConfig,
    evaluate,
    format_table,
)
from nanovla.eval.select import BestCheckpoint, validate
from nanovla.io import write_json
from nanovla.models.policy import Policy, PolicyConfig
from nanovla.train import distributed
from nanovla.train.config import TrainConfig
from nanovla.train.ema import EMA_DIR, EMAHooks
from nanovla.train.run_record import RunRecord
from nanovla.train_command import (
    RESUMABLE,
    PolicyOptions,
    TrainCommand,
    TrainLoopOptions,
    command_json,
    default_policy_config,
    load_command,
    parse,
    plain_config,
    quick_command,
    resume_command,
)

__all__ = [
    "RESUMABLE",
    "PolicyOptions",
    "TrainCommand",
    "TrainLoopOptions",
    "build_policy",
    "dataset_dir",
    "default_policy_config",
    "ensure_dataset",
    "load_command",
    "main",
    "parse",
    "quick_command",
    "reconcile_dataset",
    "resume_command",
    "run",
]


def build_policy(command: TrainCommand, dataset: Any) -> Policy:
    """The policy's initial weights, drawn from `command.seed` (and nothing else)."""
    from nanovla.train.rng import seed_everything

    seed_everything(command.seed)
    config = plain_config(command.policy, PolicyConfig, image_size=command.image_size)
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
        color_swap=command.color_swap,
        ko_scramble=command.ko_scramble,
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


class RunHooks(EMAHooks):
    """What the pipeline adds to the Trainer: the run record and the weight EMA in every
    checkpoint, the EMA update after every step (`train/ema.EMAHooks`), and the success-based
    selection of the weights the run keeps (`eval/select.py`)."""

    def __init__(self, command: TrainCommand, record: RunRecord, out: Path) -> None:
        super().__init__(record, command.ema_decay)
        validating = command.train.eval_every > 0 and command.eval_every_episodes > 0
        self.best = (
            BestCheckpoint(out, on_save=record.save) if command.select and validating else None
        )


def _validation(
    command: TrainCommand, val_batches: list[dict[str, Any]], hooks: RunHooks | None = None
) -> Any:
    """eval_fn for the Trainer: validation loss + seen-instruction success on validation scenes
    (`--val-seed`), never on the final evaluation's scenes, of the EMA weights when there are
    some; the best of them are kept (`--select`)."""
    config = EvalConfig(
        episodes=max(command.eval_every_episodes, 1),
        splits=("seen",),
        gifs=0,
        seed=command.val_seed,
        targets=command.targets,  # seen combos only: a held-out one is not what is selected for
    )

    def eval_fn(model: Policy, step: int) -> dict[str, float]:
        import torch

        judged = model if hooks is None else hooks.judged(model)
        metrics: dict[str, float] = {}
        if val_batches:
            with torch.inference_mode():
                losses = [float(judged(batch)[0]) for batch in val_batches]
            metrics["val_loss"] = sum(losses) / len(losses)
        if command.eval_every_episodes > 0:
            best = None if hooks is None else hooks.best
            metrics.update(validate(judged, command.tasks, config, command.image_size, step, best))
        return metrics

    return eval_fn


def _final_policy(policy: Policy, hooks: RunHooks, last: Path) -> tuple[Policy, dict[str, Any]]:
    """The policy the final evaluation judges (selected > EMA > last) and where it lies."""
    if hooks.best is not None and hooks.best.path is not None:
        chosen = {"checkpoint": str(hooks.best.path), "selected_step": hooks.best.best["step"]}
        return Policy.from_pretrained(hooks.best.path), chosen
    if hooks.ema is not None:
        return hooks.ema.module, {"checkpoint": str(last / PRETRAINED_DIR / EMA_DIR)}
    return policy.eval(), {"checkpoint": str(last)}


def _final_evaluation(
    command: TrainCommand, final: tuple[Policy, dict[str, Any]], out: Path
) -> dict[str, Any]:
    """The final evaluation of the chosen weights (`_final_policy`), GIFs into OUT/videos."""
    from nanovla.train.guards import naming

    policy, chosen = final
    if "selected_step" in chosen:
        print(
            f"train: evaluating the weights of step {chosen['selected_step']} ({chosen['checkpoint']})"
        )
    with naming(out / VIDEOS_DIR):
        result = evaluate(
            policy,
            command.tasks,
            dataclasses.replace(command.eval, targets=command.eval.targets or command.targets),
            command.image_size,
            video_dir=out / VIDEOS_DIR,
            progress=command.progress,
        )
    result.update(chosen)
    return result


def run(command: TrainCommand) -> dict[str, Any]:
    """The whole job; returns the final evaluation dict (also written to OUT/eval.json).

    Everything that writes into OUT runs under `OUT/.lock` (`RunLock`): a second process on the
    same run directory is refused. train_command.json is written before the demonstrations are
    recorded, so a run killed at any instant continues with `--resume`; with no checkpoint yet
    (killed before the first save) `--resume` starts again from step 0 and says so.
    """
    import shlex

    from nanovla.data import EpisodeDataset
    from nanovla.train.engine import Trainer
    from nanovla.train.guards import kill_point, naming
    from nanovla.train.lock import RunLock
    from nanovla.world.experts import EXPERT_VERSION

    check_given_dataset(command)  # before anything is written into the run directory
    started = time.perf_counter()
    out = command.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    last = out / CHECKPOINTS_DIR / LAST_LINK
    main_rank = distributed.is_main()  # under torchrun rank 0 alone writes into OUT
    with RunLock(out) if main_rank else contextlib.nullcontext():
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
        if not command.resume and main_rank:  # first: a run killed from here on resumes
            with naming(out / COMMAND_FILE):
                write_json(out / COMMAND_FILE, command_json(command, out))
        with distributed.main_first():  # rank 0 records the demonstrations, the others wait
            data_path = ensure_dataset(command)
        collected = time.perf_counter()
        cache = frame_cache_mode(command)
        dataset = EpisodeDataset(data_path, cache=cache, progress=command.progress)
        command = reconcile_dataset(command, dataset)
        policy = build_policy(command, dataset)
        loader, val_batches = _loaders(command, dataset)
        train_config = plain_config(
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
            targets=command.targets,
        )
        hooks = RunHooks(command, record, out)
        trainer = Trainer(
            policy,
            loader,
            train_config,
            out,
            eval_fn=_validation(command, val_batches, hooks),
            on_save=hooks.on_save,
            resume_hint=f"nanovla train --out {shlex.quote(str(out))} --resume",
        )
        hooks.attach(trainer)
        if command.gpu_frames and trainer.device.type == "cuda":
            loader.to(trainer.device)  # the frame cache on this rank's GPU
        val_batches[:] = [trainer.to_device(batch) for batch in val_batches]
        if main_rank:
            with naming(out / COMMAND_FILE):
                write_json(out / COMMAND_FILE, command_json(command, out))
        n_params = sum(p.numel() for p in policy.parameters() if p.requires_grad)
        print(  # (every rank says it: the line shows how many started)
            f"train: {dataset.num_episodes} episodes / {dataset.num_frames} frames, policy "
            f"{n_params / 1e6:.2f}M trainable params, {train_config.steps} steps -> {out}"
        )
        trainer.fit()
        if not main_rank:
            return {}  # rank 0 evaluates and reports
        kill_point("train:evaluate")
        trained = time.perf_counter()
        result = _final_evaluation(command, _final_policy(policy, hooks, last), out)
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
        from nanovla.report import write_report

        print(f"train: wrote {write_report(out)}")
        return result


def main(argv: list[str]) -> int:
    """Entry point of `nanovla train` (`--nproc N`: N processes under torchrun)."""
    command = parse(argv)
    device = distributed.device_type(command.train.device)
    launched = distributed.launched_world_size()
    if command.nproc > 1 and launched == 1:
        distributed.check_nproc(command.nproc, device)
        ranks_argv = distributed.strip_option(argv, "--nproc")
        return distributed.launch(command.nproc, ["nanovla", "train", *ranks_argv])
    if launched > 1:  # recorded in train_command.json: --resume starts as many again
        command = dataclasses.replace(command, nproc=launched)
    with distributed.session(device):
        run(command)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
