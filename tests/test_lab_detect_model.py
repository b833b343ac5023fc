"""The detector: input checks, FCOS assignment, a loss that trains, ONNX parity on a tiny model,
and subprocess smoke runs of `nanovla lab detect` (tiny settings)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_run import nanovla

from nanovla.errors import InputError
from nanovla.models.vision.detector import Detector, DetectorConfig
from nanovla.models.vision.detector_loss import assign, box_levels, detection_loss, giou, pad_boxes

TINY = DetectorConfig(num_classes=3, img_size=32, widths=(4, 8, 8, 8), fpn_width=8, head_convs=1)


def test_output_shapes_and_wrong_size():
    model = Detector(TINY).eval()
    boxes, scores = model(torch.rand(2, 3, 32, 32))
    points = 8 * 8 + 4 * 4 + 2 * 2  # strides 4, 8, 16 on 32 x 32
    assert boxes.shape == (2, points, 4) and scores.shape == (2, points, 3)
    assert ((scores >= 0) & (scores <= 1)).all() and (boxes[..., 2:] >= boxes[..., :2]).all()
    with pytest.raises(InputError, match=r"\(2, 3, 48, 48\).*letterbox"):
        model(torch.rand(2, 3, 48, 48))
    with pytest.raises(InputError, match="img_size"):
        Detector(DetectorConfig(img_size=40))


def test_assignment_levels_and_positives():
    model = Detector(DetectorConfig(num_classes=3, img_size=64, widths=(4, 8, 8, 8), fpn_width=8))
    truth = [torch.tensor([[10.0, 10, 18, 18], [30.0, 30, 44, 44], [2.0, 40, 26, 64]])]
    labels = [torch.tensor([0, 1, 2])]
    bounds = (12.0, 20.0)
    assert box_levels(truth[0], bounds).tolist() == [0, 1, 2]  # sides 8, 14, 24
    padded, padded_labels = pad_boxes(truth, labels)
    targets = assign(model, padded, padded_labels, bounds)
    for k, box in enumerate(truth[0]):
        mine = targets.positive[0] & (targets.labels[0] == k)
        assert mine.any(), f"box {k} has no positive"
        assert (model.point_levels[mine] == k).all()  # on its own level only
        x, y = model.points[mine].T
        assert ((x > box[0]) & (x < box[2]) & (y > box[1]) & (y < box[3])).all()
    assert targets.positive.sum() < 20  # center sampling keeps it to a few locations
    # A 3-pixel box between the stride-4 centres 6 and 10 still gets the nearest location.
    tiny = assign(model, torch.tensor([[[6.5, 6.5, 9.5, 9.5]]]), torch.tensor([[0]]), bounds)
    assert tiny.positive.sum() == 1


def test_giou_hand_values():
    a = torch.tensor([[0.0, 0, 2, 2], [0.0, 0, 1, 1]])
    b = torch.tensor([[0.0, 0, 2, 2], [2.0, 0, 3, 1]])
    torch.testing.assert_close(giou(a, b), torch.tensor([1.0, -1 / 3]))


def test_loss_trains_on_a_few_images():
    torch.manual_seed(0)
    model = Detector(TINY)
    images = torch.rand(4, 3, 32, 32) * 0.1
    boxes, classes = [], []
    for i in range(4):
        x, y = 4 + 4 * i, 6 + 3 * i
        images[i, :, y : y + 8, x : x + 8] = 1.0
        boxes.append(torch.tensor([[x, y, x + 8, y + 8]], dtype=torch.float32))
        classes.append(torch.tensor([i % 3]))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss, parts = detection_loss(model, images, boxes, classes, (12.0, 20.0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert set(parts) == {"cls", "box", "ctr"}
    assert losses[-1] < 0.6 * losses[0]


def test_onnx_parity_on_a_tiny_model(tmp_path):
    pytest.importorskip("onnxruntime")
    from nanovla.labs.detect_infer import export_onnx, onnx_parity, onnx_session

    torch.manual_seed(0)
    model = Detector(TINY).eval()
    for head in model.heads:  # spread the scores: an untrained head ties them to ~1e-6
        torch.nn.init.normal_(head.cls_out.weight, std=2.0)
    exporter = export_onnx(model, tmp_path / "tiny.onnx")
    assert exporter == "dynamo"  # torch's default exporter works for this model
    session = onnx_session(tmp_path / "tiny.onnx")
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    parity = onnx_parity(model, session, images, conf_threshold=0.3, iou_threshold=0.6)
    assert parity["same_detections"] and parity["images"] == 3
    assert parity["max_box_diff"] < 1e-3 and parity["max_score_diff"] < 1e-4


def test_lab_detect_smoke_run(tmp_path):
    result = nanovla(
        "lab", "detect", "--out", "run", "--train-frames", "16", "--test-frames", "8",
        "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--widths", "4", "8", "8",
        "8", "--fpn-width", "8", "--num-envs", "8", "--latency-repeats", "2", "--threads", "1",
        "--onnx-exporter", "torchscript", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"map50", "map50_95", "per_class", "per_area", "train_seconds"} <= set(metrics)
    assert set(metrics["per_class"]) >= {"small_box", "bowl"} and "small" in metrics["per_area"]
    # Raw outputs only: an untrained head ties its scores, so the post-NMS order is arbitrary.
    assert metrics["onnx"]["parity"]["max_box_diff"] < 1e-2
    assert metrics["onnx"]["exporter"] == "torchscript"
    truth = json.loads((run / "annotations.json").read_text())
    predictions = json.loads((run / "predictions.json").read_text())
    assert len(truth["images"]) == 8 and {"images", "annotations", "categories"} <= set(truth)
    assert all({"image_id", "category_id", "bbox", "score"} <= set(p) for p in predictions)
    for name in ("model.onnx", "pr_curve.png", "predictions.png", "curves.png"):
        assert (run / name).stat().st_size > 0
    assert (run / "data" / "data.yaml").is_file() and "mAP50" in result.stdout


def test_lab_detect_export_and_bad_data(tmp_path):
    result = nanovla(
        "lab", "detect", "--export", "yolo", "yolo", "--train-frames", "4", "--test-frames",
        "2", "--image-size", "32", "--num-envs", "2", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    root = tmp_path / "yolo"
    assert len(list((root / "images" / "train").glob("*.png"))) == 4
    assert len(list((root / "labels" / "val").glob("*.txt"))) == 2
    assert "names:" in (root / "data.yaml").read_text()
    label = root / "labels" / "val" / "000001.txt"
    label.write_text(label.read_text() + "9 0.5 0.5 0.1 0.1\n")
    bad = nanovla("lab", "detect", "--data", "yolo", "--out", "run", cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert f"{label.relative_to(tmp_path)}:" in bad.stderr and "class index 9" in bad.stderr


def test_detect_any_size_letterboxes():
    from nanovla.labs.detect_infer import detect_any_size

    torch.manual_seed(0)
    model = Detector(TINY).eval()
    image = np.random.default_rng(1).integers(0, 256, (50, 80, 3), dtype=np.uint8)
    found = detect_any_size(model, image, conf_threshold=0.0)
    assert len(found.boxes) > 0 and found.boxes.shape[1] == 4
    assert (found.boxes[:, [0, 2]] <= 80).all() and (found.boxes[:, [1, 3]] <= 50).all()
