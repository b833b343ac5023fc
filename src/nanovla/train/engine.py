"""The training engine: a step-based loop over any model that follows the house protocol.

A model trained here is an `nn.Module` with
  - `model(batch) -> (loss, metrics)`: a scalar loss tensor and a dict of floats / 0-d tensors,
  - `model.save_pretrained(dir)`: writes `config.json` + `model.safetensors` into `dir`,
  - `model.config`: its config dataclass (compared with `config.json` on resume).
Batches come from a loader with `next_batch() -> dict` (infinite), `state_dict()` (its RNG and
position) and `load_state_dict(state)`.

One optimizer step, as the seed's clipping/accumulation/mixed-precision sketches put it together:

    for each of grad_accum micro-batches:      # loss scaled by 1/grad_accum, so the summed
        loss, metrics = model(batch)           #   gradient is that of the mean over all frames
        backward(loss / grad_accum)            # (through GradScaler for fp16)
    unscale; clip_grad_norm_(grad_clip); optimizer.step(); scheduler.step(); zero_grad(None)

Departures from the seed's sketches: the optimizer is torch's fused AdamW over two parameter
groups (weight decay on matrices and conv kernels, none on biases and norm scales, as nanoGPT
does; see `optim.py`) holding only parameters with `requires_grad`; schedules are torch's
(see `schedules.py`); `.item()` and the progress bar run only every `log_every` steps, so the
per-step overhead stays far below a ~5 ms step; Ctrl-C is deferred to the end of the current
step and a checkpoint is saved before `KeyboardInterrupt` is re-raised (a second Ctrl-C quits at
once without saving); after the save the engine prints the checkpoint's path and, when the
caller gave one (`resume_hint`), the command that resumes.
Resume is exact: N steps straight and N/2 + Ctrl-C + resume end with bit-identical weights.

Non-finite values: every step checks its loss and, when the grad norm is computed anyway, the
grad norm, before the optimizer touches the weights (`train/nonfinite.py` says what is reported).

Multi-process (torchrun, see `distributed.py`): inside a process group the model is wrapped in
`DistributedDataParallel` (gradients averaged in backward; `no_sync` for all but the last
micro-batch), the loader hands each rank its slice of the global batch, the logged loss is the
global batch's (one all-reduce per log step), and rank 0 alone logs, evaluates and writes
checkpoints while the others wait; a collective that fails (a rank died or hung past the
timeout) stops this rank with `RankFailure`. On CUDA, batches go through pinned host memory
with non-blocking copies.

Checkpoint save and resume live in `train/resume.py` (`Checkpointing`, which `Trainer` extends).
Tests kill the process at named points through `NANOVLA_TEST_KILL_AT` (see
`train/guards.kill_point`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from nanovla.codec import to_json
from nanovla.constants import (
    CHECKPOINTS_DIR,
    LOGS_DIR,
    PLOTS_DIR,
)
from nanovla.errors import InputError
from nanovla.progress import note, progress
from nanovla.train import distributed
from nanovla.train.checkpoint import (
    latest_checkpoint,
)
from nanovla.train.config import TrainConfig
from nanovla.train.device import moved, resolve_device
from nanovla.train.guards import DeferredInterrupt, naming
from nanovla.train.logger import LOSS_PLOT, MetricsLogger, TrainWindow, plot_loss
from nanovla.train.nonfinite import (  # NonFiniteError re-exported: callers import it here
    NonFiniteError,
    check_output,
    nonfinite_batch,
    nonfinite_grads,
)
from nanovla.train.optim import build_optimizer
from nanovla.train.resume import Checkpointing
from nanovla.train.rng import capture_rng_state, restore_rng_state, seed_everything
from nanovla.train.schedules import build_scheduler

EvalFn = Callable[[nn.Module, int], dict[str, float]]
"""`eval_fn(model, step) -> metrics`, logged as `eval/<name>`."""


class Batches(Protocol):
    """What the engine needs from a loader (`nanovla.data.BatchLoader` has this face)."""

    def next_batch(self) -> dict[str, Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Trainer(Checkpointing):
    """Train `model` on batches from `loader` for `config.steps` optimizer steps.

    Checkpoints, logs and the loss plot go under `out_dir`. `eval_fn(model, step)` runs every
    `config.eval_every` steps (and at the last step) in eval mode with the training RNG streams
    set aside, so turning evaluation on or off does not change the trained weights.
    Each checkpoint's `pretrained_model/` holds the model's files and train_config.json (the
    resolved `TrainConfig`); `on_save(pretrained_dir)` may add files of its own there (the
    pipeline writes its typed run record), inside the atomic write; `on_step(step)` runs after
    every applied optimizer step (the pipeline's weight EMA, `train/ema.py`). `resume` (default:
    `config.resume`) restores model, optimizer, scheduler, loss scaler, RNG, loader and step
    from `out_dir/checkpoints/last` before anything is written. `resume_hint` (e.g.
    `nanovla train --out R --resume`) is printed after a Ctrl-C save as the command that resumes.
    """

    def __init__(
        self,
        model: nn.Module,
        loader: Batches,
        config: TrainConfig,
        out_dir: str | Path,
        eval_fn: EvalFn | None = None,
        on_save: Callable[[Path], None] | None = None,
        resume: bool | None = None,
        resume_hint: str | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> None:
        if not callable(getattr(model, "save_pretrained", None)):
            raise InputError("model must have save_pretrained(dir) (config.json + safetensors)")
        self.config, self.loader, self.eval_fn, self.on_save = config, loader, eval_fn, on_save
        self.resume_hint, self.on_step = resume_hint, on_step
        self.skipped_steps: list[int] = []  # steps whose update on_nonfinite="skip" dropped
        self.out_dir = Path(out_dir)
        self.train_config = {"train": to_json(config)}
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        seed_everything(config.seed)
        self.device = resolve_device(config.device)
        if self.device.type == "cuda":
            self.device = distributed.cuda_device()  # this rank's GPU under torchrun
        if config.amp == "fp16" and self.device.type != "cuda":
            raise InputError("amp='fp16' needs CUDA (GradScaler); on CPU use amp='bf16' or 'none'")
        self.model = model.to(self.device)
        self._ddp = distributed.wrap_model(self.model, self.device)  # None in one process
        distributed.shard_loader(loader)  # each rank gets its slice of the global batch
        forward = self._ddp if self._ddp is not None else self.model
        self._forward = torch.compile(forward) if config.compile else forward
        self.optimizer = build_optimizer(self.model, config.lr, config.weight_decay, config.betas)
        self._params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.scheduler = build_scheduler(
            self.optimizer, config.scheduler, config.steps, config.warmup_steps, config.min_lr_ratio
        )
        self.scaler = torch.amp.GradScaler("cuda") if config.amp == "fp16" else None
        self.step = 0
        self.resumed_from: Path | None = None
        self._interrupt = DeferredInterrupt()
        self._mid_step = False
        if config.resume if resume is None else resume:
            self._resume()
        elif latest_checkpoint(self.out_dir) is not None:
            raise InputError(
                f"{self.out_dir / CHECKPOINTS_DIR} already holds a run; resume it (--resume) or "
                "train into another directory"
            )

    # ------------------------------------------------------------ the loop

    def fit(self) -> dict[str, float]:
        """Train up to `config.steps`; returns the last logged metrics (and final eval).

        On Ctrl-C the current step is finished, checkpointed, and KeyboardInterrupt re-raised;
        a KeyboardInterrupt raised by the loader or model checkpoints the completed steps (see
        `_save_after_interrupt`) before it propagates.
        """
        cfg = self.config
        self.model.train()
        # records past the starting step belong to a run that never reached a checkpoint
        main = distributed.is_main()  # rank 0 alone logs, evaluates and saves
        logger: Any = distributed.SilentLogger(self.out_dir / LOGS_DIR)
        if main:
            with naming(self.out_dir / LOGS_DIR):
                logger = MetricsLogger(
                    self.out_dir, tensorboard=cfg.tensorboard, resume_step=self.step
                )
        bar = progress(
            total=cfg.steps,
            initial=self.step,
            desc="train",
            unit="step",
            enabled=cfg.progress and main,
        )
        window = TrainWindow(cfg.batch_size * cfg.grad_accum)
        final: dict[str, float] = {}
        saved_step = self.step if self.resumed_from is not None else -1
        failed = False
        try:
            with self._interrupt:
                while self.step < cfg.steps:
                    log_now = (self.step + 1) % cfg.log_every == 0 or self.step + 1 == cfg.steps
                    self._run_step(window, log_now)
                    if log_now and window.losses:  # empty when every step since was skipped
                        final = window.flush()
                        self._log(logger, final)
                        bar.set_postfix(window.postfix(final), refresh=False)
                        bar.update(self.step - bar.n)
                    if cfg.eval_every > 0 and self._eval_due():
                        final.update(self._evaluate(logger))
                    saved = None
                    if self._save_due() or self._interrupt.requested:
                        saved = self.save_checkpoint()
                        saved_step = self.step
                    if self._interrupt.requested:
                        if saved is not None:
                            note(
                                f"Ctrl-C: checkpoint of step {self.step} saved to {saved}"
                                + self._resume_note()
                            )
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            failed = True
            if not self._interrupt.aborted and saved_step != self.step:
                self._save_after_interrupt()
            raise
        except RuntimeError as error:
            failed = True
            if distributed.is_distributed() and distributed.is_comm_error(error):
                raise distributed.failure(error) from error
            raise
        except BaseException:
            failed = True
            raise
        finally:
            bar.close()
            try:
                with naming(logger.path):
                    logger.close()
            except OSError:
                if not failed:  # else the error on its way out says more (e.g. a full disk)
                    raise
        plot = self.out_dir / PLOTS_DIR / LOSS_PLOT
        if main:
            with naming(plot):
                plot_loss(logger.path, plot)
        if self.skipped_steps:
            final["skipped_steps"] = float(len(self.skipped_steps))
        return {"step": float(self.step), **final}

    def _log(self, logger: MetricsLogger, metrics: dict[str, float]) -> None:
        with naming(logger.path):
            logger.log(self.step, metrics)

    def _run_step(self, window: TrainWindow, log_now: bool) -> None:
        """One optimizer step over `grad_accum` micro-batches (see the module docstring)."""
        cfg = self.config
        start = time.perf_counter()
        losses: list[torch.Tensor] = []  # (grad_accum,) scalars, summed only when logging
        for micro in range(cfg.grad_accum):
            batch = self._to_device(self.loader.next_batch())
            self._mid_step = True  # from here on, an exception leaves a half-done step
            with self._autocast(), self._no_sync(micro + 1 < cfg.grad_accum):
                loss, metrics = check_output(self._forward(batch))
            if not math.isfinite(loss.item()):  # ~1 us on CPU; the step is not yet applied
                what = f"the loss is {loss.item()}{nonfinite_batch(batch)}"
                return self._nonfinite(what, window, log_now)
            scaled = loss / cfg.grad_accum if cfg.grad_accum > 1 else loss
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            losses.append(loss.detach())
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grad_norm = self._clip_or_measure(log_now)
        if grad_norm is not None and self.scaler is None and not math.isfinite(grad_norm.item()):
            # (under fp16 the loss scaler skips steps with inf gradients itself)
            what = (
                f"the gradient norm is {grad_norm.item()} (loss finite); non-finite gradients "
                f"in {nonfinite_grads(self.model)}"
            )
            return self._nonfinite(what, window, log_now)
        lr = self.optimizer.param_groups[0]["lr"]  # the rate this step uses
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.on_step is not None:
            self.on_step(self.step)
        self._mid_step = False
        if log_now:  # the loss of the global batch (all ranks), not of this rank's slice
            losses = distributed.mean_over_ranks(losses)
        window.add(losses, time.perf_counter() - start)
        if log_now:
            window.note(lr=lr, grad_norm=grad_norm, metrics=metrics)

    def _nonfinite(self, what: str, window: TrainWindow, log_now: bool) -> None:
        """Stop (raise NonFiniteError) or skip the current step, whose update is not applied."""
        step = self.step + 1
        self.optimizer.zero_grad(set_to_none=True)
        if self.config.on_nonfinite == "stop":
            last = latest_checkpoint(self.out_dir)
            kept = f"the last checkpoint, {last}, is unchanged" if last else "no checkpoint yet"
            raise NonFiniteError(
                f"step {step}: {what}; training stopped before this step changed the weights "
                f"({kept}). Lower --train.lr, check the data, or pass --train.on-nonfinite skip"
            )
        note(f"step {step}: {what}; step skipped (on_nonfinite=skip)")
        self.skipped_steps.append(step)
        if log_now:  # the window's record of this log step, if earlier steps give it a loss
            window.note(lr=self.optimizer.param_groups[0]["lr"], grad_norm=None, metrics={})
        self.scheduler.step()
        self.step = step
        self._mid_step = False

    def _clip_or_measure(self, log_now: bool) -> torch.Tensor | None:
        """Clip to `grad_clip` (returns the pre-clip norm); with clipping off, measure on logs."""
        if self.config.grad_clip > 0:
            return nn.utils.clip_grad_norm_(self._params, self.config.grad_clip)
        if log_now:
            grads = [p.grad for p in self._params if p.grad is not None]
            return nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        return None

    def _no_sync(self, skip: bool) -> contextlib.AbstractContextManager:
        """DDP's `no_sync()` for micro-batches before the last (one all-reduce per step)."""
        return self._ddp.no_sync() if skip and self._ddp is not None else contextlib.nullcontext()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.amp == "none":
            return contextlib.nullcontext()  # building a disabled autocast costs ~10 us a step
        dtype = torch.float16 if self.config.amp == "fp16" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch on the training device: CPU tensors go through pinned (page-locked) host
        memory and an asynchronous copy; tensors already there (a GPU-side loader) stay."""
        if self.device.type == "cpu":
            return batch
        return {k: moved(v, self.device) for k, v in batch.items()}

    to_device = _to_device  # public: the pipeline moves its fixed validation batches

    def _eval_due(self) -> bool:
        return self.step % self.config.eval_every == 0 or self.step == self.config.steps

    def _save_due(self) -> bool:
        every = self.config.save_every
        return self.step == self.config.steps or (every > 0 and self.step % every == 0)

    def _evaluate(self, logger: MetricsLogger) -> dict[str, float]:
        """Run eval_fn in eval mode; the RNG streams training uses are restored afterwards."""
        if not distributed.is_main():
            distributed.wait_for_main()  # rank 0 evaluates; the others wait for it
            return {}
        rng = capture_rng_state()
        self.model.eval()
        try:
            raw = self.eval_fn(self.model, self.step) if self.eval_fn is not None else {}
        finally:
            self.model.train()
            restore_rng_state(rng)
        distributed.wait_for_main()
        metrics = {f"eval/{k}": float(v) for k, v in raw.items()}
        if metrics:
            self._log(logger, metrics)
        return metrics
