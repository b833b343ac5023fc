"""Per-image inference latency of the detector: torch eager vs onnxruntime, and the NMS step.

    .venv/bin/python benchmarks/detect_latency.py [--model runs/lab-detect/model] [--repeats 200]

Loads a detector saved by `nanovla lab detect` (or builds the default one: latency does not
depend on the weights), exports it to ONNX, and prints for batch 1 at each thread count the
median and p95 milliseconds of: the torch forward (no_grad, eval), the onnxruntime forward, and
`postprocess` (threshold + NMS) on real detector output at the evaluation threshold (0.05: up
to 1000 candidates) and at a deployment threshold (0.3). The variants are interleaved call by
call so a busy machine slows them alike; the load average is printed beside the figures.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro

from nanovla.data.detection import render_detection_set
from nanovla.labs.detect import load_detector
from nanovla.labs.detect_infer import export_onnx, onnx_session, postprocess, to_tensor
from nanovla.models.vision.detector import Detector


@dataclass
class Config:
    """Detector latency benchmark (batch 1)."""

    model: Path | None = None
    """a model/ directory written by `nanovla lab detect` (None: the default, untrained)"""
    repeats: int = 200
    """timed calls per variant (after 20 untimed ones)"""
    threads: tuple[int, ...] = (1,)
    """torch and onnxruntime intra-op thread counts to time"""
    exporter: Literal["dynamo", "torchscript"] = "dynamo"
    """the torch.onnx.export path"""


def _timed(calls: dict, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(20):
        for call in calls.values():
            call()
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def main(config: Config) -> None:
    model = load_detector(config.model) if config.model else Detector().eval()
    size = model.config.img_size
    image = render_detection_set(1, seed=12345, image_size=size, show_progress=False).images
    x = to_tensor(image)
    with tempfile.TemporaryDirectory() as tmp:
        exporter = export_onnx(model, Path(tmp) / "model.onnx", config.exporter)
        sessions = {t: onnx_session(Path(tmp) / "model.onnx", t) for t in config.threads}
    with torch.no_grad():
        boxes, scores = model(x)
    params = sum(p.numel() for p in model.parameters())
    print(f"detector {size}x{size}, {params:,} parameters, ONNX via {exporter} exporter")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with torch.no_grad():
        candidates = {t: int((scores >= t).sum()) for t in (0.05, 0.3)}
    print(f"candidates above conf 0.05: {candidates[0.05]}, above 0.3: {candidates[0.3]}")
    print(f"{'threads':>7} {'variant':<22} {'median ms':>10} {'p95 ms':>8}")
    feed = {"images": x.numpy()}
    for threads in config.threads:
        torch.set_num_threads(threads)
        calls = {
            "torch forward": lambda: model(x),
            "onnxruntime forward": lambda s=sessions[threads]: s.run(None, feed),
            "postprocess conf 0.05": lambda: postprocess(boxes, scores, conf_threshold=0.05),
            "postprocess conf 0.3": lambda: postprocess(boxes, scores, conf_threshold=0.3),
        }
        with torch.no_grad():
            times = _timed(calls, config.repeats)
        for name, values in times.items():
            median, p95 = np.median(values), np.percentile(values, 95)
            print(f"{threads:>7} {name:<22} {median:>10.2f} {p95:>8.2f}")


if __name__ == "__main__":
    main(tyro.cli(Config))
