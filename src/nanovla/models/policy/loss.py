"""The policy's chunk losses in LeRobot's padding convention, on top of `nanovla.nn.losses`.

The seed's ``CustomLoss`` weights per-component MSE terms and, given a mask, averages over the
valid entries only (``(loss * mask).sum() / mask.sum()``); its ``SmoothL1Loss`` is the Huber loss.
`nanovla.nn.losses.masked_weighted_regression` is both in one function; here it is applied to a
chunk ``(B, k, A)`` whose padding comes as ``action_is_pad`` (True = a step past the episode end,
which must not teach anything), and the weights are per action dimension.

Departure: the seed divides by ``mask.sum()`` with a mask over *components*; we divide by the
number of valid (step, dimension) entries, so all-ones weights give exactly the plain mean over
valid entries, and a batch with no valid entry gives 0 instead of NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nanovla.errors import InputError
from nanovla.models.policy.configuration_policy import LOSSES
from nanovla.nn.losses import masked_weighted_mean, masked_weighted_regression


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
    An unknown `kind` (the config's `loss`) is an InputError.
    """
    if kind not in LOSSES:
        raise InputError(f"loss must be one of {LOSSES}, got {kind!r}")
    valid = None if is_pad is None else ~is_pad  # (B, k) True = valid
    return masked_weighted_regression(pred, target, valid, weights, kind=kind, beta=beta)


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
    valid = None if is_pad is None else ~is_pad  # (B, k) True = valid
    return masked_weighted_mean(elementwise, valid, weights)
