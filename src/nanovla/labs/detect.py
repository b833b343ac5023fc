"""`nanovla lab detect`: the seed's "logistics box detector" on world renders, end to end.

1. Data: expert-driven world frames at 128x128 (at the policy's 64x64 a small box is 4 pixels
   wide and a one-pixel error costs IoU 0.4, so mAP50-95 would measure the grid, not the
   detector; at 128 it is 8 pixels) with the world's boxes (small/medium/large box, ball, bowl,
   gripper), exported in the YOLO layout (`images/`, `labels/`, `data.yaml`) and read back with
   validation; the detector trains on what it read. Training frames come from worlds seeded
   `--seed`, the evaluation ("val") frames from seed + 10000: held-out scenes.
2. Model: `models/vision/detector.py`, FCOS-style anchor-free with a YOLOX decoupled head on an
   FPN (P2-P4); loss in `detector_loss.py`. AdamW, one-cycle schedule, random flips.
3. Evaluation (`detect_eval.py`, our COCOeval): mAP50, mAP50-95 and AP per class, and per
   object size with size ranges for this image size (COCO's 32/96 pixel bounds are for
   ~640 px images and would put every object here in "small"): small < 10 px, medium 10-16 px,
   large > 16 px (square-root of the box area, at 128 px; scaled with `--image-size`).
4. Deployment (`detect_infer.py`): ONNX export, onnxruntime parity (raw outputs and boxes
   after NMS) and per-image latency of both runtimes, batch 1, one thread.

Writes into `--out`: metrics.json, annotations.json (COCO ground truth of the evaluation set),
predictions.json (COCO results), model.onnx, model/ (config.json + model.safetensors),
pr_curve.png, predictions.png, curves.png, and data/ (the YOLO export it trained on).
`--export yolo DIR` (or `coco DIR`) only writes the dataset and stops; `--data DIR` trains on
an existing YOLO export instead of fresh renders (other image sizes are letterboxed).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from nanovla.data.detection import (
    DetectionSet,
    coco_ground_truth,
    coco_results,
    read_yolo,
    render_detection_set,
    write_coco,
    write_yolo,
)
from nanovla.errors import InputError
from nanovla.io import write_json, write_text
from nanovla.labs.common import LabConfig, check_positive, plot_curves, setup, write_metrics
from nanovla.labs.detect_eval import evaluate
from nanovla.labs.detect_infer import (
    export_onnx,
    letterbox,
    onnx_parity,
    onnx_session,
    predict,
    runtime_latency,
    to_tensor,
)
from nanovla.labs.detect_report import plot_pr_curves, plot_predictions
from nanovla.models.vision.detector import Detector, DetectorConfig
from nanovla.models.vision.detector_loss import detection_loss
from nanovla.progress import progress

TEST_SEED_OFFSET = 10_000
SIZE_BOUNDS_128 = (10.0, 16.0)
"""object-size buckets (square root of box area, pixels at 128x128): small, medium, large"""


@dataclass
class DetectConfig(LabConfig):
    """Train an anchor-free detector (FCOS with a YOLOX decoupled head) on world renders in the
    YOLO layout; report COCO mAP50 / mAP50-95 per class and size on held-out scenes, export
    ONNX, check onnxruntime parity and time both runtimes."""

    out: Path = Path("runs/lab-detect")
    """directory for metrics.json, predictions.json, annotations.json, model.onnx and PNGs"""
    export: tuple[Literal["yolo", "coco"], Path] | None = None
    """only write the dataset and stop: `--export yolo DIR` (images/, labels/, data.yaml) or
    `--export coco DIR` (the same, plus train.json and val.json in COCO format)"""
    data: Path | None = None
    """train and evaluate on this YOLO export (splits train and val) instead of fresh renders"""
    train_frames: int = 2048
    """training frames (from worlds seeded --seed)"""
    test_frames: int = 512
    """evaluation frames (worlds seeded --seed + 10000: held-out scenes)"""
    image_size: int = 128
    """detector input side in pixels (a multiple of 16, >= 32)"""
    epochs: int = 8
    """passes over the training frames"""
    batch_size: int = 32
    """frames per optimizer step"""
    lr: float = 3e-3
    """peak AdamW learning rate (one-cycle: 10% warm-up, cosine decay)"""
    weight_decay: float = 1e-4
    """AdamW weight decay"""
    widths: tuple[int, ...] = (16, 24, 48, 64)
    """backbone channels at strides 2, 4, 8, 16"""
    fpn_width: int = 32
    """channels of the pyramid levels and heads"""
    level_bounds: tuple[float, float] = (12.0, 20.0)
    """longest box side (pixels at 128x128, scaled with --image-size) up to which a box is
    assigned to P2, then P3; larger boxes go to P4"""
    conf_threshold: float = 0.1
    """lowest score kept for evaluation; low, so the PR curve is complete (the score is
    sqrt(class * centerness) and centerness is trained only at positives, so background sits
    near 0.05: on the default run 0.05 and 0.1 gave the same mAP, 0.1 at 42 instead of 100
    detections per image)"""
    iou_threshold: float = 0.6
    """NMS IoU threshold"""
    show_threshold: float = 0.3
    """lowest score drawn in predictions.png"""
    num_envs: int = 64
    """worlds stepped together to render frames"""
    latency_repeats: int = 50
    """timed single-image forwards per runtime"""
    onnx_exporter: Literal["dynamo", "torchscript"] = "dynamo"
    """`torch.onnx.export` path: the dynamo exporter (torch's default; falls back to the legacy
    one if it fails) or the legacy TorchScript exporter (`dynamo=False`, faster to export)"""


def _render_splits(config: DetectConfig) -> dict[str, DetectionSet]:
    size = config.image_size
    train = render_detection_set(config.train_frames, config.seed, size, config.num_envs)
    val = render_detection_set(
        config.test_frames, config.seed + TEST_SEED_OFFSET, size, config.num_envs
    )
    return {"train": train, "val": val}


def export_dataset(config: DetectConfig) -> Path:
    """`--export FORMAT DIR`: renders the splits and writes them; returns DIR."""
    fmt, root = config.export
    splits = _render_splits(config)
    if fmt == "yolo":
        path = write_yolo(root, splits)
    else:
        write_yolo(root, splits)  # the same images/ folders; labels as COCO json per split
        for split, data in splits.items():
            path = write_coco(root / f"{split}.json", data)
    print(
        f"wrote {fmt} export of {sum(len(d) for d in splits.values())} frames to {root} ({path.name})"
    )
    return root


def fit_size(data: DetectionSet, size: int) -> DetectionSet:
    """Letterboxes every image of `data` to size x size (boxes moved with them) if needed."""
    if data.images.shape[1:3] == (size, size):
        return data
    images, boxes = [], []
    for image, image_boxes in zip(data.images, data.boxes):
        boxed, scale, (pad_x, pad_y) = letterbox(image, size)
        images.append(boxed)
        boxes.append(image_boxes * scale + np.array([pad_x, pad_y] * 2, dtype=np.float32))
    return DetectionSet(np.stack(images), boxes, data.classes, data.names)


def train(
    config: DetectConfig, data: DetectionSet
) -> tuple[Detector, dict[str, list[float]], float]:
    """Trains the detector on `data`; returns it, per-epoch mean losses and the wall seconds."""
    model = Detector(
        DetectorConfig(
            num_classes=len(data.names),
            img_size=config.image_size,
            widths=tuple(config.widths),
            fpn_width=config.fpn_width,
            strides=tuple(2 ** (i + 1) for i in range(len(config.widths)))[-3:],
        )
    )
    bounds = tuple(b * config.image_size / 128 for b in config.level_bounds)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    per_epoch = max(1, len(data) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, config.lr, total_steps=config.epochs * per_epoch, pct_start=0.1
    )
    images = to_tensor(data.images)
    boxes = [torch.from_numpy(b) for b in data.boxes]
    classes = [torch.from_numpy(c) for c in data.classes]
    generator = torch.Generator().manual_seed(config.seed)
    history: dict[str, list[float]] = {"total": [], "cls": [], "box": [], "ctr": []}
    start = time.perf_counter()
    for _ in progress(range(config.epochs), desc="detect", unit="epoch"):
        model.train()
        sums = dict.fromkeys(history, 0.0)
        order = torch.randperm(len(data), generator=generator)[: per_epoch * config.batch_size]
        for index in order.split(config.batch_size):
            batch, batch_boxes = _flip(images[index], [boxes[i] for i in index], generator)
            loss, parts = detection_loss(
                model, batch, batch_boxes, [classes[i] for i in index], bounds
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            for key, value in {"total": loss.item(), **parts}.items():
                sums[key] += value / per_epoch
        for key in history:
            history[key].append(sums[key])
    return model, history, time.perf_counter() - start


def _flip(images: torch.Tensor, boxes: list[torch.Tensor], generator: torch.Generator):
    """Random horizontal and vertical flips per batch (the table has no up or left)."""
    size = images.shape[-1]
    flip_x, flip_y = (torch.rand(2, generator=generator) < 0.5).tolist()
    if flip_x:
        images = images.flip(-1)
        boxes = [torch.stack([size - b[:, 2], b[:, 1], size - b[:, 0], b[:, 3]], 1) for b in boxes]
    if flip_y:
        images = images.flip(-2)
        boxes = [torch.stack([b[:, 0], size - b[:, 3], b[:, 2], size - b[:, 1]], 1) for b in boxes]
    return images, boxes


def size_ranges(image_size: int) -> dict[str, tuple[float, float]]:
    """Area ranges of the size buckets (all, small, medium, large) at this image size."""
    small, medium = (b * image_size / 128 for b in SIZE_BOUNDS_128)
    return {
        "all": (0.0, 1e10),
        "small": (0.0, small**2),
        "medium": (small**2, medium**2),
        "large": (medium**2, 1e10),
    }


def _check(config: DetectConfig) -> None:
    check_positive(
        train_frames=config.train_frames,
        test_frames=config.test_frames,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        fpn_width=config.fpn_width,
        num_envs=config.num_envs,
        latency_repeats=config.latency_repeats,
    )
    if config.image_size < 32 or config.image_size % 16:
        raise InputError(
            f"--image-size: must be a multiple of 16 and >= 32, got {config.image_size}"
        )
    if len(config.widths) < 4:
        raise InputError(f"--widths: need at least 4 stage widths, got {config.widths}")
    if not 0 <= config.conf_threshold < 1 or not 0 < config.iou_threshold <= 1:
        raise InputError("--conf-threshold must be in [0, 1) and --iou-threshold in (0, 1]")


def save_detector(directory: Path, model: Detector) -> None:
    """config.json + model.safetensors in `directory`."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(directory / ".model.safetensors.tmp"))
    (directory / ".model.safetensors.tmp").replace(directory / "model.safetensors")
    write_json(directory / "config.json", model.config.to_dict())


