"""COCO-style box evaluation, written by us: mAP50, mAP50-95, per class and per object size.

This is the algorithm of pycocotools' `COCOeval` (iouType "bbox"), step by step:

1. per image and class, detections sorted by score (stable) and cut to `max_dets`; the IoU of
   every detection with every ground-truth box (`iscrowd` boxes use the detection's area as the
   union, as COCO does);
2. greedy matching at each IoU threshold 0.50:0.05:0.95: each detection, best score first,
   takes the unmatched ground truth with the highest IoU >= the threshold, preferring boxes that
   are not ignored; ground truth outside the area range (or crowd) is "ignored", and so is a
   detection matched to it or, unmatched, whose own area is outside the range;
3. per class, area range and threshold, all images' detections ranked by score: cumulative true
   and false positives give precision and recall; precision is made monotone (the running max
   from the right) and read at 101 recall points 0:0.01:1 (0 past the last recall reached);
4. AP = the mean of those 101 values; mAP50 at IoU 0.5, mAP50-95 over all ten thresholds;
   classes (or areas) without any non-ignored ground truth are left out of the means.

`evaluate(ground_truth, results)` takes COCO json dicts (ground truth as `coco_ground_truth`
writes it, results in COCO's results format) so it can be checked against pycocotools on the
very same input (tests/test_lab_detect.py: within 1e-3). `area_ranges` default to COCO's
(32^2 and 96^2 pixels); a caller with small images passes its own.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
COCO_AREAS: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e10),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e10),
}


def box_iou_xywh(dets: np.ndarray, gts: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """(D, G) IoU of [x, y, w, h] boxes; for crowd ground truth the union is the det's area."""
    d0, g0 = dets[:, None, :2], gts[None, :, :2]
    d1, g1 = d0 + dets[:, None, 2:], g0 + gts[None, :, 2:]
    inter = np.clip(np.minimum(d1, g1) - np.maximum(d0, g0), 0, None).prod(-1)
    det_area, gt_area = dets[:, 2] * dets[:, 3], gts[:, 2] * gts[:, 3]
    union = np.where(
        crowd[None, :], det_area[:, None], det_area[:, None] + gt_area[None, :] - inter
    )
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class ImageEval:
    """One (image, class, area range) after matching: scores (D,), matched (T, D), ignored
    detections (T, D), and the count of non-ignored ground truth."""

    scores: np.ndarray
    matched: np.ndarray
    det_ignored: np.ndarray
    num_gt: int


def _match(gts: list[dict], dets: list[dict], area: tuple[float, float], max_dets: int):
    """COCOeval.evaluateImg for one image and class; None when neither side has a box."""
    if not gts and not dets:
        return None
    gt_area = np.array([g["area"] for g in gts], dtype=np.float64)
    crowd = np.array([bool(g.get("iscrowd", 0)) for g in gts], dtype=bool)
    gt_ignore = crowd | (gt_area < area[0]) | (gt_area > area[1])
    order = np.argsort(gt_ignore, kind="mergesort")
    gt_ignore, crowd = gt_ignore[order], crowd[order]
    gt_boxes = np.array([gts[i]["bbox"] for i in order], dtype=np.float64).reshape(-1, 4)
    det_order = np.argsort([-d["score"] for d in dets], kind="mergesort")[:max_dets]
    det_boxes = np.array([dets[i]["bbox"] for i in det_order], dtype=np.float64).reshape(-1, 4)
    scores = np.array([dets[i]["score"] for i in det_order], dtype=np.float64)
    ious = box_iou_xywh(det_boxes, gt_boxes, crowd)
    t_count, d_count = len(IOU_THRESHOLDS), len(det_order)
    matched = np.zeros((t_count, d_count), dtype=bool)
    det_ignored = np.zeros((t_count, d_count), dtype=bool)
    for t, threshold in enumerate(IOU_THRESHOLDS):
        taken = np.zeros(len(gt_boxes), dtype=bool)
        for d in range(d_count):
            best, m = min(threshold, 1 - 1e-10), -1
            for g in range(len(gt_boxes)):
                if taken[g] and not crowd[g]:
                    continue
                if m > -1 and not gt_ignore[m] and gt_ignore[g]:
                    break  # ground truth is sorted: only ignored boxes are left
                if ious[d, g] < best:
                    continue
                best, m = ious[d, g], g
            if m == -1:
                continue
            det_ignored[t, d], matched[t, d], taken[m] = gt_ignore[m], True, True
    det_area = det_boxes[:, 2] * det_boxes[:, 3]
    outside = (det_area < area[0]) | (det_area > area[1])
    det_ignored |= ~matched & outside[None, :]
    return ImageEval(scores, matched, det_ignored, int((~gt_ignore).sum()))


