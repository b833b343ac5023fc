"""Detection data from world renders: frames with boxes, the YOLO layout, and COCO json.

Frames come from worlds whose scripted expert is at work (grippers open and closed, objects
pushed, carried and dropped into bowls), snapshotted every 1-5 steps. The labels are the world's
own boxes (`world.annotate.box_arrays`, classes `DETECTION_CLASSES`) with one filter: an object
that the gripper (drawn on top) or another object hides for more than half of its pixels is left
out, since no detector can see it. The visible fraction is the object's pixel count in the
world's instance masks over the pixels its shape would cover inside its (clipped) box.

Two on-disk formats, both the ones users' tools read:

- the YOLO layout that ultralytics reads: `images/{train,val}/NNNNNN.png`,
  `labels/{train,val}/NNNNNN.txt` with one `class cx cy w h` line per box, normalized to [0, 1]
  by the image size, and `data.yaml` with `path`, `train`, `val`, `nc` and `names`;
- COCO json (`images`, `annotations` with `bbox` = [x, y, w, h] in pixels and `area` = w * h,
  `categories` with ids 1..C) for ground truth, and COCO's results format for predictions.

`read_yolo` validates what it reads: a class index outside `names`, a coordinate outside
[0, 1], a line without five numbers, or an image of another size than the rest is one
`InputError` that names the file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from nanovla.errors import InputError, MissingError
from nanovla.io import write_json, write_text
from nanovla.progress import progress
from nanovla.world import DETECTION_CLASSES, make_world
from nanovla.world.scene import MAX_OBJECTS

MIN_VISIBLE = 0.5
"""an object is labelled when at least this fraction of its shape's pixels is visible"""
SPLITS: tuple[str, ...] = ("train", "val")


@dataclass
class DetectionSet:
    """Frames and their boxes: `images` (F, S, S, 3) uint8; per frame `boxes[i]` (K_i, 4)
    float32 pixel (x0, y0, x1, y1) and `classes[i]` (K_i,) int64 indices into `names`."""

    images: np.ndarray
    boxes: list[np.ndarray]
    classes: list[np.ndarray]
    names: tuple[str, ...] = DETECTION_CLASSES

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: slice | list[int]) -> DetectionSet:
        rows = range(len(self))[index] if isinstance(index, slice) else index
        return DetectionSet(
            self.images[list(rows)],
            [self.boxes[i] for i in rows],
            [self.classes[i] for i in rows],
            self.names,
        )


def _visible(notes: dict, image_size: int) -> np.ndarray:
    """(N, K) bool: instances to label (objects at least MIN_VISIBLE visible; bowls, gripper)."""
    boxes, classes, masks = notes["box_array"], notes["box_class"], notes["masks"]
    n, k = classes.shape
    ids = masks.reshape(n, -1).astype(np.int64)
    counts = np.stack([np.bincount(row, minlength=k + 1)[1 : k + 1] for row in ids])  # (N, K)
    box_area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    shape_area = np.where(classes == 3, np.pi / 4, 1.0) * box_area  # balls are discs
    enough = counts >= MIN_VISIBLE * np.maximum(shape_area, 1.0)
    is_object = np.arange(k)[None, :] < MAX_OBJECTS
    return (classes >= 0) & (enough | ~is_object)


def render_detection_set(
    frames: int, seed: int, image_size: int, num_envs: int = 64, show_progress: bool = True
) -> DetectionSet:
    """`frames` expert-driven world frames of side `image_size` with their visible boxes."""
    num_envs = max(1, min(num_envs, frames))
    world = make_world("suite", num_envs=num_envs, image_size=image_size, seed=seed)
    rng = np.random.default_rng(seed)
    images, boxes, classes = [], [], []
    bar = progress(total=frames, desc="render", unit="frame", enabled=show_progress, leave=False)
    while len(boxes) < frames:
        for _ in range(int(rng.integers(1, 6))):  # 1-5 steps between snapshots
            world.step(world.expert_action(noise=0.1))
        notes = world.annotations()
        keep = _visible(notes, image_size)
        images.append(world.render())
        for env in range(num_envs):
            boxes.append(notes["box_array"][env][keep[env]].astype(np.float32))
            classes.append(notes["box_class"][env][keep[env]].astype(np.int64))
        bar.update(num_envs)
    bar.close()
    return DetectionSet(np.concatenate(images)[:frames], boxes[:frames], classes[:frames])


# ----------------------------------------------------------------------------- YOLO layout
def _yaml_text(names: tuple[str, ...]) -> str:
    lines = ["path: .", "train: images/train", "val: images/val", f"nc: {len(names)}", "names:"]
    return "\n".join(lines + [f"  {i}: {name}" for i, name in enumerate(names)]) + "\n"


def write_yolo(root: Path, splits: dict[str, DetectionSet]) -> Path:
    """Writes the YOLO layout under `root` for each split name -> set; returns data.yaml's path.
    Each file is written whole (temporary file + rename; data.yaml last); numbered frames left
    over from an earlier, larger export into the same folders are removed."""
    root = Path(root)
    names = next(iter(splits.values())).names
    for split, data in splits.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        for i in progress(range(len(data)), desc=f"export {split}", unit="image", leave=False):
            stem = f"{i:06d}"
            size = data.images.shape[1:3]
            _save_png(root / "images" / split / f"{stem}.png", data.images[i])
            write_text(root / "labels" / split / f"{stem}.txt", _label_text(data, i, size))
        _remove_stale(root, split, len(data))
    return write_text(root / "data.yaml", _yaml_text(names))


