"""The policy's vision encoder, chosen by name from the model registry.

Any registered model with `forward_features` works: CNNs give a grid ``(B, C, h, w)``; models that
give tokens ``(B, N, C)`` (ViT) are folded back into a square grid, dropping a leading class
token when N - 1 is a perfect square. The channel count is found by one dummy forward pass,
and its backward pass finds the parameters `forward_features` never uses (a zoo model's
classifier: not every family accepts ``num_classes=0``); those are frozen (requires_grad=False),
so the optimizer skips them while the state dict keeps the model's usual layout.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nanovla.errors import InputError
from nanovla.models.policy.configuration_policy import PolicyConfig
from nanovla.models.registry import create_model


class TokensToGrid(nn.Module):
    """Wraps a vision model so `forward_features` always returns a grid (B, C, h, w)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return tokens_to_grid(self.model.forward_features(x))


def tokens_to_grid(features: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) unchanged; (B, N, C) square tokens (+ maybe a class token) -> (B, C, s, s)."""
    if features.ndim == 4:
        return features
    if features.ndim != 3:
        raise InputError(
            "vision forward_features must give (B, C, h, w) or (B, N, C), "
            f"got {tuple(features.shape)}"
        )
    num_tokens = features.shape[1]
    for skip in (0, 1):
        side = math.isqrt(num_tokens - skip)
        if side * side == num_tokens - skip:
            tokens = features[:, skip:]  # (B, s*s, C)
            return tokens.transpose(1, 2).reshape(features.shape[0], -1, side, side)
    raise InputError(f"vision tokens ({num_tokens}) do not form a square grid")


def _create(config: PolicyConfig) -> nn.Module:
    if config.vision == "vla_cnn":
        return create_model(
            "vla_cnn", num_classes=0, in_chans=3, global_pool="", widths=config.vision_widths,
            extra_blocks=config.vision_extra_blocks, channels_last=config.channels_last,
            stem_stride=config.vision_stem_stride,
        )  # fmt: skip
    try:  # models with a configurable input size (ViT) need it; the others refuse the keyword
        return create_model(config.vision, num_classes=1, in_chans=3, img_size=config.image_size)
    except TypeError:
        return create_model(config.vision, num_classes=1, in_chans=3)


def build_vision_encoder(config: PolicyConfig) -> tuple[nn.Module, tuple[int, int, int]]:
    """(encoder with forward_features -> (B, C, h, w), its grid shape (C, h, w))."""
    model = _create(config)
    if not hasattr(model, "forward_features"):
        raise InputError(f"vision model {config.vision!r} has no forward_features; pick a backbone")
    encoder = model if config.vision == "vla_cnn" else TokensToGrid(model)
    was_training = model.training
    model.eval()  # the probe must not touch BatchNorm running stats
    probe = torch.zeros(2, 3, config.image_size, config.image_size)
    grid = encoder.forward_features(probe)  # (2, C, h, w)
    grid.float().sum().backward()
    for parameter in model.parameters():
        if parameter.grad is None:
            parameter.requires_grad_(False)  # unused by forward_features (the classifier)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return encoder, tuple(grid.shape[1:])