def load_detector(directory: Path) -> Detector:
    """A Detector saved by `save_detector` (eval mode)."""
    from safetensors.torch import load_file

    from nanovla.io import read_json_object

    fields = read_json_object(directory / "config.json")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    model = Detector(DetectorConfig(**fields))
    model.load_state_dict(load_file(str(directory / "model.safetensors")))
    return model.eval()


def _load_splits(config: DetectConfig, out: Path) -> tuple[DetectionSet, DetectionSet]:
    """The training and evaluation sets as read back from a YOLO export."""
    root = config.data
    if root is None:
        root = out / "data"
        write_yolo(root, _render_splits(config))
    train_set, val_set = read_yolo(root, "train"), read_yolo(root, "val")
    return fit_size(train_set, config.image_size), fit_size(val_set, config.image_size)


def _deploy(config: DetectConfig, out: Path, model: Detector, val: DetectionSet) -> dict:
    exporter = export_onnx(model, out / "model.onnx", config.onnx_exporter)
    session = onnx_session(out / "model.onnx")
    thresholds = {"conf_threshold": config.conf_threshold, "iou_threshold": config.iou_threshold}
    parity = onnx_parity(model, session, val.images[:32], **thresholds)
    latency = runtime_latency(model, session, val.images[0], config.latency_repeats)
    return {"exporter": exporter, "parity": parity, "latency": latency}