def _remove_stale(root: Path, split: str, count: int) -> None:
    """Deletes numbered frames (NNNNNN.png / .txt) beyond `count` left by a larger export."""
    for folder in (root / "images" / split, root / "labels" / split):
        for path in folder.glob("[0-9][0-9][0-9][0-9][0-9][0-9].*"):
            if path.suffix in (".png", ".txt") and int(path.stem) >= count:
                path.unlink()


def _save_png(path: Path, image: np.ndarray) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    Image.fromarray(image).save(temporary, format="PNG", compress_level=1)
    temporary.replace(path)


def _label_text(data: DetectionSet, i: int, size: tuple[int, int]) -> str:
    height, width = size
    lines = []
    for c, (x0, y0, x1, y1) in zip(data.classes[i].tolist(), data.boxes[i].tolist()):
        cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
        w, h = (x1 - x0) / width, (y1 - y0) / height
        lines.append(f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return "".join(line + "\n" for line in lines)


def read_names(path: Path) -> tuple[str, ...]:
    """The class names of a data.yaml: `names:` as an indented `i: name` mapping, a `- name`
    list or an inline `[a, b]` list (the forms ultralytics writes)."""
    if not path.is_file():
        raise MissingError(f"{path}: file not found (a YOLO export has data.yaml at its root)")
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if not line.startswith("names:"):
            continue
        inline = line[len("names:") :].strip()
        if inline.startswith("["):
            return tuple(n.strip().strip("'\"") for n in inline.strip("[]").split(",") if n.strip())
        names = []
        for entry in lines[number + 1 :]:
            match = re.fullmatch(r"\s+(?:(\d+)\s*:|-)\s*(.+?)\s*", entry)
            if not match:
                break
            names.append(match.group(2).strip("'\""))
        if names:
            return tuple(names)
    raise InputError(f"{path}: no `names:` list of classes")


def _parse_label_file(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes (K,), normalized cx cy w h (K, 4)) of one label file, validated line by line."""
    classes, boxes = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if len(fields) != 5:
            raise InputError(f"{where}: expected `class cx cy w h`, got {line.strip()!r}")
        try:
            c, values = int(fields[0]), [float(v) for v in fields[1:]]
        except ValueError:
            raise InputError(f"{where}: not numbers: {line.strip()!r}") from None
        if not 0 <= c < num_classes:
            raise InputError(f"{where}: class index {c} out of range 0..{num_classes - 1}")
        if not all(0.0 <= v <= 1.0 for v in values):
            raise InputError(f"{where}: coordinates must lie in [0, 1], got {fields[1:]}")
        classes.append(c)
        boxes.append(values)
    return np.array(classes, dtype=np.int64), np.array(boxes, dtype=np.float32).reshape(-1, 4)


def read_yolo(root: Path, split: str) -> DetectionSet:
    """Reads split `split` of a YOLO export back, validating every label line; boxes come back
    in pixels (x0, y0, x1, y1). An image without a label file has no boxes (as in YOLO)."""
    root = Path(root)
    names = read_names(root / "data.yaml")
    image_dir = root / "images" / split
    files = sorted(image_dir.glob("*.png")) if image_dir.is_dir() else []
    if not files:
        raise MissingError(f"{image_dir}: no .png images")
    images, boxes, classes = [], [], []
    for file in files:
        image = np.asarray(Image.open(file).convert("RGB"))
        if images and image.shape != images[0].shape:
            raise InputError(
                f"{file}: image is {image.shape[1]}x{image.shape[0]}, the others "
                f"{images[0].shape[1]}x{images[0].shape[0]}"
            )
        label = root / "labels" / split / f"{file.stem}.txt"
        c, xywh = _parse_label_file(label, len(names)) if label.is_file() else _no_boxes()
        scale = np.array([image.shape[1], image.shape[0]] * 2, dtype=np.float32)
        xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
        images.append(image)
        boxes.append((xyxy * scale).astype(np.float32))
        classes.append(c)
    return DetectionSet(np.stack(images), boxes, classes, names)


def _no_boxes() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(0, dtype=np.int64), np.zeros((0, 4), dtype=np.float32)


# ----------------------------------------------------------------------------- COCO json
def _xywh(box: np.ndarray) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)]


def coco_ground_truth(data: DetectionSet) -> dict:
    """COCO ground truth of `data`: image ids 1..F, category ids 1..C (class index + 1)."""
    height, width = data.images.shape[1:3]
    images = [
        {"id": i + 1, "file_name": f"{i:06d}.png", "width": width, "height": height}
        for i in range(len(data))
    ]
    annotations = []
    for i, (boxes, classes) in enumerate(zip(data.boxes, data.classes)):
        for box, c in zip(boxes, classes.tolist()):
            bbox = _xywh(box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": c + 1,
                    "bbox": bbox,
                    "area": round(bbox[2] * bbox[3], 3),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(data.names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_results(boxes: list[np.ndarray], scores: list[np.ndarray], classes: list[np.ndarray]):
    """COCO results format (a list of {image_id, category_id, bbox, score}) of per-image
    detections (pixel x0 y0 x1 y1 boxes, scores, class indices); image ids are 1-based."""
    results = []
    for i, (image_boxes, image_scores, image_classes) in enumerate(zip(boxes, scores, classes)):
        for box, score, c in zip(image_boxes, image_scores.tolist(), image_classes.tolist()):
            results.append(
                {
                    "image_id": i + 1,
                    "category_id": int(c) + 1,
                    "bbox": _xywh(box),
                    "score": round(float(score), 5),
                }
            )
    return results


def write_coco(path: Path, data: DetectionSet) -> Path:
    """Writes `coco_ground_truth(data)` to `path` atomically."""
    return write_json(path, coco_ground_truth(data))
