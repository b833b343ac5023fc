"""Losses: Smooth L1 (Huber), masked weighted regression for action sequences, and InfoNCE (CLIP).

Each one starts from the seed's sketch (`SmoothL1Loss`, `CustomLoss`, `contrastive_loss`) and is
checked against `torch.nn.functional` in `tests/test_nn_losses.py`.

Departures from the seed:
- `smooth_l1_loss` takes `reduction` like `F.smooth_l1_loss` and treats `beta == 0` as plain L1
  (the seed's `0.5 * diff**2 / beta` divides by zero there; torch does the same special case).
- `masked_weighted_regression` generalises the seed's `CustomLoss`, which hard-coded two named
  terms (`position`, `velocity`): here any number of action dimensions get a weight each, the mask
  marks valid (not padded) steps, and the mean is over valid *entries* (step x dimension), so a
  batch with more padding does not get a smaller loss. `masked_weighted_mean` is that mean on its
  own, for losses that are not a regression (the policy's binned cross-entropy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_REDUCTIONS = ("mean", "sum", "none")
_REGRESSION_KINDS = ("smooth_l1", "mse")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def smooth_l1_loss(
    pred: Tensor, target: Tensor, beta: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """Smooth L1 (Huber-like) loss, equal to `F.smooth_l1_loss(pred, target, reduction, beta)`.

    loss = 0.5 * d**2 / beta   if d < beta   (quadratic near zero: smooth gradient)
           d - 0.5 * beta      otherwise     (linear far away: robust to outliers)
    with d = |pred - target|, elementwise. `beta == 0` is plain L1.

    Args:
        pred, target: tensors of the same shape (any).
        beta: where the quadratic part turns linear; >= 0.
        reduction: "mean" | "sum" | "none" (elementwise, same shape as `pred`).
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    _check_reduction(reduction)
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {pred.shape} and {target.shape}"
        )
    diff = (pred - target).abs()
    if beta == 0:
        return _reduce(diff, reduction)
    loss = torch.where(diff < beta, 0.5 * diff**2 / beta, diff - 0.5 * beta)
    return _reduce(loss, reduction)


