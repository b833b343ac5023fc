"""Detector inference: confidence threshold + NMS, letterboxing, ONNX export and its checks.

- `nms`: greedy non-maximum suppression (the highest-scoring box suppresses every remaining box
  of the same class with IoU > `iou_threshold`), class-aware, written here: torchvision's
  `ops.nms` is not a dependency. `postprocess` applies it to the detector's dense output
  (every location x class with score >= `conf_threshold`, top `pre_nms` of them, at most
  `max_dets` kept per image), as FCOS / mmdetection do for multi-label scoring.
- `letterbox`: YOLO's resize-and-pad to the detector's square input (aspect ratio kept, grey
  114 padding, centred); `unletterbox` maps boxes back to the original image.
- `export_onnx`: `torch.onnx.export` of the decoded forward (boxes, scores) for a batch of one,
  with the dynamo exporter (torch >= 2.9's default; it needs onnxscript) and the legacy
  TorchScript exporter (`dynamo=False`) as the fallback; the path used is returned.
  `onnx_parity` compares onnxruntime's outputs and post-NMS boxes with torch's;
  `latency_ms` times one image through either runtime.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from nanovla.errors import InputError
from nanovla.models.vision.detector import Detector

PAD_VALUE = 114
"""letterbox padding grey, as YOLO uses"""


@dataclass
class Detections:
    """One image's detections: boxes (K, 4) pixel x0 y0 x1 y1, scores (K,), classes (K,)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """(N, M) IoU of (N, 4) and (M, 4) boxes (x0, y0, x1, y1)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    low = torch.maximum(a[:, None, :2], b[None, :, :2])
    high = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (high - low).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def _greedy(boxes: Tensor, iou_threshold: float) -> list[int]:
    """Kept rows of score-sorted boxes of one class."""
    overlaps = (box_iou(boxes, boxes) > iou_threshold).numpy()
    suppressed = np.zeros(len(boxes), dtype=bool)
    keep = []
    for i in range(len(boxes)):  # numpy rows: ~1 us per step, where torch ops cost ~10
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlaps[i]
    return keep


def nms(boxes: Tensor, scores: Tensor, classes: Tensor, iou_threshold: float) -> Tensor:
    """Indices of the boxes kept by class-aware greedy NMS, best score first. Each class is
    suppressed on its own (IoU matrices per class, not one over all boxes)."""
    order = torch.argsort(scores, descending=True, stable=True)
    kept = []
    for c in torch.unique(classes[order]).tolist():
        rows = order[classes[order] == c]  # this class, best score first
        kept.append(rows[torch.tensor(_greedy(boxes[rows], iou_threshold), dtype=torch.long)])
    if not kept:
        return order[:0]
    merged = torch.cat(kept)
    return merged[torch.argsort(scores[merged], descending=True, stable=True)]


def postprocess(
    boxes: Tensor,
    scores: Tensor,
    conf_threshold: float = 0.05,
    iou_threshold: float = 0.6,
    pre_nms: int = 1000,
    max_dets: int = 100,
) -> list[Detections]:
    """Dense (B, P, 4) boxes and (B, P, C) scores -> per image thresholded, NMS'd detections."""
    out = []
    for image_boxes, image_scores in zip(boxes, scores):
        flat = image_scores.flatten()
        candidates = torch.nonzero(flat >= conf_threshold).squeeze(1)
        candidates = candidates[torch.argsort(flat[candidates], descending=True)][:pre_nms]
        points, classes = candidates // image_scores.shape[1], candidates % image_scores.shape[1]
        kept_boxes, kept_scores = image_boxes[points], flat[candidates]
        keep = nms(kept_boxes, kept_scores, classes, iou_threshold)[:max_dets]
        out.append(
            Detections(
                kept_boxes[keep].numpy().astype(np.float32),
                kept_scores[keep].numpy().astype(np.float32),
                classes[keep].numpy().astype(np.int64),
            )
        )
    return out


def to_tensor(images: np.ndarray) -> Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [0, 1], the detector's input."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def predict(
    model: Detector, images: np.ndarray, batch_size: int = 64, **thresholds: float
) -> list[Detections]:
    """Detections for (F, S, S, 3) uint8 images at the detector's size (eval mode)."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        boxes, scores = model(to_tensor(images[start : start + batch_size]))
        out.extend(postprocess(boxes, scores, **thresholds))
    return out


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[float, float]]:
    """(H, W, 3) uint8 -> (size, size, 3) uint8 resized (aspect kept, bilinear) and centred
    on grey, with the scale and the (x, y) padding that `unletterbox` undoes."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"image: expected (H, W, 3) uint8, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return canvas, scale, (float(pad_x), float(pad_y))