def run(config: DetectConfig) -> dict[str, object]:
    """The whole lab (or only the export, with --export); prints the figures it writes."""
    _check(config)
    if config.export is not None:
        setup(config)
        export_dataset(config)
        return {}
    out = setup(config)
    train_set, val_set = _load_splits(config, out)
    model, history, train_seconds = train(config, train_set)
    thresholds = {"conf_threshold": config.conf_threshold, "iou_threshold": config.iou_threshold}
    detections = predict(model, val_set.images, **thresholds)
    ground_truth = coco_ground_truth(val_set)
    results = coco_results(*zip(*[(d.boxes, d.scores, d.classes) for d in detections]))
    scores = evaluate(ground_truth, results, size_ranges(config.image_size))
    write_json(out / "annotations.json", ground_truth)
    write_text(out / "predictions.json", json.dumps(results) + "\n")
    save_detector(out / "model", model)
    deploy = _deploy(config, out, model, val_set)
    _report(config, out, val_set, detections, scores, history)
    metrics = {
        **{k: v for k, v in scores.items() if k != "precision"},
        "classes": list(val_set.names),
        "size_ranges": size_ranges(config.image_size),
        "num_train": len(train_set),
        "num_eval": len(val_set),
        "num_eval_boxes": len(ground_truth["annotations"]),
        "train_seconds": train_seconds,
        "train_loss": history,
        "onnx": deploy,
        "detector": asdict(model.config),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    write_metrics(out, metrics, config)
    _print(metrics)
    return metrics


def _report(config, out, val_set, detections, scores, history) -> None:
    plot_pr_curves(out / "pr_curve.png", scores["precision"], val_set.names)
    shown = min(8, len(val_set))
    plot_predictions(
        out / "predictions.png",
        val_set.images[:shown],
        val_set.boxes[:shown],
        detections[:shown],
        val_set.names,
        config.show_threshold,
    )
    plot_curves(out / "curves.png", {"training loss": history})


def _print(metrics: dict) -> None:
    for name, values in metrics["per_class"].items():
        print(f"AP {name:<11} AP50 {values['ap50']:.3f}  AP50-95 {values['ap50_95']:.3f}")
    for name, values in metrics["per_area"].items():
        print(f"size {name:<7} mAP50 {values['map50']:.3f}  mAP50-95 {values['map50_95']:.3f}")
    onnx = metrics["onnx"]
    parity, latency = onnx["parity"], onnx["latency"]
    print(
        f"mAP50 {metrics['map50']:.3f}  mAP50-95 {metrics['map50_95']:.3f} on "
        f"{metrics['num_eval']} held-out frames ({metrics['num_eval_boxes']} boxes); "
        f"training {metrics['train_seconds']:.0f} s"
    )
    print(
        f"ONNX ({onnx['exporter']} exporter): same detections {parity['same_detections']}, "
        f"max box diff {parity['max_box_diff']:.2e} px, max score diff "
        f"{parity['max_score_diff']:.2e}; latency per image torch "
        f"{latency['torch']['median_ms']:.2f} ms, onnxruntime "
        f"{latency['onnxruntime']['median_ms']:.2f} ms (median, batch 1)"
    )
