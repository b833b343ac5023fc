"""mAP of a trained detector on images of other sizes, through letterboxing.

    .venv/bin/python benchmarks/detect_letterbox.py --model runs/lab-detect/model [--frames 128]

Renders held-out world frames (seed 20000, unseen by `nanovla lab detect`) and scores the
detector (COCO mAP50 / mAP50-95, our evaluator) on: the native 128x128 renders; a 128x96 crop
of them (letterboxed with grey bars, no rescaling); and renders at 192x192 and 96x96 (resized by
the letterbox, bilinear). Boxes are mapped back to each image's own pixels before scoring.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from nanovla.data.detection import (
    DetectionSet,
    coco_ground_truth,
    coco_results,
    render_detection_set,
)
from nanovla.labs.detect import load_detector
from nanovla.labs.detect_eval import evaluate
from nanovla.labs.detect_infer import detect_any_size


@dataclass
class Config:
    """Letterboxed inference benchmark."""

    model: Path = Path("runs/lab-detect/model")
    """a model/ directory written by `nanovla lab detect`"""
    frames: int = 128
    """held-out frames per variant"""
    seed: int = 20_000
    """world seed of the frames"""
    threads: int = 1
    """torch intra-op threads (on a busy machine more can be slower)"""


def _crop(data: DetectionSet, height: int) -> DetectionSet:
    """The top `height` rows; boxes clipped, those left under 4 pixels tall dropped."""
    boxes, classes = [], []
    for image_boxes, image_classes in zip(data.boxes, data.classes):
        clipped = image_boxes.copy()
        clipped[:, [1, 3]] = np.clip(clipped[:, [1, 3]], 0, height)
        keep = clipped[:, 3] - clipped[:, 1] >= 4
        boxes.append(clipped[keep])
        classes.append(image_classes[keep])
    return DetectionSet(data.images[:, :height].copy(), boxes, classes, data.names)


def _score(model, data: DetectionSet) -> dict:
    found = [detect_any_size(model, image, conf_threshold=0.1) for image in data.images]
    results = coco_results(*zip(*[(f.boxes, f.scores, f.classes) for f in found]))
    return evaluate(coco_ground_truth(data), results, {"all": (0.0, 1e10)})


def main(config: Config) -> None:
    torch.set_num_threads(config.threads)
    model = load_detector(config.model)
    native = render_detection_set(config.frames, config.seed, 128, show_progress=False)
    variants = {
        "128x128 native": native,
        "128x96 crop (grey bars)": _crop(native, 96),
        "192x192 (downscaled)": render_detection_set(
            config.frames, config.seed, 192, show_progress=False
        ),
        "96x96 (upscaled)": render_detection_set(
            config.frames, config.seed, 96, show_progress=False
        ),
    }
    print(
        f"{'input':<26} {'mAP50':>7} {'mAP50-95':>9}  ({config.frames} frames, seed {config.seed})"
    )
    for name, data in variants.items():
        scores = _score(model, data)
        print(f"{name:<26} {scores['map50']:>7.3f} {scores['map50_95']:>9.3f}")


if __name__ == "__main__":
    main(tyro.cli(Config))
