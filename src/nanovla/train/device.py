"""Where training runs: the device a config names, and batches moved there (pinned host memory
and non-blocking copies on CUDA)."""

from __future__ import annotations

from typing import Any

import torch

from nanovla.errors import InputError


def resolve_device(name: str) -> torch.device:
    """`cpu` | `cuda` | `auto` (CUDA when available) -> a torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device='cuda' but torch sees no CUDA device; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise InputError(f"device must be one of cpu, cuda, auto; got {name!r}")
    return torch.device(name)


def moved(value: Any, device: torch.device) -> Any:
    """`value` on `device` if it is a tensor elsewhere (through pinned memory from CPU to CUDA),
    else `value` itself."""
    if not isinstance(value, torch.Tensor) or value.device == device:
        return value
    if value.device.type == "cpu" and device.type == "cuda":
        value = value.pin_memory()
    return value.to(device, non_blocking=True)
