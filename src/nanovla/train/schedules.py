"""Learning-rate schedules (the optimizer they drive is built in `optim.py`).

The engine steps the scheduler once per optimizer step (not per epoch: training here is
step-based). Three schedules, chosen by name:

| name       | torch classes                                   | lr at optimizer step i       |
|------------|-------------------------------------------------|------------------------------|
| `cosine`   | `LinearLR`, then `CosineAnnealingLR` (`SequentialLR`) | `lr*(i+1)/W` for i < W,  |
|            |                                                 | then cosine down to          |
|            |                                                 | `lr*min_lr_ratio` at i=steps |
| `onecycle` | `OneCycleLR`                                    | cosine up, then cosine down  |
| `constant` | `ConstantLR(factor=1)`                          | `lr`                         |

Departures from the seed: the seed's `WarmupCosineScheduler` is a hand-written class that sets
`param_group['lr']` itself; here the same curve (linear warmup `(i+1)/W`, then
`min + (lr-min)*0.5*(1+cos(pi*(i-W)/(steps-W)))`) is composed from torch's schedulers, so its
state travels through `state_dict()` and resume stays exact (the engine's tests check a resumed
run ends bit-identical to a straight one). A warmup of 0 or 1 step is no warmup at all (a
one-step linear ramp would start at the full rate anyway). For `onecycle`, the warmup fraction
`pct_start` is `warmup_steps / steps` (torch's 0.3 when `warmup_steps` is 0) and the final rate
is `lr * min_lr_ratio` (torch's `final_div_factor` when the ratio is 0); with AdamW it also
cycles beta1 between 0.85 and 0.95, as torch does by default.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    OneCycleLR,
    SequentialLR,
)

from nanovla.errors import InputError

SCHEDULERS: tuple[str, ...] = ("cosine", "onecycle", "constant")

# torch's OneCycleLR defaults, kept explicit so the docstring above stays true.
_ONECYCLE_DIV_FACTOR = 25.0
_ONECYCLE_FINAL_DIV_FACTOR = 1e4
_ONECYCLE_PCT_START = 0.3


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    steps: int,
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.0,
) -> LRScheduler:
    """Return the torch scheduler named `name` for a run of `steps` optimizer steps.

    The peak rate is each param group's current `lr`. Bad arguments: see `check_schedule`.
    """
    check_schedule(name, steps, warmup_steps, min_lr_ratio)
    if name == "constant":
        return ConstantLR(optimizer, factor=1.0, total_iters=0)
    if name == "onecycle":
        return _onecycle(optimizer, steps, warmup_steps, min_lr_ratio)
    return _warmup_cosine(optimizer, steps, warmup_steps, min_lr_ratio)


def check_schedule(name: str, steps: int, warmup_steps: int, min_lr_ratio: float) -> None:
    """ValueError naming the argument for an unknown `name`, `steps < 1`, `warmup_steps`
    outside [0, steps) or `min_lr_ratio` outside [0, 1]."""
    if name not in SCHEDULERS:
        raise InputError(f"scheduler must be one of {', '.join(SCHEDULERS)}; got {name!r}")
    if steps < 1:
        raise InputError(f"steps must be >= 1; got {steps}")
    if not 0 <= warmup_steps < steps:
        raise InputError(f"warmup_steps must be in [0, steps={steps}); got {warmup_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise InputError(f"min_lr_ratio must be in [0, 1]; got {min_lr_ratio}")


def _warmup_cosine(
    optimizer: torch.optim.Optimizer, steps: int, warmup_steps: int, min_lr_ratio: float
) -> LRScheduler:
    """Linear warmup `(i+1)/W` for W steps, then cosine down to `min_lr_ratio * lr`.

    `CosineAnnealingLR`'s floor `eta_min` is one absolute rate for all groups, taken from the
    highest group `lr` (the engine's groups share one rate; they differ only in weight decay).
    """
    peak = max(group["lr"] for group in optimizer.param_groups)
    if warmup_steps <= 1:
        return CosineAnnealingLR(optimizer, T_max=steps, eta_min=peak * min_lr_ratio)
    # LinearLR's factor at iteration i is start + (1 - start) * i / total_iters: with
    # start = 1/W and total_iters = W-1 that is exactly (i+1)/W, the seed's warmup.
    warmup = LinearLR(
        optimizer, start_factor=1.0 / warmup_steps, end_factor=1.0, total_iters=warmup_steps - 1
    )
    cosine = CosineAnnealingLR(optimizer, T_max=steps - warmup_steps, eta_min=peak * min_lr_ratio)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])


def _onecycle(
    optimizer: torch.optim.Optimizer, steps: int, warmup_steps: int, min_lr_ratio: float
) -> OneCycleLR:
    """torch's OneCycleLR peaking at each group's `lr` after `warmup_steps` steps."""
    max_lr = [group["lr"] for group in optimizer.param_groups]
    pct_start = warmup_steps / steps if warmup_steps > 0 else _ONECYCLE_PCT_START
    final_div = _ONECYCLE_FINAL_DIV_FACTOR
    if min_lr_ratio > 0:
        # final lr = max_lr / (div_factor * final_div_factor) = max_lr * min_lr_ratio
        final_div = 1.0 / (min_lr_ratio * _ONECYCLE_DIV_FACTOR)
    return OneCycleLR(
        optimizer,
        max_lr=max_lr,
        total_steps=steps,
        pct_start=pct_start,
        div_factor=_ONECYCLE_DIV_FACTOR,
        final_div_factor=final_div,
    )