def unletterbox(
    boxes: np.ndarray, scale: float, pad: tuple[float, float], shape: tuple[int, int]
) -> np.ndarray:
    """Boxes on the letterboxed image -> boxes on the original (H, W) image, clipped to it."""
    offset = np.array([pad[0], pad[1], pad[0], pad[1]], dtype=np.float32)
    out = (boxes - offset) / scale
    limits = np.array([shape[1], shape[0], shape[1], shape[0]], dtype=np.float32)
    return np.clip(out, 0, limits).astype(np.float32)


def detect_any_size(model: Detector, image: np.ndarray, **thresholds: float) -> Detections:
    """Detections on an image of any size: letterbox, detect, map the boxes back."""
    boxed, scale, pad = letterbox(image, model.config.img_size)
    found = predict(model, boxed[None], **thresholds)[0]
    return Detections(
        unletterbox(found.boxes, scale, pad, image.shape[:2]), found.scores, found.classes
    )


def export_onnx(model: Detector, path: Path, exporter: str = "dynamo") -> str:
    """Writes `model` (eval mode, batch 1) to `path` as one self-contained ONNX file (weights
    inside, not in a `.data` file beside it); returns the exporter used:
    "dynamo" (`torch.onnx.export(..., dynamo=True)`, falling back to the legacy exporter if it
    fails) or "torchscript" (`dynamo=False`, asked for directly: it is several times faster)."""
    model.eval()
    size = model.config.img_size
    example = (torch.rand(1, 3, size, size),)
    names = {"input_names": ["images"], "output_names": ["boxes", "scores"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            try:
                torch.onnx.export(
                    model, example, str(path), dynamo=True, external_data=False, **names
                )
                return "dynamo"
            except Exception as error:  # noqa: BLE001 - the legacy exporter is the fallback
                print(f"dynamo ONNX export failed ({type(error).__name__}); using dynamo=False")
        torch.onnx.export(model, example, str(path), dynamo=False, opset_version=17, **names)
        return "torchscript"


def onnx_session(path: Path, threads: int = 1):
    """An onnxruntime CPU session of `path` with `threads` intra-op threads."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _kept_box_diff(ours: Detections, theirs: Detections) -> float:
    """Largest pixel distance from a detection of `ours` to the nearest of `theirs` of the same
    class (inf when the counts differ or a class is missing). Order is not compared: scores
    that tie to within float error may be listed in either order."""
    if len(ours.boxes) != len(theirs.boxes):
        return float("inf")
    worst = 0.0
    for box, c in zip(ours.boxes, ours.classes):
        candidates = theirs.boxes[theirs.classes == c]
        if not len(candidates):
            return float("inf")
        worst = max(worst, float(np.abs(candidates - box).max(axis=1).min()))
    return worst


@torch.no_grad()
def onnx_parity(
    model: Detector, session, images: np.ndarray, tolerance: float = 1e-2, **thresholds: float
) -> dict:
    """Raw-output and post-NMS agreement of torch and onnxruntime on `images`, one at a time:
    the largest absolute differences of dense boxes (pixels) and scores, and whether after
    thresholding and NMS both kept the same boxes (same count, each within `tolerance` pixels
    of one of the same class)."""
    model.eval()
    worst = {"max_box_diff": 0.0, "max_score_diff": 0.0, "max_kept_box_diff": 0.0}
    for image in images:
        x = to_tensor(image[None])
        boxes, scores = model(x)
        ort_boxes, ort_scores = session.run(None, {"images": x.numpy()})
        box_diff = float(np.abs(boxes.numpy() - ort_boxes).max())
        score_diff = float(np.abs(scores.numpy() - ort_scores).max())
        ours = postprocess(boxes, scores, **thresholds)[0]
        theirs = postprocess(
            torch.from_numpy(ort_boxes), torch.from_numpy(ort_scores), **thresholds
        )
        kept_diff = _kept_box_diff(ours, theirs[0])
        for key, value in zip(worst, (box_diff, score_diff, kept_diff)):
            worst[key] = max(worst[key], value)
    same = worst["max_kept_box_diff"] <= tolerance
    return {**worst, "same_detections": same, "tolerance_px": tolerance, "images": len(images)}


@torch.no_grad()
def latency_ms(run, repeats: int = 50, warmup: int = 5) -> dict[str, float]:
    """Median and mean wall milliseconds of `run()` over `repeats` calls after `warmup`."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": float(np.median(times)), "mean_ms": float(np.mean(times))}


def runtime_latency(model: Detector, session, image: np.ndarray, repeats: int = 50) -> dict:
    """Per-image latency (batch 1, forward only, no NMS) of torch and onnxruntime."""
    model.eval()
    x = to_tensor(image[None])
    feed = {"images": x.numpy()}
    return {
        "torch": latency_ms(lambda: model(x), repeats),
        "onnxruntime": latency_ms(lambda: session.run(None, feed), repeats),
    }