def _precision_at_recalls(evals: list[ImageEval], max_dets: int) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval.accumulate for one class and area: precision (T, R) (-1 without ground truth)
    and recall (T,)."""
    t_count = len(IOU_THRESHOLDS)
    precision = -np.ones((t_count, len(RECALL_POINTS)))
    recall = -np.ones(t_count)
    num_gt = sum(e.num_gt for e in evals)
    if num_gt == 0:
        return precision, recall
    scores = np.concatenate([e.scores[:max_dets] for e in evals])
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([e.matched[:, :max_dets] for e in evals], axis=1)[:, order]
    ignored = np.concatenate([e.det_ignored[:, :max_dets] for e in evals], axis=1)[:, order]
    tps = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
    fps = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
    for t in range(t_count):
        tp, fp = tps[t], fps[t]
        rc = tp / num_gt
        pr = tp / (fp + tp + np.spacing(1))
        recall[t] = rc[-1] if len(tp) else 0.0
        pr = np.maximum.accumulate(pr[::-1])[::-1] if len(pr) else pr  # monotone from the right
        at = np.searchsorted(rc, RECALL_POINTS, side="left")
        values = np.zeros(len(RECALL_POINTS))
        valid = at < len(pr)
        values[valid] = pr[at[valid]]
        precision[t] = values
    return precision, recall


def _group(ground_truth: dict, results: list[dict]) -> tuple[dict, dict]:
    gts, dets = defaultdict(list), defaultdict(list)
    for g in ground_truth["annotations"]:
        gts[g["image_id"], g["category_id"]].append(g)
    for d in results:
        dets[d["image_id"], d["category_id"]].append(d)
    return gts, dets


def evaluate(
    ground_truth: dict,
    results: list[dict],
    area_ranges: dict[str, tuple[float, float]] | None = None,
    max_dets: int = 100,
) -> dict:
    """COCO box metrics: `map50`, `map50_95`, `per_class` {name: {ap50, ap50_95, ap75}},
    `per_area` {area: {map50, map50_95}} and `precision` (T, R, C) at area "all" (-1 where a
    class has no ground truth), for a ground truth dict and a results list."""
    area_ranges = area_ranges or COCO_AREAS
    image_ids = sorted(image["id"] for image in ground_truth["images"])
    categories = sorted(ground_truth["categories"], key=lambda c: c["id"])
    gts, dets = _group(ground_truth, results)
    precision = {}
    for area_name, area in area_ranges.items():
        for category in categories:
            evals = [
                _match(gts[i, category["id"]], dets[i, category["id"]], area, max_dets)
                for i in image_ids
            ]
            evals = [e for e in evals if e is not None]
            precision[area_name, category["id"]] = _precision_at_recalls(evals, max_dets)[0]
    return _summarize(precision, categories, area_ranges)


def _mean(values: np.ndarray) -> float:
    kept = values[values > -1]
    return float(kept.mean()) if kept.size else -1.0


def _summarize(precision: dict, categories: list[dict], area_ranges: dict) -> dict:
    stacked = {
        area: np.stack([precision[area, c["id"]] for c in categories], axis=-1)  # (T, R, C)
        for area in area_ranges
    }
    full = stacked["all"] if "all" in stacked else next(iter(stacked.values()))
    per_class = {
        c["name"]: {
            "ap50": _mean(full[0, :, k]),
            "ap75": _mean(full[5, :, k]),
            "ap50_95": _mean(full[:, :, k]),
        }
        for k, c in enumerate(categories)
    }
    per_area = {
        area: {"map50": _mean(values[0]), "map50_95": _mean(values)}
        for area, values in stacked.items()
    }
    return {
        "map50": _mean(full[0]),
        "map75": _mean(full[5]),
        "map50_95": _mean(full),
        "per_class": per_class,
        "per_area": per_area,
        "precision": full,
    }
