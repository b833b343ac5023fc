"""`VLMConfig`: what defines a vision-language model's architecture; JSON round-trippable.

Saved as ``config.json`` (with ``"type": "nanovla_vlm"``) beside ``model.safetensors`` and
``tokenizer.json``, so a model directory rebuilds its own network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from nanovla.codec import from_json, to_json
from nanovla.errors import InputError

ARCHS: tuple[str, ...] = ("blip", "llava")
VLM_TYPE = "nanovla_vlm"


@dataclass
class VLMConfig:
    """An image + a text prompt -> generated text (a caption or an answer)."""

    arch: Literal["blip", "llava"] = "llava"
    """"blip": image tokens feed a text decoder through cross-attention (BLIP's captioner);
    "llava": image tokens go through an MLP projector and are prepended to a causal language
    model's input (LLaVA)"""
    vision: str = "vla_cnn"
    """image encoder from the model zoo (`create_model`): "vla_cnn" (small CNN, token grid from
    its feature map) or a ViT name (its patch tokens)"""
    vision_widths: tuple[int, ...] = (32, 64, 64)
    """vla_cnn channel widths (a stride-4 stem, then one stride-2 stage per further width):
    (32, 64, 64) gives a 4x4 grid of 64-channel tokens for 64x64 images"""
    vision_extra_blocks: int = 1
    """vla_cnn stride-1 conv blocks at the last width"""
    vision_pool: int = 1
    """average-pool the image token grid by this factor per side (2: a 16x16 grid -> 8x8)"""
    image_position: Literal["sincos", "learned"] = "sincos"
    """where each image token lies: "sincos" adds a fixed 2-D sine-cosine table (row and column,
    as MAE) at the features' own scale, plus a learned embedding; "learned" only the learned
    embedding, initialised at std 0.02 (models saved before "sincos" existed: a CNN grid's
    features are ~20x larger, and such models never learned "where")"""
    image_size: int = 64
    """side of the square RGB input images"""
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """per-channel mean of the [0, 1] pixels (a CLIP tower brings its own)"""
    image_std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    """per-channel std of the [0, 1] pixels"""
    cell_tags: bool = True
    """a linear head on the image tokens that names what each grid cell holds (object kind,
    colour, size, bowl colour; `VLM.loss(..., tags=)`): dense supervision that grounds a tower
    trained from scratch (models saved before it: False)"""
    d_model: int = 128
    """width of the text model (and of the projected image tokens)"""
    num_layers: int = 3
    """Transformer layers of the text model"""
    num_heads: int = 4
    """attention heads (must divide d_model)"""
    d_ff: int = 512
    """feed-forward hidden width"""
    dropout: float = 0.0
    """dropout in the text model"""
    max_text_len: int = 64
    """longest prompt + output in tokens (the learned position table's length)"""
    vocab_size: int = 0
    """tokenizer vocabulary size (filled in from the tokenizer)"""

    def __post_init__(self) -> None:
        if self.image_position not in ("sincos", "learned"):
            raise InputError(f"VLMConfig.image_position: unknown {self.image_position!r}; choose 'sincos' or 'learned'")  # fmt: skip
        if self.arch not in ARCHS:
            raise InputError(f"VLMConfig.arch: unknown {self.arch!r}; choose one of {ARCHS}")
        if self.d_model % self.num_heads != 0:
            raise InputError(
                f"VLMConfig: d_model {self.d_model} is not divisible by num_heads {self.num_heads}"
            )
        for name in ("image_size", "d_model", "num_layers", "num_heads", "d_ff", "max_text_len"):
            if getattr(self, name) < 1:
                raise InputError(f"VLMConfig.{name}: must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists), as config.json holds it."""
        return to_json(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "VLMConfig") -> VLMConfig:
        """Inverse of `to_dict`; unknown keys or wrong types -> InputError naming `source`."""
        return from_json(cls, data, source)
