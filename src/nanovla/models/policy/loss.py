"""The seed's masked, weighted regression loss over an action chunk (and its binned twin).

The seed's ``CustomLoss`` weights per-component MSE terms and, given a mask, averages over the
valid entries only (``(loss * mask).sum() / mask.sum()``); its ``SmoothL1Loss`` is the Huber loss.
Here both are one function over a chunk ``(B, k, A)``: the mask is ``~action_is_pad`` (steps past
the episode end are padding and must not teach anything), the weights are per action dimension.

Departure: the seed divides by ``mask.sum()`` with a mask over *components*; we divide by the
number of valid (step, dimension) entries, so all-ones weights give exactly the plain mean over
valid entries, and a batch with no valid entry gives 0 instead of NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nanovla.errors import InputError


def masked_regression_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    is_pad: torch.Tensor | None,
    weights: torch.Tensor | None = None,
    kind: str = "smooth_l1",
    beta: float = 1.0,
) -> torch.Tensor:
    """Weighted mean of the elementwise loss over the non-padded entries.

    pred, target: (B, k, A); is_pad: (B, k) bool (True = padding) or None; weights: (A,) or None.
    loss = sum_{b,t,a} w_a * l(pred, target) * valid_{b,t} / (A * sum_{b,t} valid_{b,t})
    """
    if kind == "smooth_l1":
        elementwise = F.smooth_l1_loss(pred, target, reduction="none", beta=beta)  # (B, k, A)
    elif kind == "mse":
        elementwise = F.mse_loss(pred, target, reduction="none")  # (B, k, A)
    else:
        raise InputError(f"loss must be one of ('smooth_l1', 'mse'), got {kind!r}")
    return _masked_mean(elementwise, is_pad, weights)


def masked_binned_loss(
    logits: torch.Tensor,
    target_probs: torch.Tensor,
    is_pad: torch.Tensor | None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of binned logits (B, k, A, bins) against target distributions of the same
    shape (two-hot, see `BinnedActionHead.two_hot`), weighted and averaged over the non-padded
    entries exactly as `masked_regression_loss` averages its elementwise loss."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    elementwise = -(target_probs * log_probs).sum(-1)  # (B, k, A)
    return _masked_mean(elementwise, is_pad, weights)


def _masked_mean(
    elementwise: torch.Tensor, is_pad: torch.Tensor | None, weights: torch.Tensor | None
) -> torch.Tensor:
    """sum_{b,t,a} w_a * elementwise * valid_{b,t} / (A * sum_{b,t} valid_{b,t})"""
    if weights is not None:
        elementwise = elementwise * weights  # (B, k, A) * (A,)
    if is_pad is None:
        return elementwise.mean()
    valid = (~is_pad).to(elementwise.dtype).unsqueeze(-1)  # (B, k, 1)
    count = valid.sum() * elementwise.shape[-1]
    return (elementwise * valid).sum() / count.clamp_min(1.0)
