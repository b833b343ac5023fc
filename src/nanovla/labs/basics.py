"""`nanovla lab basics`: the seed's neural-network basics as a short printed walk-through.

1. The perceptron `y = W x + b` (the seed's `SimplePerceptron`, 3 -> 1).
2. ReLU, Sigmoid, Tanh and GELU on the seed's values [-2, -1, 0, 1, 2] (plus a PNG of the curves).
3. The seed's MLP (Linear -> BatchNorm -> ReLU -> Dropout, twice, then Linear): a forward pass and
   backward passes with Adam on a toy problem, two interleaved spirals (2-D points, 2 classes),
   with a loss-curve PNG.
4. The seed's gradient example `y = sum(w * x) + b`: autograd's dy/dx, dy/dw and dy/db are printed
   and *checked* against the closed forms w, x and 1.

Departures from the seed: the seed's backward example fits 10 random points with random labels
for 5 steps (nothing to learn, so the loss barely moves); here the MLP learns a real non-linear
problem (spirals, which no perceptron can separate) for a few hundred steps, so the loss curve
shows learning. The seed's MNIST-sized MLP (784 -> 256 -> 10) is the `mlp` of `lab classify`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nanovla.errors import InputError
from nanovla.labs.common import (
    LabConfig,
    check_positive,
    plot_curves,
    pyplot,
    save_figure,
    setup,
    write_metrics,
)
from nanovla.progress import progress

ACTIVATIONS = {"ReLU": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "GELU": F.gelu}


@dataclass
class BasicsConfig(LabConfig):
    """Perceptron, activations, an MLP's forward/backward on a toy problem, and autograd's
    gradients checked by hand."""

    out: Path = Path("runs/lab-basics")
    """directory for metrics.json, loss_curve.png and activations.png"""
    steps: int = 300
    """Adam steps of the MLP on the spirals (full batch); ~300 reach a loss near 0.05"""
    hidden_size: int = 32
    """width of the MLP's two hidden layers"""
    points: int = 400
    """toy data set size (half per spiral arm)"""
    lr: float = 0.01
    """Adam learning rate"""


class SimplePerceptron(nn.Module):
    """The seed's perceptron: one linear layer, y = W x + b."""

    def __init__(self, input_size: int, output_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(input_size, output_size)

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., input_size) -> (..., output_size)."""
        return self.linear(x)


class MLP(nn.Module):
    """The seed's MLP: (Linear -> BatchNorm1d -> ReLU -> Dropout) x 2 -> Linear."""

    def __init__(
        self, input_size: int, hidden_size: int, output_size: int, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.layer1 = nn.Linear(input_size, hidden_size)
        self.layer2 = nn.Linear(hidden_size, hidden_size)
        self.layer3 = nn.Linear(hidden_size, output_size)
        self.batch_norm1 = nn.BatchNorm1d(hidden_size)
        self.batch_norm2 = nn.BatchNorm1d(hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, input_size) -> logits (B, output_size); any (B, ...) input is flattened."""
        x = x.flatten(1)  # (B, input_size)
        x = self.dropout(F.relu(self.batch_norm1(self.layer1(x))))  # (B, hidden)
        x = self.dropout(F.relu(self.batch_norm2(self.layer2(x))))  # (B, hidden)
        return self.layer3(x)  # (B, output_size)


def spirals(points: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Two interleaved spiral arms: points (N, 2) float32 and labels (N,) int64 in {0, 1}."""
    labels = torch.arange(points) % 2  # (N,)
    radius = torch.rand(points, generator=generator) * 0.9 + 0.1  # (N,)
    angle = radius * 3 * math.pi + labels * math.pi  # the second arm is the first rotated 180°
    noise = 0.03 * torch.randn(points, 2, generator=generator)
    xy = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1) + noise
    return xy, labels


def perceptron_step() -> dict[str, list[float]]:
    """Step 1: the seed's 3 -> 1 perceptron on x = [1, 2, 3]; checks y = W x + b."""
    perceptron = SimplePerceptron(input_size=3, output_size=1)
    x = torch.tensor([1.0, 2.0, 3.0])
    output = perceptron(x)
    weight, bias = perceptron.linear.weight.detach(), perceptron.linear.bias.detach()
    by_hand = weight @ x + bias
    if not torch.allclose(output.detach(), by_hand, atol=1e-6):
        raise AssertionError("perceptron output differs from W x + b")
    print("1. perceptron  y = W x + b")
    print(f"   x = {x.tolist()}  W = {_fmt(weight[0])}  b = {_fmt(bias)}")
    print(f"   y = {_fmt(output)}  (W x + b by hand: {_fmt(by_hand)})")
    return {"input": x.tolist(), "output": output.tolist()}


