"""LLaVA-style VLM: image tokens through a projector, prepended to a small causal language model.

    image (B, 3, H, W) -> zoo encoder -> tokens (B, N, C) -> MLP projector -> (B, N, d)
    [image tokens ; embedding(text ids) + learned text position] -> pre-norm causal Transformer
        -> logits on the text positions (B, T, V)

As LLaVA (Liu et al. 2023, https://arxiv.org/abs/2304.08485; the two-layer GELU projector of
LLaVA-1.5, https://arxiv.org/abs/2310.03744), the language model reads the image as N "visual
words" in front of the prompt and is trained on instruction-following pairs (question -> answer,
"describe the image." -> caption) with the loss on the response only. Departures: the language
model is small and trained from scratch together with the image encoder (no frozen pretrained
LLM or CLIP to align first, so LLaVA's stage-1 projector pre-training has nothing to do here);
its layers are `nanovla.nn.TransformerEncoderLayer`s with a causal mask (pre-norm, GELU).

Generation: `prefill` runs image tokens + prompt once and returns every layer's
`nanovla.nn.kv_cache.AttentionCache`; `extend` feeds one token per row against them. `forward` recomputes everything.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nanovla.models.vlm.configuration import VLMConfig
from nanovla.models.vlm.layers import ImageEncoder, encoder_layer_step, step_mask, text_positions
from nanovla.nn.kv_cache import AttentionCache
from nanovla.nn.transformer import TransformerEncoder


class LlavaStyle(nn.Module):
    """Image tokens + text in one causal Transformer (module docstring)."""

    def __init__(self, config: VLMConfig) -> None:
        super().__init__()
        d = config.d_model
        self.image = ImageEncoder(config)
        self.projector = nn.Sequential(nn.Linear(self.image.width, d), nn.GELU(), nn.Linear(d, d))
        self.embed = nn.Embedding(config.vocab_size, d)
        self.pos = nn.Embedding(config.max_text_len, d)
        self.lm = TransformerEncoder(
            config.num_layers, d, config.num_heads, config.d_ff, config.dropout, "gelu",
            norm_first=True,
        )  # fmt: skip
        self.head = nn.Linear(d, config.vocab_size)

    def _sequence(
        self, pixels: Tensor | None, ids: Tensor, positions: Tensor, image: Tensor | None = None
    ) -> Tensor:
        image = self.projector(self.image(pixels) if image is None else image)  # (B, N, d)
        return torch.cat([image, self.embed(ids) + self.pos(positions)], dim=1)  # (B, N + T, d)

    def _full_attend(self, attend: Tensor) -> Tensor:
        image = torch.ones(attend.shape[0], self.image.num_tokens, dtype=torch.bool,
                           device=attend.device)  # fmt: skip
        return torch.cat([image, attend], dim=1)

    def forward(
        self, pixels: Tensor | None, ids: Tensor, attend: Tensor | None = None,
        image: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        """Logits (B, T, V) on the text positions. attend: (B, T) True = real token (left-
        padded prompts); None = right-padded training rows (plain causal mask). image: the
        image encoder's tokens when the caller has them (then `pixels` is not read)."""
        n = self.image.num_tokens
        if attend is None:
            positions = torch.arange(ids.shape[1], device=ids.device)[None]
            hidden = self.lm(self._sequence(pixels, ids, positions, image), is_causal=True)
        else:
            x = self._sequence(pixels, ids, text_positions(attend), image)
            full = self._full_attend(attend)
            hidden = self.lm(x, mask=step_mask(full, full.shape[1]))
        return self.head(hidden[:, n:])

    def _layers(self, x: Tensor, caches: list[AttentionCache], attend: Tensor) -> Tensor:
        mask = step_mask(attend, x.shape[1])
        for layer, cache in zip(self.lm.layers, caches):
            x = encoder_layer_step(layer, x, cache, mask)
        return self.head(self.lm.norm(x[:, -1]))

    def prefill(self, pixels: Tensor, ids: Tensor, attend: Tensor) -> tuple[Tensor, dict]:
        """Run image tokens + left-padded prompts (B, T0): next-token logits (B, V), state."""
        positions = text_positions(attend)
        full = self._full_attend(attend)
        caches = [AttentionCache(static=False) for _ in self.lm.layers]
        logits = self._layers(self._sequence(pixels, ids, positions), caches, full)
        return logits, {"cache": caches, "attend": full, "pos": positions[:, -1] + 1}

    def extend(self, tokens: Tensor, state: dict) -> tuple[Tensor, dict]:
        """Feed one token per row (B, 1): next-token logits (B, V) and the grown state."""
        attend = torch.cat([state["attend"], torch.ones_like(tokens, dtype=torch.bool)], dim=1)
        x = self.embed(tokens) + self.pos(state["pos"][:, None])
        logits = self._layers(x, state["cache"], attend)
        return logits, {**state, "attend": attend, "pos": state["pos"] + 1}
