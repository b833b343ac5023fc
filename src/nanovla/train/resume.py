"""Checkpoints of the training engine: the atomic save, the save after an interrupt, and the
exact resume (model, optimizer, scheduler, loss scaler, RNG streams, loader and step).

`Checkpointing` is the part of `train/engine.Trainer` that touches disk; it reads the trainer's
attributes (`model`, `optimizer`, `scheduler`, `scaler`, `loader`, `config`, `out_dir`, `step`,
`train_config`, `on_save`, `resume_hint`, `_mid_step`) and sets `step` and `resumed_from` on
resume. Every file is read and checked before any state is touched, so a refused resume leaves
the fresh trainer as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nanovla.constants import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    LAST_LINK,
    PRETRAINED_DIR,
    TRAIN_CONFIG_FILE,
    TRAINING_STATE_DIR,
    WEIGHTS_FILE,
)
from nanovla.errors import InputError, MissingError
from nanovla.io import write_json
from nanovla.progress import note
from nanovla.train import distributed
from nanovla.train.checkpoint import (
    check_weights,
    config_defaults,
    config_differences,
    latest_checkpoint,
    load_checkpoint_dir,
    model_config_dict,
    step_dir_name,
    write_checkpoint,
)
from nanovla.train.guards import kill_point, naming
from nanovla.train.guards import safetensors_errors as _safetensors_errors
from nanovla.train.optim import check_optimizer_groups, load_optimizer_state
from nanovla.train.rng import capture_rng_state, restore_rng_state
from nanovla.train.state import load_training_state, save_training_state


class Checkpointing:
    """Save and resume for `Trainer` (see the module docstring for the attributes it uses)."""

    model: Any
    optimizer: Any
    scheduler: Any
    scaler: Any
    loader: Any
    config: Any
    out_dir: Path
    step: int
    train_config: dict[str, Any]
    on_save: Any
    resume_hint: str | None
    resumed_from: Path | None
    _mid_step: bool

    def _resume_note(self) -> str:
        return f"; resume with: {self.resume_hint}" if self.resume_hint else ""

    def save_checkpoint(self) -> Path:
        """Atomically write `out_dir/checkpoints/<step>/` and point `last` at it."""
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": capture_rng_state(),
            "loader": self.loader.state_dict(),
            "grad_scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

        def write(directory: Path) -> None:
            pretrained = directory / PRETRAINED_DIR
            pretrained.mkdir()
            with _safetensors_errors(pretrained / WEIGHTS_FILE):
                self.model.save_pretrained(pretrained)
            kill_point("checkpoint:weights")
            write_json(pretrained / TRAIN_CONFIG_FILE, self.train_config)
            if self.on_save is not None:
                self.on_save(pretrained)
            with _safetensors_errors(directory / TRAINING_STATE_DIR):
                save_training_state(directory / TRAINING_STATE_DIR, state)
            kill_point("checkpoint:state")

        path = self.out_dir / CHECKPOINTS_DIR / step_dir_name(self.step)
        if distributed.is_main():  # rank 0 writes; every rank waits until it has
            kill_point("checkpoint:begin")
            with naming(path):
                path = write_checkpoint(self.out_dir, self.step, write, self.config.keep_last)
            kill_point("checkpoint:saved")
        distributed.wait_for_main()
        return path

    def _save_after_interrupt(self) -> None:
        """Checkpoint the completed steps after a KeyboardInterrupt that was not deferred.

        Raised at a step boundary (e.g. by the loader before it hands out the step's first
        batch) this is exact. Raised in the middle of a step (a later micro-batch, or inside the
        model), the half-done step's gradients are dropped but the loader, RNG and any buffers
        (BatchNorm statistics) have already moved on: the checkpoint resumes fine, just not
        bit-identically. (Rewinding would need copies of all of them every step: ~0.1 ms.)
        """
        self.optimizer.zero_grad(set_to_none=True)
        path = self.save_checkpoint()
        caveat = " (mid-step: a resumed run will not be bit-identical)" if self._mid_step else ""
        note(
            f"interrupted at step {self.step}: checkpoint saved to {path}{caveat}"
            + self._resume_note()
        )

    def _resume(self) -> None:
        """Restore everything from `out_dir/checkpoints/last`; all files are read and checked
        before any state is touched."""
        checkpoint = latest_checkpoint(self.out_dir)
        if checkpoint is None:
            last = self.out_dir / CHECKPOINTS_DIR / LAST_LINK
            raise MissingError(f"{last}: no checkpoint to resume from (drop --resume)")
        saved_config, weights = load_checkpoint_dir(checkpoint)
        config_file = checkpoint / PRETRAINED_DIR / CONFIG_FILE
        model_config, defaults = model_config_dict(self.model), config_defaults(self.model)
        diffs = config_differences(model_config, saved_config, defaults)
        if diffs:
            raise InputError(
                f"{config_file}: checkpoint is from a different model config; "
                f"differing keys: {'; '.join(diffs)}"
            )
        check_weights(self.model, weights, checkpoint / PRETRAINED_DIR / WEIGHTS_FILE)
        state_dir = checkpoint / TRAINING_STATE_DIR
        state = load_training_state(state_dir)
        optimizer_file = state_dir / "optimizer_state.json"
        check_optimizer_groups(self.optimizer, state["optimizer"], optimizer_file)
        try:  # first: the loader is the one most likely to refuse (another dataset or split)
            self.loader.load_state_dict(state["loader"])
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            path = state_dir / "loader_state.json"
            raise InputError(f"{path}: the loader refused it: {err}") from err
        self.model.load_state_dict(weights)
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["grad_scaler"] is not None:
            self.scaler.load_state_dict(state["grad_scaler"])
        restore_rng_state(state["rng"])
        self.step = state["step"]
        self.resumed_from = checkpoint
