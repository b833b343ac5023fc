"""Normalisation inside the model (as LeRobot does): the statistics travel with the weights.

Stats come in the dataset's ``meta/stats.json`` format, ``{feature: {"min", "max", "mean",
"std", "count"}}`` with image stats per channel shaped (3, 1, 1) in [0, 1] units. They become
buffers, so `state_dict()` / ``model.safetensors`` carry them and a checkpoint needs no dataset:

- image: uint8 -> /255 -> (x - mean) / std per channel (one fused multiply-add)
- state: (x - mean) / std
- action: [min, max] -> [-1, 1] for the tanh head, and back at the output
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from nanovla.errors import InputError

IMAGE, STATE, ACTION = "observation.image", "observation.state", "action"
_MIN_STD = 1e-3  # a feature constant in the data must not blow up to +-inf when it moves
_MIN_RANGE = 1e-6


def _stat(stats: Mapping[str, Any], feature: str, key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """stats[feature][key] as a float32 tensor of `shape`; missing or misshapen -> ValueError."""
    if feature not in stats:
        raise InputError(
            f"dataset stats have no entry for feature {feature!r} (has: {sorted(stats)})"
        )
    if key not in stats[feature]:
        raise InputError(f"dataset stats for feature {feature!r} have no {key!r}")
    value = torch.as_tensor(np.asarray(stats[feature][key], dtype=np.float32))
    if value.numel() != int(np.prod(shape)):
        raise InputError(
            f"dataset stats {feature!r}/{key!r} have shape {tuple(value.shape)}, expected {shape}"
        )
    if not torch.isfinite(value).all():
        raise InputError(f"dataset stats {feature!r}/{key!r} contain NaN or inf")
    return value.reshape(shape)


class Normalizer(nn.Module):
    """Holds the stats as buffers and maps raw inputs/actions to the network's units and back.

    Built without stats (``stats=None``, as `from_pretrained` does before loading the weights)
    the buffers are NaN and `check_ready` refuses to run until real ones are loaded.
    """

    def __init__(self, state_dim: int, action_dim: int, stats: Mapping[str, Any] | None = None):
        super().__init__()
        nan = float("nan")
        self.register_buffer("image_mean", torch.full((3, 1, 1), nan))
        self.register_buffer("image_std", torch.full((3, 1, 1), nan))
        self.register_buffer("state_mean", torch.full((state_dim,), nan))
        self.register_buffer("state_std", torch.full((state_dim,), nan))
        self.register_buffer("action_min", torch.full((action_dim,), nan))
        self.register_buffer("action_max", torch.full((action_dim,), nan))
        self.ready = False
        if stats is not None:
            self.set_stats(stats)
        self.register_load_state_dict_post_hook(lambda module, _keys: module._refresh_ready())

    def set_stats(self, stats: Mapping[str, Any]) -> None:
        """Copy the dataset's stats (meta/stats.json dict) into the buffers."""
        if not isinstance(stats, Mapping):
            raise InputError(
                f"dataset_stats must be a dict of features, got {type(stats).__name__}"
            )
        state_dim, action_dim = self.state_mean.numel(), self.action_min.numel()
        with torch.no_grad():
            self.image_mean.copy_(_stat(stats, IMAGE, "mean", (3, 1, 1)))
            self.image_std.copy_(_stat(stats, IMAGE, "std", (3, 1, 1)).clamp_min(_MIN_STD))
            if state_dim:
                self.state_mean.copy_(_stat(stats, STATE, "mean", (state_dim,)))
                self.state_std.copy_(_stat(stats, STATE, "std", (state_dim,)).clamp_min(_MIN_STD))
            self.action_min.copy_(_stat(stats, ACTION, "min", (action_dim,)))
            self.action_max.copy_(_stat(stats, ACTION, "max", (action_dim,)))
        self._refresh_ready()

    def _refresh_ready(self) -> None:
        self.ready = all(bool(torch.isfinite(buffer).all()) for buffer in self.buffers())

    def check_ready(self) -> None:
        if not self.ready:
            raise InputError(
                "the policy has no normalization stats: pass dataset_stats=dataset.stats, "
                "or build it with Policy.from_dataset / Policy.from_pretrained"
            )

    def image(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> normalised float (B, 3, H, W), same memory format.

        x / 255 then (x - mean) / std, folded into one in-place multiply-add on the fresh copy."""
        scale = 1.0 / (255.0 * self.image_std)  # (3, 1, 1)
        shift = -self.image_mean / self.image_std  # (3, 1, 1)
        return image.float().mul_(scale).add_(shift)

    def state(self, state: torch.Tensor) -> torch.Tensor:
        """raw (B, D) -> standardised (B, D)."""
        return (state - self.state_mean) / self.state_std

    def action(self, action: torch.Tensor) -> torch.Tensor:
        """raw (..., A) -> [-1, 1] (..., A)."""
        span = (self.action_max - self.action_min).clamp_min(_MIN_RANGE)
        return 2.0 * (action - self.action_min) / span - 1.0

    def unnormalize_action(self, action: torch.Tensor) -> torch.Tensor:
        """[-1, 1] (..., A) -> raw units (..., A)."""
        span = (self.action_max - self.action_min).clamp_min(_MIN_RANGE)
        return (action + 1.0) * 0.5 * span + self.action_min
