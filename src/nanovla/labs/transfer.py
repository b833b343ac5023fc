"""`nanovla lab transfer`: transfer learning on world objects, with few labels.

1. Pretrain a small CNN backbone (the zoo's `simple_cnn`: three of the seed's BasicCNNBlocks)
   on many object crops of the *source* colors (default red, green, blue), labelled with the
   source attributes (default kind + size: 6 classes, "box/small" ... "ball/large").
2. On *new* classes — the target attributes (default again kind + size) of objects in colors
   the backbone never saw (default yellow and purple), from scenes it never saw — with only
   `--shots` labelled crops per class, compare the seed's three ways to use it:

   (a) feature extraction: the backbone is frozen (eval mode, features computed once) and only a
       new linear head is trained;
   (b) fine-tuning: the whole net trains, with the seed's per-group learning rates (optimizer
       param groups: backbone `--backbone-lr` << head `--lr`);
   (c) training the same architecture from scratch on the few labels.

   All three are scored on the same held-out crops of the target classes.

Why this split: the held-out colour combos are new classes that need the skills the backbone
learned (telling boxes from balls and sizes apart, on crops whose centre is off by up to
`--jitter` px, as from an imprecise detector) on inputs it has never seen. From scratch, a few
examples per class must teach all of that; frozen features may not cover the new colours (the
domain shift shows up as a gap between (a) and (b)); fine-tuning adapts them cheaply.
`--source-colors`, `--target-colors`, `--source` and `--target` run other experiments, e.g.
`--target color+kind --target-colors red+green+blue+yellow+purple`.

Departure from the seed: the seed loads an ImageNet ResNet-50 (`pretrained=True`, a download);
here the "pretrained" backbone is trained in the lab itself, on the world's own renders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from nanovla.errors import InputError
from nanovla.labs.common import LabConfig, check_positive, pyplot, save_figure, setup, write_metrics
from nanovla.labs.crops import (
    class_names,
    few_shot_indices,
    labels_for,
    parse_attributes,
    parse_colors,
    render_crops,
)
from nanovla.labs.fit import accuracy, fit, random_shift
from nanovla.models import create_model

Task = tuple[tuple[str, ...], tuple[str, ...]]
"""(attributes that define the classes, object colors), e.g. (("kind", "size"), ("red",))"""
Pair = tuple[Tensor, Tensor]
"""(images (N, 3, crop, crop), labels (N,) int64)"""
PRETRAIN_BATCH_SIZE = 64
"""crops per pretraining step (the source set has thousands, so larger batches than few-shot)"""
IMAGE_SIZE = 64
"""world render side; objects are 4-8 px across at 64 px"""


@dataclass
class TransferConfig(LabConfig):
    """Pretrain a CNN on world-object crops (source classes), then compare feature extraction,
    fine-tuning with per-group learning rates, and training from scratch on new classes with
    few labels. Attributes: kind, color, size, joined with '+'; colors: red, green, blue,
    yellow, purple, joined with '+'."""

    source: str = "kind+size"
    """attributes that define the pretraining classes (kind+size: 6 classes)"""
    source_colors: str = "red+green+blue"
    """colors of the objects the backbone is pretrained on"""
    target: str = "kind+size"
    """attributes that define the new classes"""
    target_colors: str = "yellow+purple"
    """colors of the objects of the new classes (default: colors never pretrained on)"""
    shots: int = 5
    """labelled crops per target class"""
    out: Path = Path("runs/lab-transfer")
    """directory for metrics.json and transfer.png"""
    source_scenes: int = 1000
    """scenes rendered for pretraining (3-5 object crops each)"""
    target_scenes: int = 400
    """scenes for the target task: the few-shot pool and the test crops (never pretrained on)"""
    crop: int = 16
    """crop side in pixels, centred on each object"""
    jitter: int = 3
    """crop centres are off by up to this many pixels (0 = exactly centred)"""
    width: int = 16
    """channels of the backbone's first block (doubles per block, three blocks)"""
    pretrain_epochs: int = 6
    """epochs of pretraining on the source classes"""
    epochs: int = 60
    """epochs of each few-shot method (the few labels make an epoch a few steps)"""
    lr: float = 3e-3
    """Adam learning rate of new heads and of the from-scratch model"""
    backbone_lr: float = 3e-4
    """fine-tuning learning rate of the pretrained backbone (the seed uses 10x below the head)"""
    batch_size: int = 32
    """crops per optimizer step"""


def _backbone(config: TransferConfig, num_classes: int) -> nn.Module:
    return create_model("simple_cnn", num_classes=num_classes, in_chans=3, width=config.width)


def _augment(images: Tensor, generator: torch.Generator) -> Tensor:
    return random_shift(images, generator, 1)


def pretrain(
    config: TransferConfig, source: Task, generator: torch.Generator
) -> tuple[nn.Module, float]:
    """Trains the backbone on the source classes; returns (model, source test accuracy)."""
    images, attributes = render_crops(
        config.source_scenes, config.seed, IMAGE_SIZE, config.crop, config.jitter, source[1]
    )
    labels = labels_for(attributes, *source)
    split = len(labels) * 9 // 10
    model = _backbone(config, len(class_names(*source)))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    train, test = (images[:split], labels[:split]), (images[split:], labels[split:])
    fit(
        model,
        optimizer,
        train,
        test,
        config.pretrain_epochs,
        PRETRAIN_BATCH_SIZE,
        generator,
        _augment,
        "pretrain",
    )
    return model, accuracy(model, *test)


@torch.no_grad()
def _features(model: nn.Module, images: Tensor) -> Tensor:
    model.eval()
    return model.forward_head(model.forward_features(images), pre_logits=True)  # (N, C)


