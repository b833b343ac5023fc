"""Learning-rate schedules: the seed's warmup + cosine curve and torch's OneCycleLR."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from nanovla.train import build_scheduler


def _optimizer(lr: float = 0.1) -> torch.optim.Optimizer:
    layer = nn.Linear(2, 2)
    return torch.optim.AdamW([{"params": [layer.weight]}, {"params": [layer.bias]}], lr=lr)


def _rates(optimizer: torch.optim.Optimizer, scheduler, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def _seed_warmup_cosine(i: int, lr: float, steps: int, warmup: int, min_lr: float) -> float:
    """The seed's WarmupCosineScheduler, written out."""
    if i < warmup:
        return lr * (i + 1) / warmup
    progress = (i - warmup) / (steps - warmup)
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


@pytest.mark.parametrize("warmup", [0, 5])
def test_cosine_is_the_seed_curve(warmup: int) -> None:
    optimizer = _optimizer(lr=0.1)
    scheduler = build_scheduler(
        optimizer, "cosine", steps=40, warmup_steps=warmup, min_lr_ratio=0.1
    )
    expected = [_seed_warmup_cosine(i, 0.1, 40, warmup, 0.01) for i in range(40)]
    assert _rates(optimizer, scheduler, 40) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)  # floor after the last step
    assert optimizer.param_groups[1]["lr"] == optimizer.param_groups[0]["lr"]


def test_onecycle_matches_torch_reference() -> None:
    optimizer, reference_optimizer = _optimizer(), _optimizer()
    ours = build_scheduler(optimizer, "onecycle", steps=30, warmup_steps=6, min_lr_ratio=0.01)
    reference = torch.optim.lr_scheduler.OneCycleLR(
        reference_optimizer,
        max_lr=0.1,
        total_steps=30,
        pct_start=0.2,
        div_factor=25,
        final_div_factor=4.0,
    )
    rates = _rates(optimizer, ours, 30)
    assert rates == _rates(reference_optimizer, reference, 30)
    assert max(rates) == rates[5] == pytest.approx(0.1)  # the 6th (last warmup) step peaks
    assert rates[-1] == pytest.approx(0.1 * 0.01)  # the last step runs at lr * min_lr_ratio


def test_constant_stays_put() -> None:
    optimizer = _optimizer(lr=0.03)
    assert _rates(optimizer, build_scheduler(optimizer, "constant", steps=5), 5) == [0.03] * 5


@pytest.mark.parametrize("name", ["cosine", "onecycle"])
def test_state_through_json_resumes_the_same_curve(name: str) -> None:
    """A scheduler rebuilt and loaded from its JSON'd state continues bit-identically."""
    optimizer = _optimizer()
    scheduler = build_scheduler(optimizer, name, steps=20, warmup_steps=4, min_lr_ratio=0.1)
    straight = _rates(optimizer, scheduler, 20)

    first = _optimizer()
    scheduler = build_scheduler(first, name, steps=20, warmup_steps=4, min_lr_ratio=0.1)
    head = _rates(first, scheduler, 9)
    saved_opt = first.state_dict()
    saved = json.loads(json.dumps(scheduler.state_dict()))
    second = _optimizer()
    resumed = build_scheduler(second, name, steps=20, warmup_steps=4, min_lr_ratio=0.1)
    second.load_state_dict(saved_opt)
    resumed.load_state_dict(saved)
    assert head + _rates(second, resumed, 11) == straight


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "linear"}, "scheduler must be one of cosine, onecycle, constant"),
        ({"steps": 0}, "steps must be >= 1"),
        ({"warmup_steps": 10}, r"warmup_steps must be in \[0, steps=10\)"),
        ({"min_lr_ratio": 1.5}, r"min_lr_ratio must be in \[0, 1\]"),
    ],
)
def test_bad_arguments_name_themselves(kwargs: dict, message: str) -> None:
    arguments = {"name": "cosine", "steps": 10, "warmup_steps": 2, "min_lr_ratio": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_scheduler(_optimizer(), **arguments)
