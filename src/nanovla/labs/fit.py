"""The supervised classification loop the `classify` and `transfer` labs share.

Whole data sets live in memory as tensors (sklearn digits, world crops): an epoch is a random
permutation cut into mini-batches, with no DataLoader worker processes to start on a 2-core CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nanovla.progress import progress


@dataclass
class History:
    """Per-epoch curves of one training run."""

    train_loss: list[float] = field(default_factory=list)
    """mean cross-entropy over the epoch's mini-batches"""
    train_accuracy: list[float] = field(default_factory=list)
    """accuracy on the epoch's (augmented) training batches, in training mode"""
    test_accuracy: list[float] = field(default_factory=list)
    """accuracy on the test set after the epoch, in eval mode"""


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 512) -> Tensor:
    """Class predictions (N,) int64 for `images` (N, ...), in eval mode."""
    model.eval()
    return torch.cat([model(chunk).argmax(1) for chunk in images.split(batch_size)])


def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Fraction of `images` (N, ...) whose predicted class equals `labels` (N,)."""
    return (predict(model, images) == labels).float().mean().item()


def confusion_matrix(labels: Tensor, predictions: Tensor, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts; rows are true classes, columns predictions."""
    flat = labels.long() * num_classes + predictions.long()
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).numpy()


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    desc: str = "train",
) -> History:
    """Trains `model` with cross-entropy for `epochs` epochs under a cosine learning-rate decay
    (torch's CosineAnnealingLR, stepped per batch) and records a `History`.

    train, test: (images (N, ...), labels (N,) int64). augment: optional batched augmentation
    `(images, generator) -> images`, applied to training batches only.
    """
    images, labels = train
    steps_per_epoch = max(1, -(-len(images) // batch_size))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    history = History()
    bar = progress(range(epochs), desc=desc, unit="epoch", leave=False)
    for _ in bar:
        model.train()
        order = torch.randperm(len(images), generator=generator)
        loss_sum, correct = 0.0, 0
        for index in order.split(batch_size):
            batch = images[index]
            if augment is not None:
                batch = augment(batch, generator)
            logits = model(batch)  # (B, num_classes)
            loss = F.cross_entropy(logits, labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(index)
            correct += (logits.argmax(1) == labels[index]).sum().item()
        history.train_loss.append(loss_sum / len(images))
        history.train_accuracy.append(correct / len(images))
        history.test_accuracy.append(accuracy(model, *test))
        bar.set_postfix(
            loss=f"{history.train_loss[-1]:.3f}", test=f"{history.test_accuracy[-1]:.3f}"
        )
    return history


def random_shift(images: Tensor, generator: torch.Generator, max_shift: int = 1) -> Tensor:
    """Translates each image (B, C, H, W) by up to `max_shift` pixels in x and y (zero fill),
    batched: pad once, then gather one shifted window per image."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (max_shift,) * 4)  # (B, C, H + 2s, W + 2s)
    offsets = torch.randint(0, 2 * max_shift + 1, (2, batch), generator=generator)
    rows = offsets[0, :, None] + torch.arange(height)  # (B, H)
    columns = offsets[1, :, None] + torch.arange(width)  # (B, W)
    index = torch.arange(batch)[:, None, None]
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], columns[:, None, :]].permute(
        0, 3, 1, 2
    )  # (B, C, H, W)