def feature_extraction(
    config: TransferConfig,
    backbone: nn.Module,
    few: Pair,
    test: Pair,
    num_classes: int,
    generator: torch.Generator,
) -> float:
    """(a) frozen backbone, features computed once; only a new linear head trains."""
    head = nn.Linear(backbone.num_features, num_classes)
    optimizer = torch.optim.Adam(head.parameters(), lr=config.lr)
    train = (_features(backbone, few[0]), few[1])
    test_features = (_features(backbone, test[0]), test[1])
    fit(
        head,
        optimizer,
        train,
        test_features,
        config.epochs,
        config.batch_size,
        generator,
        desc="(a) feature extraction",
    )
    return accuracy(head, *test_features)


def fine_tuning(
    config: TransferConfig,
    backbone: nn.Module,
    few: Pair,
    test: Pair,
    num_classes: int,
    generator: torch.Generator,
) -> float:
    """(b) new head, whole network trains; backbone lr << head lr (two param groups)."""
    backbone.fc = nn.Linear(backbone.num_features, num_classes)
    head_ids = {id(p) for p in backbone.fc.parameters()}
    groups = [
        {
            "params": [p for p in backbone.parameters() if id(p) not in head_ids],
            "lr": config.backbone_lr,
        },
        {"params": list(backbone.fc.parameters()), "lr": config.lr},
    ]
    optimizer = torch.optim.Adam(groups)
    fit(
        backbone,
        optimizer,
        few,
        test,
        config.epochs,
        config.batch_size,
        generator,
        _augment,
        "(b) fine-tuning",
    )
    return accuracy(backbone, *test)


def from_scratch(
    config: TransferConfig, few: Pair, test: Pair, num_classes: int, generator: torch.Generator
) -> float:
    """(c) the same architecture, randomly initialised, trained on the few labels only."""
    model = _backbone(config, num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    fit(
        model,
        optimizer,
        few,
        test,
        config.epochs,
        config.batch_size,
        generator,
        _augment,
        "(c) from scratch",
    )
    return accuracy(model, *test)


def _target_data(
    config: TransferConfig, target: Task, generator: torch.Generator
) -> tuple[Pair, Pair]:
    """(few-shot train, test) crops of the target classes, from scenes of a different seed."""
    images, attributes = render_crops(
        config.target_scenes,
        config.seed + 10_000,
        IMAGE_SIZE,
        config.crop,
        config.jitter,
        target[1],
    )
    labels = labels_for(attributes, *target)
    few = few_shot_indices(labels, len(class_names(*target)), config.shots, generator)
    rest = torch.ones(len(labels), dtype=torch.bool)
    rest[few] = False
    return (images[few], labels[few]), (images[rest], labels[rest])


def _check(config: TransferConfig) -> tuple[Task, Task]:
    source = (
        parse_attributes("source", config.source),
        parse_colors("source-colors", config.source_colors),
    )
    target = (
        parse_attributes("target", config.target),
        parse_colors("target-colors", config.target_colors),
    )
    if config.jitter < 0 or 2 * config.jitter >= config.crop:
        raise InputError(f"--jitter: must be in [0, crop / 2), got {config.jitter}")
    check_positive(
        shots=config.shots,
        source_scenes=config.source_scenes,
        target_scenes=config.target_scenes,
        crop=config.crop,
        width=config.width,
        pretrain_epochs=config.pretrain_epochs,
        epochs=config.epochs,
        lr=config.lr,
        backbone_lr=config.backbone_lr,
        batch_size=config.batch_size,
    )
    return source, target


def _plot(path: Path, results: dict[str, float], config: TransferConfig) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    bars = axis.bar(list(results), list(results.values()), color=["#4c72b0", "#55a868", "#c44e52"])
    axis.bar_label(bars, labels=[f"{value:.1%}" for value in results.values()])
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("test accuracy")
    axis.set_title(
        f"{config.source} of {config.source_colors} -> {config.target} of "
        f"{config.target_colors}\n{config.shots} labels per class",
        fontsize=9,
    )
    save_figure(figure, path)


def run(config: TransferConfig) -> dict[str, object]:
    """Pretrains, runs the three few-shot methods, prints the table, writes metrics and PNG."""
    source, target = _check(config)
    out = setup(config)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)
    backbone, source_accuracy = pretrain(config, source, generator)
    print(
        f"pretrained on {config.source} of {config.source_colors} objects "
        f"({len(class_names(*source))} classes): "
        f"source test accuracy {source_accuracy:.1%}"
    )
    few, test = _target_data(config, target, generator)
    num_classes = len(class_names(*target))
    results = {
        "feature extraction": feature_extraction(
            config, backbone, few, test, num_classes, generator
        )
    }
    results["fine-tuning"] = fine_tuning(config, backbone, few, test, num_classes, generator)
    results["from scratch"] = from_scratch(config, few, test, num_classes, generator)
    wall_time = time.perf_counter() - start
    print(
        f"target {config.target} of {config.target_colors} objects: {num_classes} classes, "
        f"{config.shots} labels each, "
        f"{len(test[1])} test crops"
    )
    print(f"{'method':<20} test accuracy")
    for method, value in results.items():
        print(f"{method:<20} {value:.1%}")
    _plot(out / "transfer.png", results, config)
    metrics = {
        "source_classes": class_names(*source),
        "target_classes": class_names(*target),
        "source_test_accuracy": source_accuracy,
        "feature_extraction_accuracy": results["feature extraction"],
        "fine_tuning_accuracy": results["fine-tuning"],
        "from_scratch_accuracy": results["from scratch"],
        "num_few_shot": len(few[1]),
        "num_test": len(test[1]),
        "wall_time_s": wall_time,
    }
    write_metrics(out, metrics, config)
    print(f"{wall_time:.1f} s; wrote {out}/metrics.json, transfer.png")
    return metrics
