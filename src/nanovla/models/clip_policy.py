"""CLIP encoders for the VLA policy: `--policy.vision clip:PATH` and `--policy.text clip:PATH`.

The image tower gives the policy its feature grid (`forward_features`; a vla_cnn tower loses
its keypoint pooling, which the policy's own readout replaces); the text tower gives
`text_projection(<eos> features)` in the joint embedding space, read with the CLIP's own
tokenizer (the instruction ids come without <bos> / <eos>, which are added here). Either is
fine-tuned with the policy, or wrapped in `Frozen`: no gradients and always in eval mode, so
BatchNorm keeps the pre-trained statistics.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from nanovla.models.clip import BOS_ID, CLIP, EOS_ID
from nanovla.models.text.tokenizer import Tokenizer


class Frozen(nn.Module):
    """Wraps a pre-trained tower: no gradients, and always in eval mode (BatchNorm statistics
    and dropout as in pre-training), whatever mode the surrounding model is put in."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.eval().requires_grad_(False)
        self.out_dim = getattr(module, "out_dim", None)

    def train(self, mode: bool = True) -> Frozen:
        super().train(mode)
        self.module.eval()
        return self

    def forward_features(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.module.forward_features(x)

    def forward(self, *args: Any) -> Tensor:
        with torch.no_grad():
            return self.module(*args)


def pretrained_vision_encoder(path: str, frozen: bool) -> nn.Module:
    """The image tower of the CLIP at `path` for the VLA policy: `forward_features` only (a
    vla_cnn or two_stream_cnn loses its keypoint pooling, the policy reads the grid itself)."""
    clip = CLIP.from_pretrained(path)
    tower = clip.vision
    if tower.backbone.__class__.__name__ in ("VLACNN", "TwoStreamCNN"):
        tower.backbone.reset_classifier(0, global_pool="")
    return Frozen(tower) if frozen else tower.train()


class PretrainedTextEncoder(nn.Module):
    """The text tower + projection of a CLIP for the VLA policy: `forward(ids, lengths)` as the
    policy's own text encoders take them (ids without <bos>/<eos>) -> (B, embed_dim)."""

    def __init__(self, clip: CLIP) -> None:
        super().__init__()
        self.text = clip.text
        self.projection = clip.text_projection
        self.out_dim = clip.config.embed_dim

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        batch = ids.shape[0]
        framed = torch.zeros(batch, ids.shape[1] + 2, dtype=torch.long, device=ids.device)
        framed[:, 0] = BOS_ID
        framed[:, 1:-1] = ids
        framed[torch.arange(batch, device=ids.device), lengths.to(ids.device) + 1] = EOS_ID
        return self.projection(self.text(framed))  # (B, embed_dim)


def pretrained_text_encoder(path: str, frozen: bool) -> tuple[nn.Module, Tokenizer]:
    """(text encoder, its tokenizer) of the CLIP at `path` for the VLA policy."""
    clip = CLIP.from_pretrained(path)
    encoder = PretrainedTextEncoder(clip)
    return (Frozen(encoder) if frozen else encoder.train()), clip.tokenizer