class SmoothL1Loss(nn.Module):
    """Module form of `smooth_l1_loss` (the seed's `SmoothL1Loss`, plus `reduction`)."""

    def __init__(self, beta: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        _check_reduction(reduction)
        self.beta = beta
        self.reduction = reduction

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return smooth_l1_loss(pred, target, beta=self.beta, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, reduction={self.reduction!r}"


def _broadcast_mask(mask: Tensor, pred: Tensor) -> Tensor:
    """(…) step mask or (…, D) entry mask -> float (…, D), 1 = valid."""
    if mask.shape == pred.shape[:-1]:
        mask = mask.unsqueeze(-1)  # (..., 1): one flag per step, shared by its D dimensions
    elif mask.shape != pred.shape:
        raise ValueError(
            f"mask must have shape {tuple(pred.shape[:-1])} (per step) or {tuple(pred.shape)} "
            f"(per entry), got {tuple(mask.shape)}"
        )
    if not mask.is_floating_point():
        mask = mask != 0  # bool or integer flags
    return mask.to(pred.dtype).expand_as(pred)


def masked_weighted_mean(
    loss: Tensor, mask: Tensor | None = None, weights: Tensor | None = None
) -> Tensor:
    """Weighted mean of an elementwise loss `(..., D)` over its valid entries.

    result = sum_{valid entries} w_d * loss / (number of valid entries)

    `mask` is (...) (one flag per step, shared by its D dimensions) or (..., D); 1/True = valid,
    None = all valid. `weights` is (D,) or None (all 1); it multiplies with type promotion, so a
    bfloat16 loss with float32 weights is summed in float32. No valid entry gives 0 (still
    connected to the graph). Returns a scalar.
    """
    if loss.dim() == 0:
        raise ValueError("loss must have shape (..., D), got a scalar")
    if weights is not None:
        if weights.shape != loss.shape[-1:]:
            raise ValueError(
                f"weights must have shape ({loss.shape[-1]},) (one per action dimension), "
                f"got {tuple(weights.shape)}"
            )
        loss = loss * weights  # (..., D) * (D,)
    if mask is None:
        return loss.mean()
    valid = _broadcast_mask(mask, loss)  # (..., D)
    return (loss * valid).sum() / valid.sum().clamp_min(1.0)


def masked_weighted_regression(
    pred: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    weights: Tensor | None = None,
    kind: str = "smooth_l1",
    beta: float = 1.0,
) -> Tensor:
    """Regression loss over action sequences with per-dimension weights and padded steps masked.

    loss = sum_{valid entries} w_d * l(pred, target) / (number of valid entries)

    Symbol  | shape                     | meaning
    --------|---------------------------|--------------------------------------------------
    pred    | (..., D), e.g. (B, T, D)  | predicted actions
    target  | (..., D)                  | expert actions
    mask    | (...) or (..., D)         | 1/True = valid, 0/False = padding; None = all valid
    weights | (D,)                      | weight of each action dimension; None = all 1

    With all weights 1 and no mask this is the plain mean (`F.mse_loss` / `F.smooth_l1_loss`).
    A mask with no valid entry gives 0 (still connected to the graph). Returns a scalar. The
    elementwise loss is torch's kernel (`F.smooth_l1_loss` / `F.mse_loss`; `smooth_l1_loss`
    above is the reference it is tested against). The policy's chunk loss
    (`nanovla.models.policy.loss`) is this function.

    Args:
        kind: "smooth_l1" (robust to outlier demonstrations) or "mse".
        beta: Smooth L1 transition point (ignored for "mse").
    """
    if kind not in _REGRESSION_KINDS:
        raise ValueError(f"kind must be one of {_REGRESSION_KINDS}, got {kind!r}")
    if pred.shape != target.shape or pred.dim() == 0:
        raise ValueError(
            f"pred and target must have the same shape (..., D), got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    if kind == "mse":
        loss = F.mse_loss(pred, target, reduction="none")  # (..., D)
    else:
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        loss = F.smooth_l1_loss(pred, target, reduction="none", beta=beta)  # (..., D)
    return masked_weighted_mean(loss, mask, weights)


def info_nce(logits_per_image: Tensor, logits_per_text: Tensor | None = None) -> Tensor:
    """CLIP's symmetric InfoNCE loss: matching (image, text) pairs sit on the diagonal.

    loss = (CE(logits_per_image, arange(B)) + CE(logits_per_text, arange(B))) / 2

    Args:
        logits_per_image: (B, B) similarity logits, row i = image i against every text (already
            multiplied by the temperature / logit scale).
        logits_per_text: (B, B); defaults to `logits_per_image.T`, as CLIP computes it.
    """
    if logits_per_image.dim() != 2 or logits_per_image.shape[0] != logits_per_image.shape[1]:
        raise ValueError(
            f"logits_per_image must be square (B, B), got {tuple(logits_per_image.shape)}"
        )
    if logits_per_text is None:
        logits_per_text = logits_per_image.t()
    elif logits_per_text.shape != logits_per_image.shape:
        raise ValueError(
            f"logits_per_text must have shape {tuple(logits_per_image.shape)}, got "
            f"{tuple(logits_per_text.shape)}"
        )
    labels = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)  # (B,)
    loss_image = F.cross_entropy(logits_per_image, labels)  # image -> its text
    loss_text = F.cross_entropy(logits_per_text, labels)  # text -> its image
    return (loss_image + loss_text) / 2


def info_nce_shared(logits_per_image: Tensor, text_of_image: Tensor) -> Tensor:
    """Symmetric InfoNCE when several images share one caption text (templated captions).

    N images, U distinct texts; image i's text is `text_of_image[i]`. Image -> text is the usual
    cross-entropy over the U texts. Text -> image treats every image of a text as a positive:
    the target of text u is uniform over its images P_u, so its loss is the mean of -log p(i | u)
    over i in P_u (SupCon's "out" form, Khosla et al. 2020, arXiv:2004.11362). With one image
    per text (U = N, text_of_image = arange) it is `info_nce` exactly; unlike dropping the
    duplicates, no image is lost and no image of the same text is pushed away as a negative.

    Args:
        logits_per_image: (N, U) logits (already times the logit scale).
        text_of_image: (N,) int64 in [0, U), every text used at least once.
    """
    if logits_per_image.dim() != 2 or text_of_image.shape != logits_per_image.shape[:1]:
        raise ValueError(
            f"logits_per_image must be (N, U) and text_of_image (N,), got "
            f"{tuple(logits_per_image.shape)} and {tuple(text_of_image.shape)}"
        )
    count = logits_per_image.shape[1]
    positives = F.one_hot(text_of_image, count).t().to(logits_per_image.dtype)  # (U, N)
    if bool((positives.sum(dim=1) == 0).any()):
        raise ValueError("text_of_image: every one of the U texts needs at least one image")
    loss_image = F.cross_entropy(logits_per_image, text_of_image)
    targets = positives / positives.sum(dim=1, keepdim=True)  # uniform over each text's images
    loss_text = F.cross_entropy(logits_per_image.t(), targets)
    return (loss_image + loss_text) / 2
