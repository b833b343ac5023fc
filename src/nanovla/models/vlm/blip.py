"""BLIP-style captioner: image tokens feed a Transformer text decoder through cross-attention.

    image (B, 3, H, W) -> zoo encoder -> tokens (B, N, C) -> Linear + LayerNorm -> memory (B, N, d)
    text ids (B, T) -> embedding + learned position -> pre-norm decoder layers
        (causal self-attention, cross-attention to the memory, feed-forward) -> logits (B, T, V)

This is the image-grounded text decoder of BLIP (Li et al. 2022, https://arxiv.org/abs/2201.12086)
trained with its language-modelling loss: next-token cross-entropy on the caption (here: on
whatever follows the prompt, so the same decoder answers questions, the question being the
prompt). Departures: no ITC / ITM heads and no bootstrapped captions (CapFilt): the world's
captions are clean by construction; the image encoder is a small zoo model, not a ViT-B; the
decoder layers are `nanovla.nn.TransformerDecoderLayer` (pre-norm, GELU).

Generation: `prefill` runs the prompt once and returns a state holding the decoder's
`nanovla.nn.kv_cache.KVCache` (each layer's self-attention keys/values, and the memory's
cross-attention keys/values, projected once per image); `extend` feeds one new token per row. `forward` recomputes everything (training, and the
reference the cached path is tested against).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from nanovla.models.vlm.configuration import VLMConfig
from nanovla.models.vlm.layers import ImageEncoder, step_mask, text_positions
from nanovla.nn.kv_cache import KVCache
from nanovla.nn.transformer import TransformerDecoder


class BlipStyle(nn.Module):
    """Image encoder + cross-attention text decoder (module docstring)."""

    def __init__(self, config: VLMConfig) -> None:
        super().__init__()
        d = config.d_model
        self.image = ImageEncoder(config)
        self.image_proj = nn.Sequential(nn.Linear(self.image.width, d), nn.LayerNorm(d))
        self.embed = nn.Embedding(config.vocab_size, d)
        self.pos = nn.Embedding(config.max_text_len, d)
        self.decoder = TransformerDecoder(
            config.num_layers, d, config.num_heads, config.d_ff, config.dropout, "gelu",
            norm_first=True,
        )  # fmt: skip
        self.head = nn.Linear(d, config.vocab_size)

    def memory(self, pixels: Tensor | None, image: Tensor | None = None) -> Tensor:
        """(B, 3, H, W) (or the image tokens `image` (B, N, C) already computed) -> (B, N, d)
        image tokens the decoder attends to."""
        return self.image_proj(self.image(pixels) if image is None else image)

    def forward(
        self, pixels: Tensor | None, ids: Tensor, attend: Tensor | None = None,
        image: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        """Logits (B, T, V) for text `ids` (B, T). attend: (B, T) True = real token, for
        left-padded prompts; None = right-padded training rows (plain causal mask). image:
        the image encoder's tokens when the caller has them (then `pixels` is not read)."""
        memory = self.memory(pixels, image)
        if attend is None:
            positions = torch.arange(ids.shape[1], device=ids.device)[None]
            x = self.embed(ids) + self.pos(positions)
            return self.head(self.decoder(x, memory, tgt_is_causal=True))
        x = self.embed(ids) + self.pos(text_positions(attend))
        return self.head(self.decoder(x, memory, tgt_mask=step_mask(attend, ids.shape[1])))

    def _decode(self, x: Tensor, state: dict[str, Any], attend: Tensor) -> Tensor:
        mask = step_mask(attend, x.shape[1])
        hidden = self.decoder(x, state["memory"], tgt_mask=mask, cache=state["cache"])
        return self.head(hidden[:, -1])

    def prefill(self, pixels: Tensor, ids: Tensor, attend: Tensor) -> tuple[Tensor, dict]:
        """Run left-padded prompts (B, T0): next-token logits (B, V) and the decoding state."""
        positions = text_positions(attend)
        state = {"memory": self.memory(pixels), "cache": KVCache(len(self.decoder.layers))}
        logits = self._decode(self.embed(ids) + self.pos(positions), state, attend)
        return logits, {**state, "attend": attend, "pos": positions[:, -1] + 1}

    def extend(self, tokens: Tensor, state: dict) -> tuple[Tensor, dict]:
        """Feed one token per row (B, 1): next-token logits (B, V) and the grown state."""
        attend = torch.cat([state["attend"], torch.ones_like(tokens, dtype=torch.bool)], dim=1)
        x = self.embed(tokens) + self.pos(state["pos"][:, None])
        logits = self._decode(x, state, attend)
        return logits, {**state, "attend": attend, "pos": state["pos"] + 1}
