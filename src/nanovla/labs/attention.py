"""`nanovla lab attention`: what attention heads look at, and the positional-encoding matrix.

1. The seed's `visualize_attention`: `nanovla.nn.MultiHeadAttention(d_model=512, num_heads=8)`
   on one random sequence of 10 tokens — untrained, so each head's map is near-uniform noise.
2. The same module inside a tiny attention-only model trained for a few seconds on a sequence
   task — `reverse` (output i = input L-1-i) or `copy` (output i = input i) over random digits —
   whose heads then show real structure: the anti-diagonal (reverse) or the diagonal (copy).
   Model: token embedding + sinusoidal positions -> one multi-head self-attention -> a
   position-wise MLP -> digit logits. There is deliberately no residual path around the
   attention, so the only way to see another position's token is through the heads.
3. The seed's `visualize_positional_encoding`: the sinusoidal table (100 positions x 128 dims).

Metrics: token and sequence accuracy on fresh sequences; per head the attention entropy (nats,
averaged over queries; log(L) is uniform) and the attention mass on the task's target position
(1.0 = every query looks exactly where the answer is).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nanovla.errors import InputError
from nanovla.labs.common import (
    LabConfig,
    check_choice,
    check_positive,
    plot_curves,
    pyplot,
    save_figure,
    setup,
    write_metrics,
)
from nanovla.nn import MultiHeadAttention, SinusoidalPositionalEncoding, sinusoidal_table
from nanovla.progress import progress

TASKS = ("reverse", "copy")


@dataclass
class AttentionConfig(LabConfig):
    """Attention-head heatmaps (the seed's untrained 8-head module, and a tiny model trained on
    a reverse/copy task) and the positional-encoding matrix, as PNGs."""

    task: str = "reverse"
    """sequence task the tiny model learns: reverse or copy"""
    out: Path = Path("runs/lab-attention")
    """directory for metrics.json and the PNGs"""
    steps: int = 400
    """Adam steps on fresh random batches"""
    seq_len: int = 10
    """tokens per sequence (the seed's 10)"""
    vocab: int = 10
    """distinct tokens (digits 0-9)"""
    d_model: int = 64
    """model width"""
    num_heads: int = 4
    """attention heads (must divide d_model)"""
    batch_size: int = 128
    """sequences per step"""
    lr: float = 3e-3
    """Adam learning rate"""


class TinyAttentionModel(nn.Module):
    """Embedding + sinusoidal positions -> MultiHeadAttention -> MLP -> logits (no residual)."""

    def __init__(self, vocab: int, seq_len: int, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.positions = SinusoidalPositionalEncoding(d_model, max_len=seq_len)
        self.attention = MultiHeadAttention(d_model, num_heads)
        self.mlp = nn.Sequential(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, 2 * d_model),
            nn.ReLU(),
            nn.Linear(2 * d_model, vocab),
        )

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """tokens (B, L) -> (logits (B, L, vocab), attention weights (B, H, L, L))."""
        x = self.positions(self.embed(tokens))  # (B, L, d_model)
        mixed, weights = self.attention(x, x, x)  # (B, L, d_model), (B, H, L, L)
        return self.mlp(mixed), weights


def target_positions(task: str, seq_len: int) -> Tensor:
    """(L,) the input position each output position must read."""
    positions = torch.arange(seq_len)
    return positions.flip(0) if task == "reverse" else positions


def sample_batch(config: AttentionConfig, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random token sequences (B, L) and their task targets (B, L)."""
    tokens = torch.randint(
        0, config.vocab, (config.batch_size, config.seq_len), generator=generator
    )
    return tokens, tokens[:, target_positions(config.task, config.seq_len)]


def train(
    config: AttentionConfig, generator: torch.Generator
) -> tuple[TinyAttentionModel, list[float]]:
    """Trains the tiny model on fresh batches; returns it and the loss per step."""
    model = TinyAttentionModel(config.vocab, config.seq_len, config.d_model, config.num_heads)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    losses = []
    for _ in progress(range(config.steps), desc=config.task, unit="step", leave=False):
        tokens, targets = sample_batch(config, generator)
        logits, _ = model(tokens)  # (B, L, vocab)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return model, losses


def head_statistics(weights: Tensor, targets: Tensor) -> tuple[list[float], list[float]]:
    """weights (B, H, L, L), target key per query (L,) -> per head (mean entropy in nats,
    mean weight on the target key)."""
    entropy = -(weights * weights.clamp(min=1e-12).log()).sum(-1).mean(dim=(0, 2))  # (H,)
    index = targets.view(1, 1, -1, 1).expand(weights.shape[0], weights.shape[1], -1, 1)
    on_target = weights.gather(-1, index).squeeze(-1).mean(dim=(0, 2))  # (H,)
    return entropy.tolist(), on_target.tolist()


def plot_heads(path: Path, weights: Tensor, title: str, tokens: Tensor | None = None) -> None:
    """One heatmap per head of `weights` (H, L, L), as the seed draws them (2 rows if H > 4)."""
    plt = pyplot()
    heads = weights.shape[0]
    rows = 2 if heads > 4 else 1
    columns = math.ceil(heads / rows)
    figure, axes = plt.subplots(
        rows, columns, figsize=(4.2 * columns, 3.6 * rows), squeeze=False, layout="constrained"
    )
    for head, axis in enumerate(axes.flat):
        if head >= heads:
            axis.set_axis_off()
            continue
        image = axis.imshow(weights[head].numpy(), cmap="hot", interpolation="nearest", vmin=0)
        axis.set_title(f"head {head + 1}")
        axis.set_xlabel("key")
        axis.set_ylabel("query")
        if tokens is not None:
            labels = [str(t) for t in tokens.tolist()]
            axis.set_xticks(range(len(labels)), labels)
            axis.set_yticks(range(len(labels)), labels)
        figure.colorbar(image, ax=axis, fraction=0.046)
    figure.suptitle(title)
    save_figure(figure, path)


def plot_positional_encoding(path: Path, max_len: int = 100, d_model: int = 128) -> None:
    """The seed's positional-encoding picture: the (d_model, max_len) table, RdBu."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(12, 8))
    image = axis.imshow(sinusoidal_table(max_len, d_model).T.numpy(), cmap="RdBu", aspect="auto")
    axis.set_xlabel("position")
    axis.set_ylabel("dimension")
    axis.set_title("sinusoidal positional encoding")
    figure.colorbar(image, ax=axis)
    save_figure(figure, path)


def untrained_heads(path: Path, seq_len: int) -> None:
    """The seed's visualize_attention: d_model 512, 8 heads, random input, random weights."""
    module = MultiHeadAttention(d_model=512, num_heads=8)
    x = torch.randn(1, seq_len, 512)
    with torch.no_grad():
        _, weights = module(x, x, x)  # (1, 8, L, L)
    plot_heads(path, weights[0], "untrained MultiHeadAttention(512, 8) on random input")


def _check(config: AttentionConfig) -> None:
    check_choice("task", config.task, TASKS)
    check_positive(
        steps=config.steps,
        seq_len=config.seq_len,
        vocab=config.vocab,
        d_model=config.d_model,
        num_heads=config.num_heads,
        batch_size=config.batch_size,
        lr=config.lr,
    )
    if config.d_model % config.num_heads:
        raise InputError(f"--num-heads: {config.num_heads} must divide --d-model {config.d_model}")


def run(config: AttentionConfig) -> dict[str, object]:
    """Trains the tiny model, measures it, writes the heatmaps, the PE matrix and metrics."""
    _check(config)
    out = setup(config)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)
    untrained_heads(out / "attention_heads_untrained.png", config.seq_len)
    plot_positional_encoding(out / "positional_encoding.png")
    model, losses = train(config, generator)
    model.eval()
    with torch.no_grad():
        tokens, targets = sample_batch(config, generator)
        logits, weights = model(tokens)
    correct = logits.argmax(-1) == targets  # (B, L)
    entropy, on_target = head_statistics(weights, target_positions(config.task, config.seq_len))
    title = f"trained on {config.task}: attention of one test sequence"
    plot_heads(out / "attention_heads.png", weights[0], title, tokens[0])
    plot_curves(out / "loss.png", {f"{config.task}: cross-entropy": {"train": losses}}, "step")
    metrics = {
        "task": config.task,
        "token_accuracy": correct.float().mean().item(),
        "sequence_accuracy": correct.all(1).float().mean().item(),
        "final_loss": losses[-1],
        "attention_entropy": sum(entropy) / len(entropy),
        "head_entropy": entropy,
        "uniform_entropy": math.log(config.seq_len),
        "head_target_attention": on_target,
        "wall_time_s": time.perf_counter() - start,
    }
    write_metrics(out, metrics, config)
    print(
        f"{config.task}: token accuracy {metrics['token_accuracy']:.1%}, sequence accuracy "
        f"{metrics['sequence_accuracy']:.1%} after {config.steps} steps"
    )
    for head, (h, mass) in enumerate(zip(entropy, on_target)):
        print(
            f"head {head + 1}: entropy {h:.3f} nats (uniform {math.log(config.seq_len):.3f}), "
            f"weight on the target position {mass:.3f}"
        )
    print(
        f"wrote {out}/metrics.json, attention_heads.png, attention_heads_untrained.png, "
        "positional_encoding.png, loss.png"
    )
    return metrics
