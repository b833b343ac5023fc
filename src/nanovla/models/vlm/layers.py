"""What both VLMs share: the image encoder (a zoo model's token grid), the decoding masks, and a
key/value-cached step through `nanovla.nn`'s encoder layer used as a causal LM layer.

Image encoder: `create_model(config.vision, num_classes=0)` and its `forward_features`: a
(B, C, h, w) feature map (vla_cnn) is read as h*w tokens of width C, a ViT's (B, 1 + N, C)
tokens are taken as they are. A CNN grid has no notion of where a cell is once flattened, so a
position code is added to each grid token: a fixed 2-D sine-cosine table (`sincos_2d`, half the
channels for the row, half for the column, as MAE) at the scale of the features themselves,
plus a learned embedding (`image_position="sincos"`, the default). Models saved before it have
only the learned embedding, initialised at std 0.02 (`image_position="learned"`): beside
BatchNorm-ReLU features of RMS ~0.5 that is a 4 % signal, and those models answered "where is
the red box?" at chance (0.247 on held-out scenes after 6000 steps, their learned table's std
only 0.043) while every other question type reached 0.79-0.97.

KV cache: in training, a layer sees the whole sequence at once (`nanovla.nn`'s layers, fused
attention). In generation, every new token would recompute the keys and values of all earlier
ones; `nanovla.nn.kv_cache` keeps each attention module's keys and values (B, H, S, d_k) and
only projects the new tokens. The decoder stack takes a `KVCache` itself (BLIP); for the
LLaVA-style LM, `encoder_layer_step` runs an encoder layer's own norms, attention (with an
`AttentionCache`) and feed-forward, so both paths are the same function of the weights
(tests/test_vlm.py checks that cached decoding equals full recomputation). Caches have
`.reorder(index)`, so `nanovla.nn.decoding.reorder_state` reorders them for beam search.

Left padding: generation prompts are right-aligned; `step_mask` blocks the padding keys and
`text_positions` counts positions from each row's first real token, so a padded row computes
exactly what it would alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nanovla.errors import InputError
from nanovla.models.registry import create_model
from nanovla.models.vlm.configuration import VLMConfig
from nanovla.nn.kv_cache import AttentionCache, end_aligned_causal_mask
from nanovla.nn.transformer import TransformerEncoderLayer


def check_images(images: object, image_size: int, argument: str = "images") -> Tensor:
    """(N, H, W, 3) uint8 numpy array or tensor -> (N, 3, H, W) float32 in [0, 1].

    Anything else (wrong dtype, rank, size or channel count) is an InputError naming `argument`
    and what was expected."""
    if not isinstance(images, Tensor):
        import numpy as np

        if not isinstance(images, np.ndarray):
            raise InputError(f"{argument}: expected a uint8 array (N, H, W, 3), got {type(images).__name__}")  # fmt: skip
        images = torch.from_numpy(np.ascontiguousarray(images))
    expected = (image_size, image_size, 3)
    if images.dtype != torch.uint8:
        raise InputError(f"{argument}: dtype {str(images.dtype).removeprefix('torch.')}, expected uint8 (N, {image_size}, {image_size}, 3)")  # fmt: skip
    if images.dim() != 4 or tuple(images.shape[1:]) != expected:
        raise InputError(f"{argument}: shape {tuple(images.shape)}, expected (N, {image_size}, {image_size}, 3) uint8")  # fmt: skip
    return images.permute(0, 3, 1, 2).float() / 255.0


class ImageEncoder(nn.Module):
    """Images (B, 3, H, W) in [0, 1] -> standardized -> tokens (B, N, C) from the zoo model's
    `forward_features`, average-pooled by `vision_pool`."""

    def __init__(self, config: VLMConfig) -> None:
        super().__init__()
        self.pool = config.vision_pool
        self.register_buffer("mean", torch.tensor(config.image_mean).view(1, 3, 1, 1), persistent=False)  # fmt: skip
        self.register_buffer("std", torch.tensor(config.image_std).view(1, 3, 1, 1), persistent=False)  # fmt: skip
        if config.vision == "vla_cnn":
            self.backbone = create_model(
                "vla_cnn", num_classes=0, global_pool="", widths=tuple(config.vision_widths),
                extra_blocks=config.vision_extra_blocks,
            )  # fmt: skip
        else:
            self.backbone = create_model(
                config.vision, num_classes=0, img_size=config.image_size, global_pool=""
            )
        self.backbone.eval()  # the shape probe must not touch BatchNorm's running statistics
        with torch.no_grad():
            probe = self._tokens(torch.zeros(1, 3, config.image_size, config.image_size))
        self.backbone.train()
        self.num_tokens, self.width = probe.shape[1], probe.shape[2]
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens, self.width))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        grid = self._grid(config)
        self.grid = grid
        """(h, w) of the token grid (row-major tokens), None for a ViT"""
        table = torch.zeros(1, self.num_tokens, self.width)
        if config.image_position == "sincos" and grid is not None:
            table = sincos_2d(*grid, self.width)[None]
        self.register_buffer("pos_table", table, persistent=False)

    def _grid(self, config: VLMConfig) -> tuple[int, int] | None:
        """(h, w) of a CNN token grid, None for a ViT (its tokens carry their own positions)."""
        with torch.no_grad():
            self.backbone.eval()
            pixels = torch.zeros(1, 3, config.image_size, config.image_size)
            features = self.backbone.forward_features(pixels)
            self.backbone.train()
        if features.dim() != 4:
            return None
        h, w = features.shape[2:]
        return (h // self.pool, w // self.pool) if self.pool > 1 else (h, w)

    def _tokens(self, pixels: Tensor) -> Tensor:
        features = self.backbone.forward_features((pixels - self.mean) / self.std)
        if features.dim() == 4:  # (B, C, h, w) grid -> (B, h*w, C)
            if self.pool > 1:
                features = F.avg_pool2d(features, self.pool)
            return features.flatten(2).transpose(1, 2)
        return features  # (B, N, C) tokens

    def position(self, features: Tensor) -> Tensor:
        """Tokens (B, N, C) from `features` (B, N, C) = `_tokens(pixels)`: the position code added."""
        return features + self.pos_table + self.pos_embed

    def forward(self, pixels: Tensor) -> Tensor:
        return self.position(self._tokens(pixels))


def sincos_2d(height: int, width: int, channels: int) -> Tensor:
    """(height * width, channels) fixed position code of a row-major grid: the first half of the
    channels are sines and cosines of the row index at `channels // 4` frequencies (1 to 1/100
    radian per cell, geometrically spaced), the second half the same of the column; channels
    beyond 4 * (channels // 4) stay zero. Values lie in [-1, 1] (RMS 0.71, as BatchNorm-ReLU features' ~0.6)."""
    quarter = channels // 4
    table = torch.zeros(height, width, channels)
    if quarter == 0:
        return table.reshape(height * width, channels)
    frequencies = 1.0 / 100.0 ** (torch.arange(quarter, dtype=torch.float32) / max(quarter - 1, 1))
    rows = torch.arange(height, dtype=torch.float32)[:, None] * frequencies  # (h, q)
    cols = torch.arange(width, dtype=torch.float32)[:, None] * frequencies  # (w, q)
    table[:, :, :quarter] = rows.sin()[:, None, :]
    table[:, :, quarter : 2 * quarter] = rows.cos()[:, None, :]
    table[:, :, 2 * quarter : 3 * quarter] = cols.sin()[None, :, :]
    table[:, :, 3 * quarter : 4 * quarter] = cols.cos()[None, :, :]
    return table.reshape(height * width, channels)


def step_mask(attend: Tensor, queries: int) -> Tensor:
    """(B, 1, T, S) bool: query i (the last T of S positions) may see key j if j <= its own
    position and key j is not padding (`attend` (B, S), True = real token)."""
    causal = end_aligned_causal_mask(queries, attend.shape[1], attend.device)  # (T, S)
    return causal[None, None] & attend[:, None, None, :]


def encoder_layer_step(
    layer: TransformerEncoderLayer, x: Tensor, cache: AttentionCache, mask: Tensor
) -> Tensor:
    """One pre-norm `TransformerEncoderLayer` used as a causal LM layer over the new tokens x
    (B, T, E), earlier keys/values coming from (and appended to) `cache`; mask (B, 1, T, S)."""
    out, _ = layer.self_attn(*(layer.norm1(x),) * 3, mask, need_weights=False, cache=cache)
    x = x + layer.dropout(out)
    return x + layer.dropout(layer.feed_forward(layer.norm2(x)))


def text_positions(attend: Tensor) -> Tensor:
    """(B, T) position of each token counted from the row's first real token (pads -> 0)."""
    return (attend.long().cumsum(dim=1) - 1).clamp(min=0)


def clip_vision_config(path: str) -> dict[str, object]:
    """VLMConfig fields that rebuild the image tower of the CLIP saved at `path`."""
    from nanovla.models.clip import load_config

    clip = load_config(path)[0]
    if clip.vision != "vla_cnn":
        raise InputError(f"--vision-init: {path} has a {clip.vision} image tower; only vla_cnn CLIP towers are supported")  # fmt: skip
    return dict(vision="vla_cnn", vision_widths=tuple(clip.vision_widths), image_size=clip.image_size,
                vision_extra_blocks=clip.vision_extra_blocks, image_mean=tuple(clip.image_mean),
                image_std=tuple(clip.image_std))  # fmt: skip


def load_clip_vision(encoder: ImageEncoder, path: str) -> None:
    """Copy the image tower (backbone) weights of the CLIP saved at `path` into `encoder`."""
    from nanovla.models.clip import CLIP

    state = CLIP.from_pretrained(path).vision.backbone.state_dict()
    # the CLIP tower pools its grid with a spatial softmax; the VLM reads the grid itself
    state = {k: v for k, v in state.items() if not k.startswith(("pool.", "head."))}
    encoder.backbone.load_state_dict(state)
