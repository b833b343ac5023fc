"""`nanovla lab classify`: image classification on sklearn's handwritten digits.

sklearn's `load_digits` (1,797 8x8 grayscale digits, 0-16 intensities, shipped inside
scikit-learn: no download) is split once, stratified, into 1,437 training and 360 test images
(`random_state=0`, independent of `--seed`, so every model and seed is scored on the same test
set). Three models:

- `mlp`: the seed's MLP (`nanovla.labs.basics.MLP`: 64 -> 256 -> 256 -> 10 with BatchNorm and
  dropout) on the flattened 8x8 pixels.
- `lenet`: the zoo's LeNet-5 (`create_model("lenet", img_size=28)`) on the digits upscaled
  bilinearly from 8x8 to 28x28 (LeNet's two 5x5 convs and pools need >= 16 px).
- `resnet18`: the zoo's ResNet-18 (1 input channel) on digits upscaled to 32x32 — the smallest
  side its five stride-2 stages can take (1x1 at the end); an 11M-parameter network on 1,437
  images only has to run and report here, so its defaults are a few epochs.

Pixels are standardized with the training set's mean and std. All models train with random
shifts (1 px at 8 px, 2 px at 28/32 px) as augmentation — the one augmentation that suits digits
(the seed's flips and colour jitter do not) — and Adam with cosine decay; the MLP and LeNet pass
their targets (>= 97 %, >= 98 % test accuracy) in well under a minute on a 2-core CPU. Small
models on small batches gain little from intra-op threads, and on a *busy* CPU two threads can
be many times slower than one: pass `--threads 1` there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nanovla.labs.basics import MLP
from nanovla.labs.common import (
    LabConfig,
    check_choice,
    check_positive,
    plot_confusion,
    plot_curves,
    setup,
    write_metrics,
)
from nanovla.labs.fit import accuracy, confusion_matrix, fit, predict, random_shift
from nanovla.models import create_model

DATASETS = ("digits",)
MODELS = ("mlp", "lenet", "resnet18")
TEST_FRACTION = 0.2
# model -> (input side in pixels, default epochs, default learning rate)
MODEL_DEFAULTS = {"mlp": (8, 30, 3e-3), "lenet": (28, 20, 3e-3), "resnet18": (32, 3, 1e-3)}


@dataclass
class ClassifyConfig(LabConfig):
    """Train and test an image classifier on sklearn's 8x8 digits (1,797 images, a fixed
    stratified 80/20 split). mlp and lenet reach >= 97 % and >= 98 % in < 60 s on a 2-core CPU;
    resnet18 (on 32x32 upscaled digits, 3 epochs by default) only has to run and report."""

    model: str = "lenet"
    """model to train: mlp (the seed's MLP on raw pixels), lenet (LeNet-5 on 28x28 upscaled
    digits) or resnet18 (ResNet-18 on 32x32 upscaled digits; slow, few epochs)"""
    data: str = "digits"
    """data set: digits (sklearn's load_digits, ships with scikit-learn)"""
    out: Path = Path("runs/lab-classify")
    """directory for metrics.json, confusion.png and curves.png"""
    epochs: int | None = None
    """training epochs; None = the model's default (mlp 30, lenet 20, resnet18 3)"""
    batch_size: int = 32
    """images per optimizer step"""
    lr: float | None = None
    """Adam learning rate; None = the model's default (mlp 3e-3, lenet 3e-3, resnet18 1e-3)"""
    train_limit: int | None = None
    """use only the first N training images (quick smoke runs); None = all 1,437"""


def load_digits_split(image_size: int) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """sklearn digits as ((train images, labels), (test images, labels)); images (N, 1, S, S)
    float32 scaled to [0, 1] (bilinearly upscaled when `image_size` > 8), labels (N,) int64."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]  # (N, 1, 8, 8)
    if image_size != 8:
        images = F.interpolate(images, size=image_size, mode="bilinear", align_corners=False)
    labels = torch.tensor(digits.target, dtype=torch.int64)
    train_index, test_index = train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, stratify=digits.target, random_state=0
    )
    train_index, test_index = torch.from_numpy(train_index), torch.from_numpy(test_index)
    return (images[train_index], labels[train_index]), (images[test_index], labels[test_index])


def build_model(name: str, image_size: int) -> nn.Module:
    """The lab's model `name` for 1-channel `image_size` inputs and 10 classes."""
    if name == "mlp":
        return MLP(input_size=image_size * image_size, hidden_size=256, output_size=10)
    if name == "lenet":
        return create_model("lenet", num_classes=10, in_chans=1, img_size=image_size)
    return create_model("resnet18", num_classes=10, in_chans=1)


def _check(config: ClassifyConfig) -> None:
    check_choice("data", config.data, DATASETS)
    check_choice("model", config.model, MODELS)
    check_positive(batch_size=config.batch_size)
    if config.epochs is not None:
        check_positive(epochs=config.epochs)
    if config.lr is not None:
        check_positive(lr=config.lr)
    if config.train_limit is not None:
        check_positive(train_limit=config.train_limit)


def run(config: ClassifyConfig) -> dict[str, object]:
    """Trains, evaluates, prints accuracy and wall time, writes metrics.json and the PNGs."""
    _check(config)
    out = setup(config)
    image_size, default_epochs, default_lr = MODEL_DEFAULTS[config.model]
    epochs = config.epochs or default_epochs
    start = time.perf_counter()
    train, test = load_digits_split(image_size)
    if config.train_limit is not None:
        train = (train[0][: config.train_limit], train[1][: config.train_limit])
    mean, std = train[0].mean(), train[0].std()  # standardize with training statistics
    train, test = ((train[0] - mean) / std, train[1]), ((test[0] - mean) / std, test[1])
    model = build_model(config.model, image_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr or default_lr)
    shift = max(1, image_size // 14)  # 1 px at 8 px, 2 px at 28 and 32 px

    def augment(images: Tensor, generator: torch.Generator) -> Tensor:
        return random_shift(images, generator, shift)

    generator = torch.Generator().manual_seed(config.seed)
    history = fit(
        model, optimizer, train, test, epochs, config.batch_size, generator, augment, config.model
    )
    test_accuracy = accuracy(model, *test)
    wall_time = time.perf_counter() - start
    confusion = confusion_matrix(test[1], predict(model, test[0]), 10)
    labels = [str(digit) for digit in range(10)]
    title = f"{config.model} on digits: test accuracy {test_accuracy:.2%}"
    plot_confusion(out / "confusion.png", confusion, labels, title)
    plot_curves(
        out / "curves.png",
        {
            "cross-entropy": {"train": history.train_loss},
            "accuracy": {"train": history.train_accuracy, "test": history.test_accuracy},
        },
    )
    metrics = {
        "model": config.model,
        "data": config.data,
        "test_accuracy": test_accuracy,
        "wall_time_s": wall_time,
        "epochs": epochs,
        "num_train": len(train[1]),
        "num_test": len(test[1]),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "history": history,
        "confusion": confusion,
    }
    write_metrics(out, metrics, config)
    print(
        f"{config.model} on {config.data}: test accuracy {test_accuracy:.2%} "
        f"({len(test[1])} test images) in {wall_time:.1f} s wall time"
    )
    print(f"wrote {out}/metrics.json, confusion.png, curves.png")
    return metrics
