"""The policy's vision encoder, chosen by name from the model registry.

Any registered model with `forward_features` works: CNNs give a grid ``(B, C, h, w)``; models that
give tokens ``(B, N, C)`` (ViT) are folded back into a square grid, dropping a leading class
token when N - 1 is a perfect square.

The backbone is built with ``num_classes=0`` (timm's identity head), plus ``global_pool=""`` where
the builder takes it (a pooling step with parameters, such as vla_cnn's spatial softmax or
LeNet's flatten MLP, is then not built) and ``img_size`` where the input size is fixed at build
time (ViT, LeNet); `registry.model_arguments` says which builder takes which. So every parameter
of the backbone is used by `forward_features` and trained. The grid shape comes from one forward
pass of a second copy of the backbone on the meta device: exact for any padding and stride, and
it allocates no memory, runs no kernel, draws no random numbers and leaves the real model's
BatchNorm statistics alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nanovla.errors import InputError
from nanovla.models.policy.configuration_policy import PolicyConfig
from nanovla.models.registry import create_model, model_arguments


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


def backbone_kwargs(config: PolicyConfig) -> dict[str, object]:
    """The `create_model` keyword arguments the policy builds `config.vision` with."""
    if config.vision == "vla_cnn":
        return dict(
            num_classes=0, in_chans=3, global_pool="", widths=config.vision_widths,
            extra_blocks=config.vision_extra_blocks, channels_last=config.channels_last,
            stem_stride=config.vision_stem_stride,
        )  # fmt: skip
    accepted = model_arguments(config.vision)
    kwargs: dict[str, object] = {"num_classes": 0, "in_chans": 3}
    if "global_pool" in accepted:
        kwargs["global_pool"] = ""
    if "img_size" in accepted:
        kwargs["img_size"] = config.image_size
    return kwargs


def build_vision_encoder(config: PolicyConfig) -> tuple[nn.Module, tuple[int, int, int]]:
    """(encoder with forward_features -> (B, C, h, w), its grid shape (C, h, w))."""
    if config.vision.startswith("clip:"):
        return _clip_vision_encoder(config)
    kwargs = backbone_kwargs(config)
    model = create_model(config.vision, **kwargs)
    if not hasattr(model, "forward_features"):
        raise InputError(f"vision model {config.vision!r} has no forward_features; pick a backbone")
    encoder = model if config.vision == "vla_cnn" else TokensToGrid(model)
    with torch.device("meta"):
        shadow = create_model(config.vision, **kwargs).eval()
        probe = torch.empty(1, 3, config.image_size, config.image_size)
        grid = tokens_to_grid(shadow.forward_features(probe))  # (1, C, h, w), shapes only
    return encoder, tuple(grid.shape[1:])


def _clip_vision_encoder(config: PolicyConfig) -> tuple[nn.Module, tuple[int, int, int]]:
    """The image tower of the CLIP at `clip:PATH` (frozen or fine-tuned), as a grid encoder.

    The policy standardises images with its dataset's statistics; the CLIP was trained on the
    same world's renders with statistics of its own, which differ little."""
    from nanovla.models.clip import load_config
    from nanovla.models.clip_policy import pretrained_vision_encoder

    path = config.vision.removeprefix("clip:")
    clip_config, _ = load_config(path)
    if clip_config.image_size != config.image_size:
        raise InputError(
            f"vision={config.vision!r}: the CLIP takes {clip_config.image_size}px images, the "
            f"policy {config.image_size}px"
        )
    encoder = TokensToGrid(pretrained_vision_encoder(path, config.clip_frozen))
    mode = encoder.training
    device = next(encoder.parameters()).device
    with torch.no_grad():  # eval mode: a shape probe must not move BatchNorm statistics
        probe = torch.zeros(1, 3, config.image_size, config.image_size, device=device)
        grid = encoder.eval().forward_features(probe)
    encoder.train(mode)
    return encoder, tuple(grid.shape[1:])
