"""`nanovla lab memory`: what gradient checkpointing and bf16 autocast do to a training step's
peak memory and time (the seed's "GPU memory optimization" chapter: checkpointing, memory
profiling, memory clean-up), measured on a zoo model larger than the VLA's (ViT-S/16 at 224).

Each variant trains the same model from the same initial weights on the same fixed batch:

- `fp32`: the plain step (forward, cross-entropy, backward, AdamW, `zero_grad(set_to_none)`);
- `+ckpt`: `model.set_grad_checkpointing(True)`: each Transformer block runs under
  `torch.utils.checkpoint` (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost",
  https://arxiv.org/abs/1604.06174): only the block inputs are kept in forward, and each block's
  activations are recomputed during backward, trading about one extra forward for memory;
- `bf16`: the forward under `torch.autocast(dtype=torch.bfloat16)` (weights, gradients and AdamW
  state stay fp32; matmul inputs and activations are bf16, half the bytes).

Peak memory of one step (after a warm-up step, so AdamW's state already exists):
- on CPU, torch.profiler with `profile_memory=True` records every allocation and free, and its
  memory timeline (`export_memory_timeline`) sorts each tensor into a category (parameter,
  gradient, optimizer state, activation, temporary, ...): the peak is the largest total over
  the step, and its break-down at that instant is what the plot stacks. The profiler's own
  operator table (`key_averages().table(sort_by="self_cpu_memory_usage")`) is written to
  `OUT/profile_<variant>.txt`.
- on CUDA, `torch.cuda.max_memory_allocated()` after `reset_peak_memory_stats()` (the caching
  allocator's peak; the break-down there is "static" = allocated before the step, and the rest).
Step time is the median of `--steps` steps run without the profiler, as wall time and as this
process's CPU time (on a shared CPU the wall time includes waiting for a core; the CPU time is
the work itself; on CUDA only the wall time means anything). Between variants
the model, optimizer and batch are deleted and `gc.collect()` (and `torch.cuda.empty_cache()`
on a GPU) returns their memory, the seed's clean-up step.

Departures from the seed's sketch: it checkpoints hand-picked layers of a toy model; here the
zoo model's own `set_grad_checkpointing` wraps every block. The seed's "mixed precision saves 50%
memory and runs 1.5-2x faster" is a GPU figure; on a CPU without bf16 matrix units autocast
saves activation memory but is usually slower (the lab prints what this machine does).
"""

from __future__ import annotations

import gc
import json
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from nanovla.errors import InputError
from nanovla.labs.common import LabConfig, check_positive, pyplot, save_figure, setup, write_metrics
from nanovla.models import create_model
from nanovla.models.registry import list_models, model_arguments

VARIANTS = ("fp32", "fp32+ckpt", "bf16", "bf16+ckpt")
CATEGORIES = ("parameters", "optimizer", "gradients", "activations", "temporary", "other")
"""the plot's stack, from torch.profiler's categories (input, autograd detail and unknown are
"other")"""
_PROFILER_INDEX = {  # column of export_memory_timeline's sizes (see torch.profiler._memory_profiler)
    "parameters": 1, "optimizer": 2, "input": 3, "temporary": 4, "activations": 5,
    "gradients": 6, "autograd": 7, "unknown": 8,
}  # fmt: skip
MIB = 2**20


