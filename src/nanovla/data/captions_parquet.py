"""A caption set (`data/captions.CaptionSet`) written once as parquet and read back.

LeRobot-like conventions: an ``image`` struct column of embedded PNGs, one string column per
style and language such as ``caption.scene.en``, ``label.*`` attribute columns, ``reference``
and ``relation``, and ``meta/info.json``; written to a staging directory and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nanovla.data.captions import LANGUAGES, STYLES, CaptionSet
from nanovla.data.images import IMAGE_STRUCT, decode_image, encode_png
from nanovla.errors import ExistsError, InputError, MissingError

INFO_NAME = "meta/info.json"
DATA_NAME = "data/chunk-000/file-000.parquet"


def write_captions(root: str | os.PathLike, captions: CaptionSet, overwrite: bool = False) -> Path:
    """Writes `captions` once under `root` (parquet + meta/info.json), atomically: a staging
    directory beside `root` is renamed into place. An existing `root` -> ExistsError unless
    `overwrite`."""
    root = Path(root)
    if root.exists() and not overwrite:
        raise ExistsError(f"{root}: exists already; pass overwrite=True to replace it")
    staging = root.with_name(f".{root.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "meta").mkdir(parents=True)
    (staging / DATA_NAME).parent.mkdir(parents=True)
    columns: dict[str, pa.Array] = {
        "index": pa.array(np.arange(len(captions)), pa.int64()),
        "image": pa.array(
            [{"bytes": encode_png(frame), "path": None} for frame in captions.images], IMAGE_STRUCT
        ),
    }
    for style in STYLES:
        for lang in LANGUAGES:
            columns[f"caption.{style}.{lang}"] = pa.array(
                captions.captions[style][lang], pa.string()
            )
    for key, values in captions.labels.items():
        columns[f"label.{key}"] = pa.array(np.asarray(values, dtype=np.int64))
    columns["reference"] = pa.array(captions.reference.astype(np.int64))
    columns["relation"] = pa.array(captions.relation.astype(np.int64))
    pq.write_table(pa.table(columns), staging / DATA_NAME)
    info = {
        "codebase": "nanovla.captions",
        "total_frames": len(captions),
        "split": captions.split,
        "templates": captions.templates,
        "image_shape": list(captions.images.shape[1:]),
        "features": sorted(columns),
        "data_path": DATA_NAME,
    }
    (staging / INFO_NAME).write_text(json.dumps(info, indent=2), encoding="utf-8")
    if root.exists():
        shutil.rmtree(root)
    os.replace(staging, root)
    return root


def read_captions(
    root: str | os.PathLike,
) -> tuple[np.ndarray, dict[str, dict[str, list[str]]], dict[str, np.ndarray]]:
    """(images (N, H, W, 3) uint8, captions[style][language], labels) of a `write_captions`
    directory; a missing or foreign directory -> an error naming the file."""
    root = Path(root)
    info_path = root / INFO_NAME
    if not info_path.is_file():
        raise MissingError(f"{info_path}: not found; {root} is not a caption set")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if info.get("codebase") != "nanovla.captions":
        raise InputError(
            f"{info_path}: not a nanovla caption set (codebase {info.get('codebase')!r})"
        )
    table = pq.read_table(root / DATA_NAME)
    shape = tuple(info["image_shape"])
    cells = table.column("image").to_pylist()
    images = np.stack([decode_image(cell["bytes"], shape) for cell in cells])
    captions = {
        s: {lang: table.column(f"caption.{s}.{lang}").to_pylist() for lang in LANGUAGES}
        for s in STYLES
    }
    labels = {
        name.removeprefix("label."): table.column(name).to_numpy()
        for name in table.column_names
        if name.startswith("label.")
    }
    return images, captions, labels
