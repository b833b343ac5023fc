"""Training throughput on a GPU (or the CPU): samples/s of the default VLA policy and of a larger
one (ViT-Ti/16 vision encoder) at several batch sizes.

Each (policy, batch size) cell builds the policy on the device, keeps one fixed batch of random
64x64 frames, states and action chunks there (uploaded once through pinned memory), and times
the engine's step: forward under autocast (bf16, or fp16 with torch's GradScaler), backward,
gradient clipping, fused AdamW, `zero_grad(set_to_none=True)`; warm-up steps first, then
`--steps` timed steps between `torch.cuda.synchronize()` calls. On CUDA it also prints the
allocator's peak memory. Data loading is left out (see benchmarks/train_throughput.py for the
loader-vs-pure ratio; with `nanovla train --gpu-frames` the loader builds batches on the GPU).

Run: `.venv/bin/python benchmarks/gpu_train.py --device cuda --amp bf16`; on a CPU-only machine
`--device cpu` runs the same cells with smaller default batch sizes.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Literal

import torch

from nanovla.models.policy import Policy, PolicyConfig
from nanovla.models.text.tokenizer import Tokenizer
from nanovla.pipeline import default_policy_config
from nanovla.train import build_optimizer
from nanovla.train.engine import resolve_device

TASKS = ["go to the red box", "push the blue ball to the left side", "빨간 상자를 파란 그릇에 넣어"]
STATS = {
    "observation.image": {"mean": [[[0.5]], [[0.5]], [[0.5]]], "std": [[[0.25]]] * 3},
    "observation.state": {"mean": [0.5] * 4, "std": [0.3] * 4},
    "action": {"min": [-1.0] * 3, "max": [1.0] * 3},
}


@dataclass
class Args:
    """GPU training throughput of the default and a ViT-Ti/16 policy."""

    device: Literal["cuda", "cpu", "auto"] = "auto"
    """where to train"""
    amp: Literal["none", "bf16", "fp16"] = "bf16"
    """autocast precision (fp16 uses GradScaler; CUDA only)"""
    batch_sizes: tuple[int, ...] = ()
    """batch sizes to time (default: 64 256 1024 4096 on CUDA, 64 256 on the CPU)"""
    policies: tuple[str, ...] = ("default", "vit_tiny")
    """default = nanovla train's policy; vit_tiny = the same with vit_tiny_patch16_224 vision"""
    steps: int = 20
    """timed steps per cell"""
    warmup: int = 3
    """untimed steps first (cuDNN autotuning, allocator warm-up)"""
    threads: int = 1
    """torch CPU threads"""


def build(name: str, device: torch.device) -> Policy:
    base = default_policy_config()
    fields = {f: getattr(base, f) for f in PolicyConfig.__dataclass_fields__}
    if name == "vit_tiny":
        fields["vision"] = "vit_tiny_patch16_224"
    config = PolicyConfig(**fields)
    tokenizer = Tokenizer.from_texts(TASKS, level=config.tokenizer_level)
    torch.manual_seed(0)
    return Policy(config, dataset_stats=STATS, tokenizer=tokenizer).to(device).train()


def fixed_batch(policy: Policy, batch_size: int, device: torch.device) -> dict:
    size, chunk = policy.config.image_size, policy.config.chunk
    g = torch.Generator().manual_seed(0)
    batch = {
        "observation.image": torch.randint(0, 256, (batch_size, 3, size, size), generator=g).byte(),
        "observation.state": torch.rand(batch_size, 4, generator=g),
        "action": torch.rand(batch_size, chunk, 3, generator=g) * 2 - 1,
        "action_is_pad": torch.zeros(batch_size, chunk, dtype=torch.bool),
    }
    pin = device.type == "cuda"
    moved = {
        k: (v.pin_memory() if pin else v).to(device, non_blocking=True) for k, v in batch.items()
    }
    return {**moved, "task": [TASKS[i % len(TASKS)] for i in range(batch_size)]}


def time_cell(policy: Policy, batch: dict, args: Args, device: torch.device) -> float:
    """Seconds per step: the wall time of `args.steps` timed steps (after the warm-up) / steps."""
    optimizer = build_optimizer(policy, 1e-3, 0.01, (0.9, 0.999))
    scaler = torch.amp.GradScaler("cuda") if args.amp == "fp16" else None
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)

    def step() -> None:
        autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with autocast:
            loss, _ = policy(batch)
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    return (time.perf_counter() - start) / args.steps


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.amp == "fp16" and device.type != "cuda":
        raise SystemExit("--amp fp16 needs CUDA; use bf16 or none on the CPU")
    sizes = args.batch_sizes or ((64, 256, 1024, 4096) if device.type == "cuda" else (64, 256))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {name}, amp {args.amp}, {args.steps} timed steps, {args.threads} thread(s)")
    print(
        f"{'policy':<9} {'params':>8} {'batch':>6} {'samples/s':>10} {'ms/step':>8} {'peak MiB':>9}"
    )
    for policy_name in args.policies:
        for batch_size in sizes:
            policy = build(policy_name, device)
            params = sum(p.numel() for p in policy.parameters() if p.requires_grad)
            batch = fixed_batch(policy, batch_size, device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds = time_cell(policy, batch, args, device)
            peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0
            peak_text = f"{peak:>9.0f}" if device.type == "cuda" else f"{'-':>9}"
            print(
                f"{policy_name:<9} {params / 1e6:>7.2f}M {batch_size:>6} "
                f"{batch_size / seconds:>10.0f} {1000 * seconds:>8.1f} {peak_text}",
                flush=True,
            )
            del policy, batch
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    import tyro

    main(tyro.cli(Args))
