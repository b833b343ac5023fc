"""The optimizer: AdamW over two parameter groups, and its saved state on resume.

Weight decay applies to matrices, conv kernels and embeddings, not to biases and norm
scales/shifts (as nanoGPT does); frozen parameters get no group. The fused AdamW kernel is used
where torch has it. On resume, the saved state is checked against this optimizer's groups before
anything is loaded, and the moments are given their parameters' memory layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from nanovla.errors import InputError


def build_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups over the trainable parameters: decayed (ndim >= 2) and not (ndim < 2).

    Matrices, conv kernels and embeddings are decayed; biases and norm scales/shifts are not
    (decaying them only fights the normalization). Frozen parameters (`requires_grad=False`,
    e.g. a frozen MiniLM) are left out entirely, so they get neither updates nor optimizer state.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise InputError("model has no parameters with requires_grad=True: nothing to train")
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]
) -> torch.optim.AdamW:
    """AdamW over `build_param_groups(model, weight_decay)`, fused when torch can.

    torch's default AdamW on CPU is the per-tensor Python loop; its fused kernel (CPU and CUDA
    since torch 2.4) did a step of a 24-tensor, 150k-parameter CNN in 0.47 ms against 2.6 ms
    (1.4 ms with `foreach`) on our 2-core machine. Fused needs floating-point parameters on
    CPU or CUDA; anything else gets the `foreach` implementation.
    """
    groups = build_param_groups(model, weight_decay)
    params = [p for group in groups for p in group["params"]]
    fusable = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    implementation = {"fused": True} if fusable else {"foreach": True}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, **implementation)


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """`optimizer.load_state_dict(saved)`, then give the moments their parameters' layout."""
    optimizer.load_state_dict(saved)
    _match_param_layout(optimizer)


def check_optimizer_groups(optimizer: torch.optim.Optimizer, saved: Any, path: Path) -> None:
    """The saved optimizer state has this optimizer's groups and sizes, or a ValueError."""
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise InputError(f"{path}: not an optimizer state (no param_groups)")
    saved_sizes = [len(g.get("params", [])) for g in groups]
    sizes = [len(g["params"]) for g in optimizer.param_groups]
    if saved_sizes != sizes:
        raise InputError(
            f"{path}: parameter groups of sizes {saved_sizes}, this model trains {sizes} "
            "(were parameters frozen or unfrozen since?)"
        )


def _match_param_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each per-parameter state tensor (Adam's moments) its parameter's strides.

    State comes back from safetensors contiguous, while a channels-last conv weight's moments
    were created channels-last; torch's fused CPU AdamW walks the raw memory of param, grad and
    moments together, so mismatched layouts silently pair the wrong elements (measured: a 0.17
    error after one step, and a resumed run drifting away from the straight one).
    """
    for param, state in optimizer.state.items():
        for name, value in state.items():
            is_moment = isinstance(value, torch.Tensor) and value.shape == param.shape
            if is_moment and value.stride() != param.stride():
                state[name] = torch.empty_like(param, dtype=value.dtype).copy_(value)
