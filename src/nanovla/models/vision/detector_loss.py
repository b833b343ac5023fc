"""FCOS training targets and losses for `detector.Detector`.

Assignment (FCOS, https://arxiv.org/abs/1904.01355, with its "center sampling"): a location is a
positive of a ground-truth box if it lies inside the box, within `radius * stride` of the box
centre on both axes, and on the box's pyramid level; a location claimed by several boxes takes
the smallest. Departure: each box is given one level by its longer side (`level_bounds`, the way
FPN assigns RoIs to levels) instead of FCOS' per-location ranges of the largest distance, which
only separate objects of 64+ pixels; and the location nearest each box centre on its level is
always a positive, so no box is left without one.

Losses, each summed over positives and divided by their number (at least 1):
- sigmoid focal loss (Lin et al., 2017, https://arxiv.org/abs/1708.02002; alpha 0.25,
  gamma 2) over all locations and classes, with one-hot targets at positives;
- GIoU loss (Rezatofighi et al., 2019, https://arxiv.org/abs/1902.09630) of the decoded box,
  weighted by the centerness target as in FCOS (normalized by the sum of those weights);
- binary cross-entropy of the centerness logit against
  `sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from nanovla.models.vision.detector import Detector


@dataclass
class Targets:
    """Per location: `positive` (B, P) bool, `labels` (B, P) class index (valid where
    positive), `boxes` (B, P, 4) the assigned pixel box (x0, y0, x1, y1)."""

    positive: Tensor
    labels: Tensor
    boxes: Tensor


def pad_boxes(boxes: list[Tensor], classes: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-image (K_i, 4) boxes and (K_i,) classes -> (B, K, 4) and (B, K) with class -1 as pad."""
    k = max([1] + [len(b) for b in boxes])
    padded = torch.zeros(len(boxes), k, 4)
    labels = torch.full((len(boxes), k), -1, dtype=torch.long)
    for i, (b, c) in enumerate(zip(boxes, classes)):
        padded[i, : len(b)] = b
        labels[i, : len(c)] = c
    return padded, labels


def box_levels(boxes: Tensor, bounds: tuple[float, ...]) -> Tensor:
    """(..., 4) boxes -> pyramid level index by the longer side: level i holds sides up to
    bounds[i] (the last level everything larger)."""
    side = torch.maximum(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1])
    return torch.bucketize(side, torch.tensor(bounds, dtype=side.dtype))


def _nearest_points(model: Detector, centres: Tensor, level: Tensor) -> Tensor:
    """(B, K) index of the location nearest each centre (B, K, 2) on level `level` (B, K)."""
    size, level_strides = model.config.img_size, model.config.strides
    strides = torch.tensor(level_strides, dtype=torch.float32)[level]
    cells = size // strides.long()
    level_start = torch.tensor([0] + [(size // s) ** 2 for s in level_strides]).cumsum(0)
    offsets = level_start[level]  # index of each level's first location
    ix = (centres[..., 0] / strides).floor().long().clamp(min=0)
    iy = (centres[..., 1] / strides).floor().long().clamp(min=0)
    ix, iy = torch.minimum(ix, cells - 1), torch.minimum(iy, cells - 1)
    return offsets + iy * cells + ix


@torch.no_grad()
def assign(
    model: Detector, boxes: Tensor, labels: Tensor, bounds: tuple[float, ...], radius: float = 1.5
) -> Targets:
    """FCOS targets for padded ground truth `boxes` (B, K, 4) and `labels` (B, K), -1 = pad."""
    points, strides, levels = model.points, model.point_strides, model.point_levels
    x, y = points[None, :, None, 0], points[None, :, None, 1]  # (1, P, 1)
    x0, y0, x1, y1 = (boxes[:, None, :, i] for i in range(4))  # (B, 1, K)
    inside = (x > x0) & (x < x1) & (y > y0) & (y < y1)  # (B, P, K)
    centres = (boxes[..., :2] + boxes[..., 2:]) / 2  # (B, K, 2)
    reach = radius * strides[None, :, None]
    near = ((x - centres[:, None, :, 0]).abs() < reach) & (
        (y - centres[:, None, :, 1]).abs() < reach
    )
    level = box_levels(boxes, bounds).clamp(max=len(model.config.strides) - 1)  # (B, K)
    candidate = inside & near & (levels[None, :, None] == level[:, None, :])
    nearest = _nearest_points(model, centres, level)  # (B, K)
    forced = torch.zeros_like(candidate)
    forced.scatter_(1, nearest[:, None, :], True)
    candidate = (candidate | forced) & (labels >= 0)[:, None, :]
    area = ((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]))[:, None, :]
    cost = torch.where(candidate, area.expand_as(candidate), torch.inf)
    best_cost, best = cost.min(dim=2)  # (B, P)
    positive = torch.isfinite(best_cost)
    chosen = best[..., None].expand(-1, -1, 4)
    return Targets(
        positive=positive,
        labels=labels.gather(1, best),
        boxes=boxes.gather(1, chosen),
    )


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0):
    """Elementwise focal loss of RetinaNet (same formula as torchvision's, reduction "none")."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    return (alpha * targets + (1 - alpha) * (1 - targets)) * loss


def giou(a: Tensor, b: Tensor) -> Tensor:
    """Generalized IoU of matching rows of (N, 4) boxes (x0, y0, x1, y1)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    low, high = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (high - low).clamp(min=0).prod(1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-9)
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).prod(1)
    return iou - (hull - union) / hull.clamp(min=1e-9)


def centerness(points: Tensor, boxes: Tensor) -> Tensor:
    """FCOS centerness target of locations (N, 2) in their boxes (N, 4)."""
    left, top = points[:, 0] - boxes[:, 0], points[:, 1] - boxes[:, 1]
    right, bottom = boxes[:, 2] - points[:, 0], boxes[:, 3] - points[:, 1]
    lr = torch.stack([left, right], 1).clamp(min=1e-3)
    tb = torch.stack([top, bottom], 1).clamp(min=1e-3)
    ratio = (lr.min(1).values / lr.max(1).values) * (tb.min(1).values / tb.max(1).values)
    return ratio.sqrt()


def detection_loss(
    model: Detector,
    images: Tensor,
    boxes: list[Tensor],
    classes: list[Tensor],
    bounds: tuple[float, ...],
) -> tuple[Tensor, dict[str, float]]:
    """Total loss (focal + GIoU + centerness) of a batch, and its parts as floats."""
    cls, distances, ctr = model.forward_raw(images)
    padded, labels = pad_boxes(boxes, classes)
    targets = assign(model, padded, labels, bounds)
    positive = targets.positive
    num_pos = max(1.0, float(positive.sum()))
    one_hot = torch.zeros_like(cls)
    one_hot[positive] = F.one_hot(targets.labels[positive], cls.shape[-1]).to(cls.dtype)
    loss_cls = sigmoid_focal_loss(cls, one_hot).sum() / num_pos
    points = model.points.expand(len(images), -1, -1)[positive]
    target_boxes = targets.boxes[positive]
    ctr_target = centerness(points, target_boxes)
    predicted = model.decode(distances)[positive]
    loss_box = ((1 - giou(predicted, target_boxes)) * ctr_target).sum() / ctr_target.sum().clamp(
        min=1e-6
    )
    loss_ctr = F.binary_cross_entropy_with_logits(ctr[positive], ctr_target, reduction="sum")
    loss_ctr = loss_ctr / num_pos
    total = loss_cls + loss_box + loss_ctr
    parts = {"cls": loss_cls.item(), "box": loss_box.item(), "ctr": loss_ctr.item()}
    return total, parts
