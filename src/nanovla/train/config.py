"""`TrainConfig`: the training loop's options, one docstring each (the CLI is generated from it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nanovla.errors import InputError
from nanovla.train.schedules import check_schedule

AMP_MODES = ("none", "bf16", "fp16")


@dataclass
class TrainConfig:
    """The training loop. Options you will most likely change come first."""

    steps: int = 3000
    """optimizer steps in the whole run (the schedule spans exactly this many)"""
    lr: float = 1e-3
    """peak learning rate of AdamW (after warmup)"""
    batch_size: int = 64
    """frames per micro-batch, as the loader was built (for samples/s and train_config.json)"""
    grad_accum: int = 1
    """micro-batches per optimizer step, loss scaled by 1/grad_accum (2 x 32 == 1 x 64 frames)"""
    scheduler: Literal["cosine", "onecycle", "constant"] = "cosine"
    """learning-rate schedule: linear warmup + cosine decay, torch's OneCycleLR, or constant"""
    warmup_steps: int = 100
    """linear-warmup steps (cosine) or rising-phase steps (onecycle); 0 = none; max steps - 1"""
    min_lr_ratio: float = 0.1
    """final learning rate as a fraction of lr (cosine floor; onecycle end)"""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay on matrices/conv kernels (never on biases and norms)"""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW (beta1, beta2); onecycle cycles beta1 between 0.85 and 0.95 itself"""
    grad_clip: float = 1.0
    """clip the global gradient norm to this value; 0 = off (the norm is still logged)"""
    on_nonfinite: Literal["stop", "skip"] = "stop"
    """what a NaN/inf loss (checked every step) or gradient norm (checked every step while
    clipping, on log steps otherwise; left to the loss scaler under fp16) does: stop = raise an
    error naming the step before the weights change (checkpoints on disk stay as they are);
    skip = drop that step's update, say so, and go on"""
    amp: Literal["none", "bf16", "fp16"] = "none"
    """autocast precision: bf16 (CPU or CUDA) or fp16 with GradScaler (CUDA only)"""
    seed: int = 0
    """seeds Python, numpy and torch when the trainer is built"""
    log_every: int = 50
    """steps between log events (JSONL/TensorBoard) and progress-bar updates"""
    save_every: int = 0
    """steps between checkpoints; 0 = only at the end (and on Ctrl-C)"""
    keep_last: int = 2
    """step checkpoints kept on disk (the newest ones; `last` always survives); 0 = all"""
    eval_every: int = 0
    """steps between calls of the eval function (and at the last step); 0 = never"""
    device: Literal["cpu", "cuda", "auto"] = "auto"
    """where to train; auto = CUDA when available, else CPU"""
    compile: bool = False
    """wrap the model's forward in torch.compile (slow start, may pay off on long runs)"""
    num_threads: int = 0
    """torch intra-op CPU threads; 0 = torch's default"""
    resume: bool = False
    """continue from out_dir/checkpoints/last (model, optimizer, scheduler, RNG, loader, step)"""
    tensorboard: bool = True
    """also write TensorBoard events beside the JSONL log when tensorboard is installed"""
    progress: bool = True
    """show a tqdm progress bar"""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "log_every"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1; got {getattr(self, name)}")
        for name in ("save_every", "keep_last", "eval_every", "num_threads", "warmup_steps"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0; got {getattr(self, name)}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise InputError(
                f"grad_clip and weight_decay must be >= 0; got {self.grad_clip}, "
                f"{self.weight_decay}"
            )
        if self.lr <= 0:
            raise InputError(f"lr must be > 0; got {self.lr}")
        if self.on_nonfinite not in ("stop", "skip"):
            raise InputError(f"on_nonfinite must be stop or skip; got {self.on_nonfinite!r}")
        if self.amp not in AMP_MODES:
            raise InputError(f"amp must be one of {', '.join(AMP_MODES)}; got {self.amp!r}")
        self.warmup_steps = min(self.warmup_steps, self.steps - 1)  # see its docstring
        check_schedule(self.scheduler, self.steps, self.warmup_steps, self.min_lr_ratio)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise InputError(f"betas must be two numbers in [0, 1); got {self.betas}")
