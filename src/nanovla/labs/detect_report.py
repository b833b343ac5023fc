"""Pictures of a detection run: per-class precision-recall curves and predictions drawn on images.

`plot_pr_curves` draws COCO's interpolated precision at the 101 recall points (the curves whose
means are the APs) per class, at IoU 0.5 (solid) and 0.75 (dashed), and beside it each class's
AP at every IoU threshold. `plot_predictions` shows a
grid of evaluation images with ground truth (thin white) and the detections above a display
threshold (class-coloured, labelled with class and score).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nanovla.labs.common import pyplot, save_figure
from nanovla.labs.detect_eval import IOU_THRESHOLDS, RECALL_POINTS

CLASS_COLORS = ("#ff7f0e", "#d62728", "#9467bd", "#1f77b4", "#2ca02c", "#111111")


def plot_pr_curves(path: Path, precision: np.ndarray, names: Sequence[str]) -> Path:
    """precision (T, R, C) from `detect_eval.evaluate` -> left: one PR curve per class at IoU
    0.5 (solid) and 0.75 (dashed); right: each class's AP at every IoU threshold 0.50..0.95
    (their mean is the class's AP50-95), which shows where localization costs points."""
    plt = pyplot()
    figure, (axis, by_iou) = plt.subplots(1, 2, figsize=(11.0, 4.5))
    thresholds = IOU_THRESHOLDS
    for k, name in enumerate(names):
        color = CLASS_COLORS[k % len(CLASS_COLORS)]
        if (precision[0, :, k] < 0).all():
            continue  # no ground truth of this class
        ap = precision[:, :, k].mean(axis=1)  # (T,)
        label = f"{name} AP50 {ap[0]:.3f}, AP50-95 {ap.mean():.3f}"
        axis.plot(RECALL_POINTS, precision[0, :, k], color=color, label=label)
        axis.plot(RECALL_POINTS, precision[5, :, k], color=color, linestyle="--", alpha=0.7)
        by_iou.plot(thresholds, ap, color=color, marker="o", markersize=3, label=name)
    axis.set_xlabel("recall")
    axis.set_ylabel("precision (interpolated)")
    axis.set_xlim(0, 1.0)
    axis.set_ylim(0, 1.02)
    axis.set_title("precision-recall: IoU 0.5 solid, IoU 0.75 dashed")
    axis.legend(fontsize=7, loc="lower left")
    by_iou.set_xlabel("IoU threshold")
    by_iou.set_ylabel("AP")
    by_iou.set_ylim(0, 1.02)
    by_iou.set_title("AP per class at each IoU threshold")
    by_iou.legend(fontsize=7, loc="lower left")
    for panel in (axis, by_iou):
        panel.grid(alpha=0.3)
    return save_figure(figure, path)


def plot_predictions(
    path: Path,
    images: np.ndarray,
    truth: Sequence[np.ndarray],
    detections: Sequence,
    names: Sequence[str],
    threshold: float,
    columns: int = 4,
) -> Path:
    """A grid of `images` (F, S, S, 3) with ground-truth boxes and detections above
    `threshold` (`detect_infer.Detections`)."""
    plt = pyplot()
    rows = -(-len(images) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.2 * rows), squeeze=False)
    for i, axis in enumerate(axes.flat):
        axis.set_axis_off()
        if i >= len(images):
            continue
        axis.imshow(images[i], interpolation="nearest")
        for x0, y0, x1, y1 in truth[i]:
            axis.add_patch(
                plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="white", lw=2.2)
            )
        found = detections[i]
        for box, score, c in zip(found.boxes, found.scores, found.classes):
            if score < threshold:
                continue
            color = CLASS_COLORS[int(c) % len(CLASS_COLORS)]
            x0, y0, x1, y1 = box
            axis.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color=color, lw=1))
            axis.text(x0, y0 - 1, f"{names[c]} {score:.2f}", color=color, fontsize=5.5)
    figure.suptitle(f"white: ground truth; coloured: detections with score >= {threshold}")
    return save_figure(figure, path)
