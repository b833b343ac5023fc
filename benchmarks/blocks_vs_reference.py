"""Time ratios ours / reference for the nanovla.nn blocks and ViT (lower is better; target <= 1.05).

    .venv/bin/python benchmarks/blocks_vs_reference.py            # ViT-Tiny sizes, 1 thread
    .venv/bin/python benchmarks/blocks_vs_reference.py --threads 4 --repeats 30

Pairs, each with the same weights copied in, at ViT-Tiny/16-224 sizes (batch 8, 197 tokens,
width 192, 3 heads):
- `MultiHeadAttention` vs `torch.nn.MultiheadAttention` (self-attention, no weights returned)
- `TransformerEncoderLayer` vs `torch.nn.TransformerEncoderLayer` (pre-norm, GELU, as ViT)
- `vit_tiny_patch16_224` (forward_features) vs Hugging Face `ViTModel` (random init, offline)

"forward" is inference (eval mode, `torch.inference_mode`, where torch's own fused fast paths
kick in for the reference); "fwd+bwd" is a training step's forward and backward (train mode,
dropout 0). Timings alternate ours/reference (and which goes first) so load from other processes
hits both alike; the ratio is of the medians measured in the same run.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import tyro  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from nanovla.models import create_model  # noqa: E402
from nanovla.models.vision.vit_hf import load_hf_vit_state_dict  # noqa: E402
from nanovla.nn import (  # noqa: E402
    MultiHeadAttention,
    TransformerEncoderLayer,
    load_from_torch_layer,
    load_from_torch_mha,
)


@dataclass
class BenchConfig:
    """Benchmark settings; the defaults are ViT-Tiny/16 at 224 px on one CPU thread."""

    batch: int = 8
    """sequences (images) per call"""
    img_size: int = 224
    """ViT input size; the blocks use its token count (img_size / 16) ** 2 + 1"""
    repeats: int = 15
    """timed calls per model and mode (the median is reported)"""
    warmup: int = 3
    """untimed calls first (allocator, kernels, caches)"""
    threads: int = 1
    """torch intra-op threads; 0 keeps torch's default"""
    only: str = ""
    """run only the benchmarks whose name contains this (e.g. "vit"); empty = all"""
    clock: str = "cpu"
    """"cpu": process CPU time (robust when other jobs share the cores: time spent waiting for
    a core is not counted); "wall": elapsed time (what a user waits, on an idle machine)"""


Step = Callable[[], object]


def _steps(model: nn.Module, make_input: Callable[[], tuple], call: Callable) -> dict[str, Step]:
    """The two timed modes for one model: inference forward, and forward + backward."""

    def forward() -> object:
        model.eval()
        with torch.inference_mode():
            return call(model, *make_input())

    def forward_backward() -> object:
        model.train()
        out = call(model, *make_input())
        out.float().square().mean().backward()
        model.zero_grad(set_to_none=True)
        return None

    return {"forward": forward, "fwd+bwd": forward_backward}


_CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def _time_pair(ours: Step, reference: Step, config: BenchConfig) -> tuple[float, float]:
    """Median seconds of each, interleaved (and alternating which goes first)."""
    clock = _CLOCKS[config.clock]
    for _ in range(config.warmup):
        ours()
        reference()
    times: dict[str, list[float]] = {"ours": [], "reference": []}
    for index in range(config.repeats):
        order = [("ours", ours), ("reference", reference)]
        for name, step in order if index % 2 == 0 else order[::-1]:
            start = clock()
            step()
            times[name].append(clock() - start)
    return statistics.median(times["ours"]), statistics.median(times["reference"])


def _mha_pair(config: BenchConfig, tokens: int) -> tuple[dict[str, Step], dict[str, Step]]:
    reference = nn.MultiheadAttention(192, 3, batch_first=True)
    ours = MultiHeadAttention(192, 3)
    load_from_torch_mha(ours, reference)
    x = torch.randn(config.batch, tokens, 192)

    def make_input() -> tuple:
        return (x.detach().requires_grad_(torch.is_grad_enabled()),)

    def call_ours(model: nn.Module, inp: torch.Tensor) -> torch.Tensor:
        return model(inp, inp, inp, need_weights=False)[0]

    return _steps(ours, make_input, call_ours), _steps(reference, make_input, call_ours)


