"""Detection data and evaluation: YOLO export round trip and its validation, COCO json, our
COCO mAP against pycocotools, NMS on hand cases, letterboxing."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from nanovla.data.detection import (
    DetectionSet,
    coco_ground_truth,
    coco_results,
    read_names,
    read_yolo,
    render_detection_set,
    write_yolo,
)
from nanovla.errors import InputError
from nanovla.labs.detect_eval import evaluate
from nanovla.labs.detect_infer import box_iou, letterbox, nms, postprocess, unletterbox
from nanovla.world import DETECTION_CLASSES


@pytest.fixture(scope="module")
def frames() -> DetectionSet:
    return render_detection_set(12, seed=3, image_size=64, num_envs=6, show_progress=False)


def test_rendered_boxes_are_inside_and_classed(frames):
    assert frames.images.shape == (12, 64, 64, 3) and frames.images.dtype == np.uint8
    for boxes, classes in zip(frames.boxes, frames.classes):
        assert len(boxes) == len(classes) >= 3  # bowls and the gripper are always there
        assert (boxes[:, 2:] > boxes[:, :2]).all() and (boxes >= 0).all() and (boxes <= 64).all()
        assert set(classes.tolist()) <= set(range(len(DETECTION_CLASSES)))
        assert (classes == DETECTION_CLASSES.index("gripper")).sum() == 1


def test_yolo_export_round_trip(frames, tmp_path):
    write_yolo(tmp_path, {"train": frames.subset(slice(0, 8)), "val": frames.subset([8, 9])})
    assert read_names(tmp_path / "data.yaml") == DETECTION_CLASSES
    assert len(list((tmp_path / "labels" / "train").glob("*.txt"))) == 8
    line = (tmp_path / "labels" / "train" / "000000.txt").read_text().splitlines()[0].split()
    assert len(line) == 5 and all(0 <= float(v) <= 1 for v in line[1:])
    back = read_yolo(tmp_path, "train")
    np.testing.assert_array_equal(back.images, frames.images[:8])
    for i in range(8):
        np.testing.assert_array_equal(back.classes[i], frames.classes[i])
        np.testing.assert_allclose(back.boxes[i], frames.boxes[i], atol=1e-3)
    assert len(read_yolo(tmp_path, "val")) == 2
    write_yolo(tmp_path, {"train": frames.subset([0, 1, 2])})  # a smaller export, same place
    assert len(read_yolo(tmp_path, "train")) == 3
    assert len(list((tmp_path / "labels" / "train").glob("*.txt"))) == 3


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("6 0.5 0.5 0.1 0.1", "class index 6 out of range"),
        ("-1 0.5 0.5 0.1 0.1", "class index -1 out of range"),
        ("0 0.5 1.2 0.1 0.1", "coordinates must lie in [0, 1]"),
        ("0 0.5 0.5 0.1", "expected `class cx cy w h`"),
        ("0 0.5 x 0.1 0.1", "not numbers"),
    ],
)
def test_bad_yolo_label_names_file_and_line(frames, tmp_path, line, message):
    write_yolo(tmp_path, {"train": frames.subset([0, 1])})
    label = tmp_path / "labels" / "train" / "000001.txt"
    label.write_text("0 0.5 0.5 0.1 0.1\n" + line + "\n")
    with pytest.raises(InputError) as error:
        read_yolo(tmp_path, "train")
    assert f"{label}:2" in str(error.value) and message in str(error.value)


def test_yolo_image_of_another_size_is_named(frames, tmp_path):
    from PIL import Image

    write_yolo(tmp_path, {"train": frames.subset([0, 1])})
    odd = tmp_path / "images" / "train" / "000001.png"
    Image.fromarray(np.zeros((48, 64, 3), dtype=np.uint8)).save(odd)
    with pytest.raises(InputError, match=r"000001.png: image is 64x48, the others 64x64"):
        read_yolo(tmp_path, "train")


def test_data_yaml_name_forms(tmp_path):
    (tmp_path / "a.yaml").write_text("path: .\nnames: [box, 'ball']\n")
    (tmp_path / "b.yaml").write_text("names:\n  - box\n  - ball\nnc: 2\n")
    assert read_names(tmp_path / "a.yaml") == read_names(tmp_path / "b.yaml") == ("box", "ball")
    (tmp_path / "c.yaml").write_text("nc: 2\n")
    with pytest.raises(InputError, match="c.yaml: no `names:`"):
        read_names(tmp_path / "c.yaml")


def test_coco_json_layout(frames):
    truth = coco_ground_truth(frames.subset([0]))
    first = truth["annotations"][0]
    x0, y0, x1, y1 = frames.boxes[0][0]
    assert first["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=1e-3)
    assert first["category_id"] == frames.classes[0][0] + 1 and first["image_id"] == 1
    assert [c["name"] for c in truth["categories"]] == list(DETECTION_CLASSES)
    results = coco_results([frames.boxes[0]], [np.ones(len(frames.boxes[0]))], [frames.classes[0]])
    assert results[0]["bbox"] == first["bbox"] and results[0]["score"] == 1.0


def _fixed_case(seed: int = 0) -> tuple[dict, list[dict]]:
    """Ground truth on 12 images (3 classes, sizes 4-60 px, one crowd box) and detections: the
    truth jittered, some missed, duplicates, false positives and a wrong class."""
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "width": 100, "height": 100} for i in range(12)]
    gts, dets = [], []
    for image in images:
        for _ in range(rng.integers(0, 6)):
            w, h = rng.uniform(4, 60, 2)
            x, y = rng.uniform(0, 100 - w), rng.uniform(0, 100 - h)
            c = int(rng.integers(1, 4))
            crowd = int(len(gts) == 7)
            gts.append({"id": len(gts) + 1, "image_id": image["id"], "category_id": c,
                        "bbox": [x, y, w, h], "area": w * h, "iscrowd": crowd})  # fmt: skip
            for _ in range(int(rng.integers(0, 3))):  # 0 (missed), 1 or 2 (duplicate) detections
                jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
                box = [x + jitter[0], y + jitter[1], max(1, w + jitter[2]), max(1, h + jitter[3])]
                wrong = rng.random() < 0.1
                dets.append({"image_id": image["id"], "category_id": 1 + c % 3 if wrong else c,
                             "bbox": box, "score": float(rng.random())})  # fmt: skip
        for _ in range(int(rng.integers(0, 3))):  # false positives
            w, h = rng.uniform(4, 40, 2)
            dets.append({"image_id": image["id"], "category_id": int(rng.integers(1, 4)),
                         "bbox": [*rng.uniform(0, 60, 2), w, h], "score": float(rng.random())})  # fmt: skip
    categories = [{"id": c, "name": f"class{c}"} for c in (1, 2, 3)]
    return {"images": images, "annotations": gts, "categories": categories}, dets


@pytest.mark.parametrize("seed", [0, 1])
def test_map_matches_pycocotools(seed):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    truth, dets = _fixed_case(seed)
    areas = {"all": (0.0, 1e10), "small": (0.0, 15.0**2), "medium": (15.0**2, 35.0**2),
             "large": (35.0**2, 1e10)}  # fmt: skip
    ours = evaluate(truth, dets, areas)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {key: list(value) for key, value in truth.items()}
        coco.createIndex()
        found = coco.loadRes([dict(d) for d in dets])
        reference = COCOeval(coco, found, "bbox")
        reference.params.areaRng = list(areas.values())
        reference.params.areaRngLbl = list(areas)
        reference.evaluate()
        reference.accumulate()
        reference.summarize()
    precision = reference.eval["precision"]  # (T, R, K, A, M)

    def mean(values):
        return float(values[values > -1].mean())

    assert ours["map50_95"] == pytest.approx(reference.stats[0], abs=1e-3)
    assert ours["map50"] == pytest.approx(reference.stats[1], abs=1e-3)
    assert ours["map75"] == pytest.approx(reference.stats[2], abs=1e-3)
    for a, area in enumerate(areas):
        expected = mean(precision[:, :, :, a, 2])
        assert ours["per_area"][area]["map50_95"] == pytest.approx(expected, abs=1e-3)
    for k, category in enumerate(truth["categories"]):
        per_class = ours["per_class"][category["name"]]
        assert per_class["ap50_95"] == pytest.approx(mean(precision[:, :, k, 0, 2]), abs=1e-3)
        assert per_class["ap50"] == pytest.approx(mean(precision[0, :, k, 0, 2]), abs=1e-3)
    assert 0.2 < ours["map50_95"] < 0.9  # the case is neither trivial nor hopeless


def test_perfect_detections_score_one(frames):
    truth = coco_ground_truth(frames)
    results = coco_results(frames.boxes, [np.ones(len(b)) for b in frames.boxes], frames.classes)
    scores = evaluate(truth, results)
    assert scores["map50"] == pytest.approx(1.0) and scores["map50_95"] == pytest.approx(1.0)


def test_box_iou_hand_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 7, 0.0, 1.0]]))


def test_nms_hand_cases():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # 0: best
            [1.0, 0.0, 11.0, 10.0],  # 1: IoU 0.82 with 0 -> suppressed
            [6.0, 0.0, 16.0, 10.0],  # 2: IoU 0.25 with 0, 0.33 with 1 -> kept
            [0.0, 0.0, 10.0, 10.0],  # 3: same box as 0, other class -> kept
            [50.0, 50.0, 60.0, 60.0],  # 4: alone -> kept
        ]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.1])
    classes = torch.tensor([0, 0, 0, 1, 0])
    assert nms(boxes, scores, classes, 0.5).tolist() == [0, 2, 3, 4]
    # A chain: 0 suppresses 1; 2 only overlaps 1 strongly, so it survives.
    chain = torch.tensor([[0.0, 0, 10, 10], [3.0, 0, 13, 10], [6.0, 0, 16, 10]])
    same = torch.zeros(3, dtype=torch.long)
    assert nms(chain, torch.tensor([0.9, 0.8, 0.7]), same, 0.4).tolist() == [0, 2]
    assert nms(boxes[:0], scores[:0], classes[:0], 0.5).tolist() == []


def test_postprocess_threshold_and_max_dets():
    boxes = torch.tensor([[[0.0, 0, 10, 10], [20.0, 20, 30, 30], [0.0, 0, 10, 10]]])
    scores = torch.tensor([[[0.9, 0.0], [0.04, 0.5], [0.85, 0.2]]])
    found = postprocess(boxes, scores, conf_threshold=0.05, iou_threshold=0.5)[0]
    assert found.classes.tolist() == [0, 1, 1] and found.scores.tolist() == pytest.approx(
        [0.9, 0.5, 0.2]
    )
    assert len(postprocess(boxes, scores, conf_threshold=0.05, max_dets=1)[0].boxes) == 1


def test_letterbox_maps_boxes_back():
    image = np.zeros((60, 120, 3), dtype=np.uint8)
    image[20:40, 30:50] = 255
    boxed, scale, pad = letterbox(image, 64)
    assert boxed.shape == (64, 64, 3) and scale == pytest.approx(64 / 120)
    assert pad == (0.0, 16.0) and (boxed[:16] == 114).all()
    on_box = np.array([[30 * scale, 20 * scale + 16, 50 * scale, 40 * scale + 16]], np.float32)
    np.testing.assert_allclose(unletterbox(on_box, scale, pad, (60, 120)), [[30, 20, 50, 40]])
    with pytest.raises(InputError, match="image"):
        letterbox(image[..., 0], 64)
