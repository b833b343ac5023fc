"""Non-finite values in a training step, found before the optimizer touches the weights.

Every step checks its loss (one `.item()`, ~1 us on CPU) and, when the grad norm is computed
anyway (clipping on, or a log step), the grad norm. `on_nonfinite="stop"` raises
`NonFiniteError` naming the step, what was non-finite (loss or gradients, and which batch
features or parameters hold NaN/inf) and the last checkpoint, which stays as it was; `"skip"`
drops that step's update and goes on. Finite runs are bit-identical to an engine without the
checks. Also here: `check_output`, the check that a model returned `(loss, metrics)`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nanovla.errors import InputError, NanovlaError


class NonFiniteError(NanovlaError, ArithmeticError):
    """A step's loss or gradients were NaN/inf (`TrainConfig.on_nonfinite="stop"`); the message
    names the step, what was non-finite and the last checkpoint."""


def nonfinite_batch(batch: dict[str, Any]) -> str:
    """`; batch 'x' holds 3 NaN/inf values` for the floating tensors of `batch` that do."""
    found = [
        f"{key!r} holds {int((~torch.isfinite(value)).sum())} NaN/inf values"
        for key, value in batch.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point()
        if not bool(torch.isfinite(value).all())
    ]
    return f" (batch {'; '.join(found)})" if found else " (the batch is finite)"


def nonfinite_grads(model: nn.Module) -> str:
    """The names of the parameters whose gradient holds NaN/inf (the first five, and a count)."""
    names = [
        name
        for name, p in model.named_parameters()
        if p.grad is not None and not bool(torch.isfinite(p.grad).all())
    ]
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return ", ".join(names[:5]) + more if names else "no parameter (the norm overflowed)"


def check_output(output: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    """The model's `(loss, metrics)`, or one ValueError saying what came back instead."""
    if not (isinstance(output, tuple) and len(output) == 2):
        raise InputError(f"model(batch) must return (loss, metrics); got {type(output).__name__}")
    loss, metrics = output
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise InputError("model(batch) must return a scalar loss tensor as its first element")
    if not isinstance(metrics, dict):
        raise InputError(f"model(batch) metrics must be a dict; got {type(metrics).__name__}")
    return loss, metrics