def _layer_pair(config: BenchConfig, tokens: int) -> tuple[dict[str, Step], dict[str, Step]]:
    reference = nn.TransformerEncoderLayer(
        192, 3, 768, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    ours = TransformerEncoderLayer(192, 3, 768, dropout=0.0, activation="gelu", norm_first=True)
    load_from_torch_layer(ours, reference)
    x = torch.randn(config.batch, tokens, 192)

    def make_input() -> tuple:
        return (x.detach().requires_grad_(torch.is_grad_enabled()),)

    def call(model: nn.Module, inp: torch.Tensor) -> torch.Tensor:
        return model(inp)

    return _steps(ours, make_input, call), _steps(reference, make_input, call)


def _vit_pair(config: BenchConfig) -> tuple[dict[str, Step], dict[str, Step]]:
    from transformers import ViTConfig, ViTModel

    hf_config = ViTConfig(
        hidden_size=192,
        num_hidden_layers=12,
        num_attention_heads=3,
        intermediate_size=768,
        image_size=config.img_size,
        patch_size=16,
        layer_norm_eps=1e-6,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    reference = ViTModel(hf_config, add_pooling_layer=False)
    ours = create_model("vit_tiny_patch16_224", img_size=config.img_size, num_classes=0)
    ours.load_state_dict(load_hf_vit_state_dict(reference.state_dict()))
    images = torch.randn(config.batch, 3, config.img_size, config.img_size)

    def make_input() -> tuple:
        return (images,)

    def call_ours(model: nn.Module, inp: torch.Tensor) -> torch.Tensor:
        return model.forward_features(inp)

    def call_hf(model: nn.Module, inp: torch.Tensor) -> torch.Tensor:
        return model(pixel_values=inp).last_hidden_state

    return _steps(ours, make_input, call_ours), _steps(reference, make_input, call_hf)


def main(argv: list[str] | None = None) -> int:
    config = tyro.cli(BenchConfig, args=argv, prog="blocks_vs_reference.py")
    if config.clock not in _CLOCKS:
        raise ValueError(f"--clock must be one of {sorted(_CLOCKS)}, got {config.clock!r}")
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.manual_seed(0)
    tokens = (config.img_size // 16) ** 2 + 1
    benches = {
        "multi-head attention": (lambda: _mha_pair(config, tokens), "torch.nn.MultiheadAttention"),
        "encoder layer": (lambda: _layer_pair(config, tokens), "torch.nn.TransformerEncoderLayer"),
        "vit_tiny_patch16": (lambda: _vit_pair(config), "transformers.ViTModel"),
    }
    selected = {name: bench for name, bench in benches.items() if config.only in name}
    if not selected:
        raise ValueError(f"--only {config.only!r} matches none of {sorted(benches)}")
    rows = []
    progress = tqdm(total=2 * len(selected), desc="benchmarks", leave=False)
    for name, (build, reference_name) in selected.items():
        ours, reference = build()
        for mode in ("forward", "fwd+bwd"):
            ours_s, reference_s = _time_pair(ours[mode], reference[mode], config)
            rows.append((name, reference_name, mode, ours_s, reference_s))
            progress.update()
    progress.close()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {config.batch}, "
        f"{tokens} tokens, width 192, 3 heads; median {config.clock} time of {config.repeats} "
        "interleaved runs"
    )
    print(f"{'block':<22}{'reference':<34}{'mode':<9}{'ours ms':>9}{'ref ms':>9}{'ratio':>7}")
    for name, reference_name, mode, ours_s, reference_s in rows:
        print(
            f"{name:<22}{reference_name:<34}{mode:<9}{ours_s * 1e3:>9.2f}{reference_s * 1e3:>9.2f}"
            f"{ours_s / reference_s:>7.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