@dataclass
class MemoryConfig(LabConfig):
    """Train a few steps of a larger zoo model with and without gradient checkpointing and bf16
    autocast; print each variant's peak memory (torch.profiler's memory timeline on CPU,
    torch.cuda.max_memory_allocated on a GPU) and step time; plot them (memory.png)."""

    out: Path = Path("runs/lab-memory")
    """directory for metrics.json, memory.png and the profiler tables"""
    model: str = "vit_small_patch16_224"
    """zoo vision model (any with set_grad_checkpointing: vit_*, resnet*, mobilenet*, ...)"""
    img_size: int = 224
    """input images are img_size x img_size"""
    batch_size: int = 4
    """images per step (random, fixed for every variant)"""
    steps: int = 2
    """timed steps per variant (after one warm-up step and one profiled step)"""
    variants: tuple[str, ...] = VARIANTS
    """which to run: fp32, fp32+ckpt, bf16, bf16+ckpt"""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """where to train; auto = CUDA when available"""
    num_classes: int = 10
    """classes of the random labels (the head's width)"""
    lr: float = 1e-4
    """AdamW learning rate"""


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: torch sees no CUDA device; use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _check(config: MemoryConfig) -> None:
    check_positive(img_size=config.img_size, batch_size=config.batch_size, steps=config.steps)
    check_positive(num_classes=config.num_classes, lr=config.lr)
    unknown = [v for v in config.variants if v not in VARIANTS]
    if unknown or not config.variants:
        raise InputError(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    if config.model not in list_models():
        raise InputError(f"--model {config.model!r}: not in the zoo; try vit_small_patch16_224")


def _build(config: MemoryConfig, device: torch.device, checkpointing: bool) -> torch.nn.Module:
    kwargs: dict[str, Any] = {"num_classes": config.num_classes}
    if "img_size" in model_arguments(config.model):
        kwargs["img_size"] = config.img_size
    torch.manual_seed(config.seed)
    model = create_model(config.model, **kwargs).to(device)
    if not callable(getattr(model, "set_grad_checkpointing", None)):
        raise InputError(f"--model {config.model}: has no set_grad_checkpointing()")
    model.set_grad_checkpointing(checkpointing)
    return model.train()


def _step_fn(model: torch.nn.Module, variant: str, batch: tuple[torch.Tensor, torch.Tensor],
             lr: float) -> Callable[[], float]:  # fmt: skip
    """One training step of `variant` as a closure returning the loss."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    images, labels = batch
    dtype = torch.bfloat16 if variant.startswith("bf16") else None

    def step() -> float:
        with torch.autocast(images.device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(images).float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def _cpu_peak(step: Callable[[], Any], table_path: Path) -> dict[str, float]:
    """Peak MiB of one step from the profiler's memory timeline, by category at the peak."""
    from torch.profiler import ProfilerActivity, profile

    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        step()
    table = prof.key_averages().table(sort_by="self_cpu_memory_usage", row_limit=12)
    table_path.write_text(table + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "timeline.json"
        with warnings.catch_warnings():  # deprecated in favour of a CUDA-only snapshot API
            warnings.simplefilter("ignore", FutureWarning)
            prof.export_memory_timeline(str(path), device="cpu")
        _, sizes = json.loads(path.read_text())
    sizes = np.asarray(sizes, dtype=np.float64)  # (T, 1 + categories) bytes
    at_peak = sizes[int(sizes.sum(axis=1).argmax())]
    column = {name: at_peak[index] / MIB for name, index in _PROFILER_INDEX.items()}
    breakdown = {name: column.get(name, 0.0) for name in CATEGORIES[:-1]}
    breakdown["other"] = column["input"] + column["autograd"] + column["unknown"]
    return {"peak_mib": float(at_peak.sum() / MIB), **{k: float(v) for k, v in breakdown.items()}}


def _cuda_peak(step: Callable[[], Any], device: torch.device) -> dict[str, float]:
    """Peak MiB of one step by the caching allocator: static (before the step) + the rest."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    static = torch.cuda.memory_allocated(device) / MIB
    step()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) / MIB
    return {"peak_mib": peak, "static": static, "other": peak - static}


def measure(config: MemoryConfig, variant: str, device: torch.device) -> dict[str, Any]:
    """Warm-up step, one profiled step (peak memory), `config.steps` timed steps."""
    model = _build(config, device, checkpointing=variant.endswith("+ckpt"))
    generator = torch.Generator().manual_seed(config.seed)
    images = torch.randn(
        config.batch_size, 3, config.img_size, config.img_size, generator=generator
    )
    labels = torch.randint(0, config.num_classes, (config.batch_size,), generator=generator)
    step = _step_fn(model, variant, (images.to(device), labels.to(device)), config.lr)
    first_loss = float(step())  # also creates AdamW's state, so the peak below is a steady step
    if device.type == "cuda":
        memory = _cuda_peak(step, device)
    else:
        memory = _cpu_peak(step, config.out / f"profile_{variant}.txt")
    times, cpu_times = [], []
    for _ in range(config.steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = float(step())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    del model, step, images, labels  # the seed's clean-up: drop references, collect, release
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        **memory,
        "step_ms": 1000 * statistics.median(times),
        "cpu_ms": 1000 * statistics.median(cpu_times),
        "first_loss": first_loss,
        "last_loss": loss,
    }


def format_table(results: dict[str, dict[str, Any]], device: torch.device) -> str:
    """One row per variant: peak memory (and its largest parts), step time, losses."""
    how = "max_memory_allocated" if device.type == "cuda" else "torch.profiler memory timeline"
    lines = [
        f"variant      peak MiB  activations MiB  step ms   CPU ms  vs fp32 (mem, CPU time)"
        f"  first loss  ({how})"
    ]
    base = results.get("fp32")
    for name, row in results.items():
        ratio = ""
        if base is not None:
            ratio = (
                f"{row['peak_mib'] / base['peak_mib']:.2f}x, {row['cpu_ms'] / base['cpu_ms']:.2f}x"
            )
        activations = row.get("activations", float("nan"))
        lines.append(
            f"{name:<11} {row['peak_mib']:>9.1f} {activations:>16.1f} {row['step_ms']:>8.0f} "
            f"{row['cpu_ms']:>8.0f}  {ratio:<23}  {row['first_loss']:.6f}"
        )
    return "\n".join(lines)


def plot(results: dict[str, dict[str, Any]], path: Path, title: str) -> Path:
    """Stacked peak-memory bars (by category) and step-time bars, one per variant."""
    plt = pyplot()
    figure, (memory_axis, time_axis) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(results)
    x = np.arange(len(names))
    parts = [c for c in (*CATEGORIES, "static") if any(c in row for row in results.values())]
    bottom = np.zeros(len(names))
    for part in parts:
        values = np.array([results[name].get(part, 0.0) for name in names])
        memory_axis.bar(x, values, bottom=bottom, label=part)
        bottom += values
    memory_axis.set_xticks(x, names)
    memory_axis.set_ylabel("peak memory of one step (MiB)")
    memory_axis.set_title("peak memory, by what holds it")
    memory_axis.set_ylim(0, 1.3 * bottom.max())  # room for the legend above the bars
    memory_axis.legend(fontsize=8, loc="upper center", ncol=3)
    for offset, key, label in ((-0.2, "step_ms", "wall"), (0.2, "cpu_ms", "CPU (this process)")):
        time_axis.bar(x + offset, [results[name][key] for name in names], width=0.4, label=label)
    time_axis.set_xticks(x, names)
    time_axis.set_ylabel("median step time (ms)")
    time_axis.set_title("step time")
    time_axis.legend(fontsize=8, loc="upper center", ncol=2)
    time_axis.set_ylim(0, 1.2 * max(max(r["step_ms"], r["cpu_ms"]) for r in results.values()))
    for axis in (memory_axis, time_axis):
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle(title, y=1.03)
    return save_figure(figure, path)


def run(config: MemoryConfig) -> dict[str, Any]:
    """Measure every variant, print the table, write metrics.json and memory.png."""
    _check(config)
    out = setup(config)
    device = _device(config.device)
    results: dict[str, dict[str, Any]] = {}
    for variant in config.variants:
        print(f"memory: {variant} ...", flush=True)
        results[variant] = measure(config, variant, device)
    title = (
        f"{config.model} at {config.img_size}px, batch {config.batch_size}, {device.type}, "
        f"{torch.get_num_threads()} thread(s)"
    )
    print(title)
    print(format_table(results, device))
    png = plot(results, out / "memory.png", title)
    metrics = {"device": device.type, "threads": torch.get_num_threads(), "variants": results}
    write_metrics(out, metrics, config)
    print(f"wrote {out / 'metrics.json'} and {png}")
    return metrics
