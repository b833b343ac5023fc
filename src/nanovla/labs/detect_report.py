"""Pictures of a detection run: per-class precision-recall curves and predictions drawn on images.

`plot_pr_curves` draws COCO's interpolated precision at the 101 recall points (the curves whose
means are the APs) per class, at IoU 0.5 (solid) and 0.75 (dashed). `plot_predictions` shows a
grid of evaluation images with ground truth (thin white) and the detections above a display
threshold (class-coloured, labelled with class and score).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nanovla.labs.common import pyplot, save_figure
from nanovla.labs.detect_eval import RECALL_POINTS

CLASS_COLORS = ("#ff7f0e", "#d62728", "#9467bd", "#1f77b4", "#2ca02c", "#111111")


def plot_pr_curves(path: Path, precision: np.ndarray, names: Sequence[str]) -> Path:
    """precision (T, R, C) from `detect_eval.evaluate` -> one PR curve per class."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.0, 4.5))
    for k, name in enumerate(names):
        color = CLASS_COLORS[k % len(CLASS_COLORS)]
        if (precision[0, :, k] < 0).all():
            continue  # no ground truth of this class
        ap50 = precision[0, :, k].mean()
        axis.plot(RECALL_POINTS, precision[0, :, k], color=color, label=f"{name} AP50 {ap50:.3f}")
        axis.plot(RECALL_POINTS, precision[5, :, k], color=color, linestyle="--", alpha=0.7)
    axis.set_xlabel("recall")
    axis.set_ylabel("precision (interpolated)")
    axis.set_xlim(0, 1.0)
    axis.set_ylim(0, 1.02)
    axis.set_title("precision-recall per class: IoU 0.5 solid, IoU 0.75 dashed")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower left")
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