def activation_step(out: Path) -> dict[str, list[float]]:
    """Step 2: the four activations on the seed's values, and their curves as a PNG."""
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])
    print("2. activations on x = [-2, -1, 0, 1, 2]")
    values = {}
    for name, function in ACTIVATIONS.items():
        values[name] = function(x).tolist()
        print(f"   {name:8}: {_fmt(function(x))}")
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    grid = torch.linspace(-4, 4, 200)
    for name, function in ACTIVATIONS.items():
        axis.plot(grid, function(grid), label=name)
    axis.scatter(x.repeat(len(ACTIVATIONS)), [v for vs in values.values() for v in vs], s=12)
    axis.set_title("activation functions (dots: the seed's inputs)")
    axis.grid(alpha=0.3)
    axis.legend()
    save_figure(figure, out / "activations.png")
    return values


def mlp_step(config: BasicsConfig, generator: torch.Generator) -> dict[str, float]:
    """Step 3: the seed's MLP, one forward pass, then `steps` Adam steps on the spirals."""
    points, labels = spirals(config.points, generator)
    model = MLP(input_size=2, hidden_size=config.hidden_size, output_size=2)
    logits = model(points)  # (N, 2)
    print(f"3. MLP 2 -> {config.hidden_size} -> {config.hidden_size} -> 2 on two spirals")
    print(f"   forward: points {tuple(points.shape)} -> logits {tuple(logits.shape)}")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    first_weight = model.layer1.weight.detach().clone()
    losses = []
    for _ in progress(range(config.steps), desc="mlp", unit="step", leave=False):
        loss = F.cross_entropy(model(points), labels)
        optimizer.zero_grad()  # gradients accumulate in .grad unless cleared
        loss.backward()  # dloss/dparam for every parameter, by the chain rule
        optimizer.step()  # param -= lr * (Adam-scaled) gradient
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        train_accuracy = (model(points).argmax(1) == labels).float().mean().item()
    change = (model.layer1.weight.detach() - first_weight).abs().mean().item()
    print(f"   loss {losses[0]:.4f} -> {losses[-1]:.4f} after {config.steps} steps")
    print(f"   mean |change| of layer1 weights: {change:.4f}; accuracy {train_accuracy:.3f}")
    plot_curves(
        config.out / "loss_curve.png", {"MLP on two spirals: loss": {"loss": losses}}, "step"
    )
    return {"initial_loss": losses[0], "final_loss": losses[-1], "train_accuracy": train_accuracy}


def gradient_step() -> dict[str, object]:
    """Step 4: the seed's y = sum(w * x) + b; checks dy/dx = w, dy/dw = x, dy/db = 1."""
    x = torch.tensor([2.0, 3.0], requires_grad=True)
    w = torch.tensor([0.5, 0.8], requires_grad=True)
    b = torch.tensor(0.1, requires_grad=True)
    y = torch.sum(w * x) + b
    y.backward()
    checks = {
        "dy/dx = w": torch.equal(x.grad, w.detach()),
        "dy/dw = x": torch.equal(w.grad, x.detach()),
        "dy/db = 1": torch.equal(b.grad, torch.tensor(1.0)),
    }
    print(f"4. gradients of y = sum(w * x) + b = {y.item():.2f}")
    for (rule, ok), grad in zip(checks.items(), (x.grad, w.grad, b.grad)):
        print(f"   {rule}: autograd {_fmt(grad)}  {'ok' if ok else 'MISMATCH'}")
    if not all(checks.values()):
        raise AssertionError(f"autograd disagrees with the closed form: {checks}")
    return {
        "y": y.item(),
        "dy_dx": x.grad.tolist(),
        "dy_dw": w.grad.tolist(),
        "dy_db": b.grad.item(),
        "checks_passed": True,
    }


def _fmt(values: Tensor) -> str:
    return np.array2string(values.detach().reshape(-1).numpy(), precision=4, separator=", ")


def run(config: BasicsConfig) -> dict[str, object]:
    """Runs the walk-through, writes metrics.json and the PNGs; returns the metrics."""
    check_positive(steps=config.steps, hidden_size=config.hidden_size, lr=config.lr)
    if config.points < 4:
        raise InputError(f"--points: must be >= 4, got {config.points}")
    out = setup(config)
    generator = torch.Generator().manual_seed(config.seed)
    metrics = {
        "perceptron": perceptron_step(),
        "activations": activation_step(out),
        "mlp": mlp_step(config, generator),
        "gradients": gradient_step(),
    }
    metrics["final_loss"] = metrics["mlp"]["final_loss"]
    write_metrics(out, metrics, config)
    print(
        f"final loss {metrics['final_loss']:.4f}; wrote {out}/metrics.json, loss_curve.png, "
        "activations.png"
    )
    return metrics
