"""CLIP: Contrastive Language-Image Pre-training (Radford et al., 2021, arXiv:2103.00020).

    images uint8 (N, H, W, 3) -> /255, per-channel standardise -> image tower (zoo model by name)
        -> pooled (N, Wv) -> visual_projection (no bias) -> L2-normalise -> (N, D)
    texts list[str] -> tokenizer + <bos> ... <eos> -> text tower (token + learned position
        embedding -> causal pre-norm Transformer -> final LayerNorm -> the <eos> token)
        -> text_projection (no bias) -> L2-normalise -> (N, D)
    logits = exp(logit_scale) * image_embeds @ text_embeds.T, exp(logit_scale) clamped <= 100
    loss = symmetric InfoNCE over the batch (`nanovla.nn.losses.info_nce`): every other pair of
        the batch is a negative, so larger batches give more negatives

The image tower is any zoo model (`nanovla.models.create_model`): a ViT name builds our
`VisionTransformer` with CLIP's choices (a LayerNorm before the blocks, "pre_layrnorm" in HF,
quick_gelu in the MLPs, LayerNorm eps 1e-5, the [CLS] token pooled after the final norm); a CNN
name (vla_cnn, resnet18, ...) is pooled by its own head (vla_cnn: keypoints + channel means).
The text tower is built from our Transformer blocks (`nanovla.nn.transformer.TransformerEncoder`,
pre-norm, causal), pooled at the <eos> token as CLIP is. With a ViT tower the parameters map
one-to-one onto `transformers.CLIPModel` (`nanovla.models.clip_hf`; equal outputs in a test).

The temperature is learned as log(1/0.07) at init and clamped as the paper does ("clipped to
prevent scaling the logits by more than 100"): `logit_scale_value()` clamps in the forward pass
and `clamp_logit_scale_()` clamps the parameter after each optimizer step, as OpenAI's loop does.

Departures: the tokenizer is nanovla's word/char vocabulary built from the captions (no BPE), with
<bos> = 2 and <eos> = 3 added; text longer than `max_text_len` is cut before the <eos>. The
image mean / std are the training images' own (stored in the config), not OpenAI's constants.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from nanovla.codec import from_json, to_json
from nanovla.errors import InputError, MissingError
from nanovla.models.registry import create_model, model_arguments
from nanovla.models.text.tokenizer import PAD, UNK, UNK_ID, Tokenizer
from nanovla.nn.losses import info_nce, info_nce_shared
from nanovla.nn.transformer import TransformerEncoder

BOS, EOS = "<bos>", "<eos>"
BOS_ID, EOS_ID = 2, 3
MODEL_TYPE = "nanovla_clip"
CONFIG_NAME, WEIGHTS_NAME, TOKENIZER_NAME = "config.json", "model.safetensors", "tokenizer.json"


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): OpenAI CLIP's GELU approximation ("quick_gelu" in HF)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


@dataclass
class CLIPConfig:
    """A CLIP's architecture; saved as config.json beside the weights."""

    vision: str = "vla_cnn"
    """image tower: any `create_model` name; "vit_*" names build a CLIP-style ViT (below)"""
    image_size: int = 64
    """side of the square input images in pixels"""
    vision_widths: tuple[int, ...] = (32,)
    """vla_cnn / two_stream_cnn only: channel widths (the default `nanovla train` policy's
    encoder is (32,))"""
    vision_extra_blocks: int = 1
    """vla_cnn / two_stream_cnn only: stride-1 conv blocks at the last width"""
    patch_size: int = 8
    """ViT only: patch side in pixels"""
    vision_width: int = 128
    """ViT only: token width"""
    vision_layers: int = 4
    """ViT only: Transformer blocks"""
    vision_heads: int = 4
    """ViT only: attention heads"""
    mlp_ratio: float = 4.0
    """ViT only: MLP hidden width / token width"""
    text_width: int = 96
    """text Transformer width"""
    text_layers: int = 2
    """text Transformer layers"""
    text_heads: int = 4
    """text attention heads"""
    text_ff: int = 384
    """text feed-forward hidden width"""
    max_text_len: int = 64
    """longest token sequence, <bos> and <eos> included (the learned position table's length)"""
    embed_dim: int = 128
    """size of the joint embedding space (both projections' output)"""
    act: Literal["quick_gelu", "gelu"] = "quick_gelu"
    """MLP activation of the Transformer blocks (OpenAI CLIP: quick_gelu)"""
    layer_norm_eps: float = 1e-5
    """LayerNorm epsilon of the Transformer towers"""
    logit_scale_init: float = math.log(1 / 0.07)
    """initial log of the inverse temperature (the paper: 1 / 0.07)"""
    max_logit_scale: float = 100.0
    """exp(logit_scale) is clamped to at most this (the paper: 100)"""
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """per-channel mean of the [0, 1] images (the lab sets the training images' own)"""
    image_std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    """per-channel std of the [0, 1] images"""

    def __post_init__(self) -> None:
        if self.act not in ("quick_gelu", "gelu"):
            raise InputError(f"CLIPConfig.act must be quick_gelu or gelu, got {self.act!r}")
        for name in ("image_size", "text_width", "text_layers", "embed_dim", "max_text_len"):
            if getattr(self, name) < 1:
                raise InputError(f"CLIPConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_text_len < 3:
            raise InputError(f"CLIPConfig.max_text_len must be >= 3, got {self.max_text_len}")
        if self.max_logit_scale <= 1:
            raise InputError(f"CLIPConfig.max_logit_scale must be > 1, got {self.max_logit_scale}")

    @property
    def is_vit(self) -> bool:
        return self.vision.startswith("vit")


def _activation(config: CLIPConfig) -> nn.Module:
    return QuickGELU() if config.act == "quick_gelu" else nn.GELU()


class VisionTower(nn.Module):
    """Zoo backbone (+ CLIP's pre-LayerNorm for a ViT): `forward_features` gives tokens
    (B, 1 + N, W) or a grid (B, W, h, w); `forward` the pooled (B, width)."""

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        self.is_vit = config.is_vit
        kwargs: dict[str, Any] = {"num_classes": 0, "in_chans": 3}
        if "img_size" in model_arguments(config.vision):
            kwargs["img_size"] = config.image_size
        if {"widths", "extra_blocks"} <= model_arguments(config.vision):  # vla_cnn, two_stream_cnn
            kwargs |= dict(widths=config.vision_widths, extra_blocks=config.vision_extra_blocks)
        if self.is_vit:
            kwargs |= dict(
                patch_size=config.patch_size, embed_dim=config.vision_width,
                depth=config.vision_layers, num_heads=config.vision_heads,
                mlp_ratio=config.mlp_ratio, global_pool="token",
            )  # fmt: skip
        self.backbone = create_model(config.vision, **kwargs)
        if self.is_vit:
            self.pre_norm: nn.Module = nn.LayerNorm(config.vision_width, eps=config.layer_norm_eps)
            for block in self.backbone.blocks:
                block.mlp.act = _activation(config)
            for module in self.backbone.modules():
                if isinstance(module, nn.LayerNorm):
                    module.eps = config.layer_norm_eps
            self.width = config.vision_width
        else:
            self.pre_norm = nn.Identity()
            self.width = int(self.backbone.head_hidden_size)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) standardised images -> ViT tokens (B, 1 + N, W) or CNN grid (B, C, h, w)."""
        if not self.is_vit:
            return self.backbone.forward_features(x)
        vit = self.backbone
        patches = vit.patch_embed(x)  # (B, N, W)
        cls = vit.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, W)
        tokens = self.pre_norm(vit.pos_drop(torch.cat([cls, patches], dim=1) + vit.pos_embed))
        for block in vit.blocks:
            tokens = block(tokens)
        return vit.norm(tokens)  # (B, 1 + N, W)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> pooled (B, width): the [CLS] token, or the CNN's own pooling."""
        features = self.forward_features(x)
        if self.is_vit:
            return features[:, 0]
        return self.backbone.forward_head(features, pre_logits=True)


class TextTower(nn.Module):
    """ids (B, T) with one <eos> each -> the <eos> token's features (B, text_width)."""

    def __init__(self, config: CLIPConfig, vocab_size: int) -> None:
        super().__init__()
        width = config.text_width
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Parameter(torch.empty(config.max_text_len, width))
        self.encoder = TransformerEncoder(
            config.text_layers, width, config.text_heads, config.text_ff, dropout=0.0,
            activation="gelu", norm_first=True, layer_norm_eps=config.layer_norm_eps,
        )  # fmt: skip
        for layer in self.encoder.layers:
            layer.feed_forward[1] = _activation(config)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding, std=0.01)

    def forward(self, ids: Tensor) -> Tensor:
        if ids.shape[1] > self.position_embedding.shape[0]:
            raise InputError(
                f"text: {ids.shape[1]} tokens > max_text_len {self.position_embedding.shape[0]}"
            )
        x = self.token_embedding(ids) + self.position_embedding[: ids.shape[1]]  # (B, T, W)
        x = self.encoder(x, is_causal=True)  # final LayerNorm included (pre-norm stack)
        eos = (ids == EOS_ID).int().argmax(dim=-1)  # (B,) first <eos>, as HF pools
        return x[torch.arange(ids.shape[0], device=ids.device), eos]  # (B, W)


def clip_tokenizer(texts: Sequence[str], level: str = "word", max_text_len: int = 64) -> Tokenizer:
    """The vocabulary of `texts` with <bos> and <eos> at ids 2 and 3."""
    base = Tokenizer.from_texts(texts, level=level)
    vocab = [PAD, UNK, BOS, EOS, *(t for t in base.vocab[2:] if t not in (BOS, EOS))]
    return Tokenizer(vocab, level=level, max_length=max_text_len - 2)


class CLIP(nn.Module):
    """Image and text towers, projections and the learned temperature (see the module doc)."""

    def __init__(self, config: CLIPConfig, tokenizer: Tokenizer) -> None:
        super().__init__()
        if tokenizer.vocab[BOS_ID] != BOS or tokenizer.vocab[EOS_ID] != EOS:
            raise InputError("tokenizer: a CLIP tokenizer needs <bos>, <eos> at ids 2, 3")
        self.config = config
        self.tokenizer = tokenizer
        self.vision = VisionTower(config)
        self.text = TextTower(config, tokenizer.vocab_size)
        self.visual_projection = nn.Linear(self.vision.width, config.embed_dim, bias=False)
        self.text_projection = nn.Linear(config.text_width, config.embed_dim, bias=False)
        nn.init.normal_(self.visual_projection.weight, std=self.vision.width**-0.5)
        nn.init.normal_(self.text_projection.weight, std=config.text_width**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init)))
        self.register_buffer("image_mean", torch.tensor(config.image_mean).view(3, 1, 1))
        self.register_buffer("image_std", torch.tensor(config.image_std).view(3, 1, 1))

    # ------------------------------------------------------------------------------ inputs
    def pixels(self, images: np.ndarray | Tensor) -> Tensor:
        """uint8 (N, H, W, 3) numpy or torch -> standardised float (N, 3, H, W)."""
        size = self.config.image_size
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        if not isinstance(images, Tensor) or images.dtype != torch.uint8:
            raise InputError(
                f"images: must be a uint8 array (N, {size}, {size}, 3), got "
                f"{getattr(images, 'dtype', type(images).__name__)}"
            )
        if images.ndim != 4 or tuple(images.shape[1:]) != (size, size, 3):
            raise InputError(
                f"images: must be (N, {size}, {size}, 3) uint8 (the model's image_size is "
                f"{size}), got shape {tuple(images.shape)}"
            )
        x = images.to(self.image_mean.device).permute(0, 3, 1, 2).float() / 255.0
        return (x - self.image_mean) / self.image_std

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """B strings -> ids (B, T): <bos> tokens <eos>, right-padded with <pad>."""
        if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
            raise InputError("texts: must be a non-empty list of strings")
        rows = []
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"texts[{i}]: must be a non-empty string, got {text!r}")
            ids = self.tokenizer.tokenize(text)
            if all(token == UNK_ID for token in ids):
                raise InputError(
                    f"texts[{i}]: the tokenizer knows none of its tokens ({text[:40]!r})"
                )
            rows.append([BOS_ID, *ids, EOS_ID])
        ids, _ = Tokenizer.pad(rows)
        return ids.to(self.image_mean.device)  # (B, T); pad id is 0

    # ------------------------------------------------------------------------------ towers
    def image_features(self, pixels: Tensor) -> Tensor:
        """Standardised (B, 3, H, W) -> L2-normalised (B, embed_dim)."""
        return F.normalize(self.visual_projection(self.vision(pixels)), dim=-1)

    def text_features(self, ids: Tensor) -> Tensor:
        """ids (B, T) with an <eos> each -> L2-normalised (B, embed_dim)."""
        return F.normalize(self.text_projection(self.text(ids)), dim=-1)

    def encode_image(self, images: np.ndarray | Tensor) -> Tensor:
        """uint8 (N, H, W, 3) -> L2-normalised (N, embed_dim)."""
        return self.image_features(self.pixels(images))

    def encode_text(self, texts: Sequence[str], buckets: int = 4) -> Tensor:
        """N strings -> L2-normalised (N, embed_dim).

        Rows are encoded in up to `buckets` groups of similar length, each padded only to its
        own longest row: a few long captions no longer pad every short one (the result is the
        same, as a causal tower pooled at <eos> never reads the padding)."""
        ids = self.tokenize(texts)  # (N, T)
        lengths = (ids != 0).sum(dim=1)
        order = torch.argsort(lengths)
        out = torch.empty(len(texts), self.config.embed_dim, device=ids.device)
        for group in torch.tensor_split(order, min(buckets, len(texts))):
            out = out.index_put((group,), self.text_features(ids[group, : lengths[group].max()]))
        return out

    # ------------------------------------------------------------------------- contrastive
    def logit_scale_value(self) -> Tensor:
        """exp(logit_scale), clamped to at most config.max_logit_scale."""
        return self.logit_scale.clamp(max=math.log(self.config.max_logit_scale)).exp()

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Clamp the parameter itself into [0, log(max_logit_scale)] (after an optimizer step)."""
        self.logit_scale.clamp_(0.0, math.log(self.config.max_logit_scale))

    def forward(self, images: np.ndarray | Tensor, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """(logits_per_image (N, M), logits_per_text (M, N)) for N images and M texts."""
        image, text = self.encode_image(images), self.encode_text(texts)
        logits_per_image = self.logit_scale_value() * image @ text.t()
        return logits_per_image, logits_per_image.t()

    def loss(self, images: np.ndarray | Tensor, texts: Sequence[str]) -> Tensor:
        """Symmetric InfoNCE of N matching (image, text) pairs. Where texts repeat, each
        distinct text is encoded once and every image of a text is its positive
        (`nanovla.nn.losses.info_nce_shared`); with distinct texts that is `info_nce`."""
        if len(texts) != len(images):
            raise InputError(f"texts: {len(texts)} captions for {len(images)} images")
        distinct = list(dict.fromkeys(texts))
        if len(distinct) == len(texts):
            return info_nce(*self(images, texts))
        position = {text: i for i, text in enumerate(distinct)}
        text_of_image = torch.tensor([position[t] for t in texts], device=self.image_mean.device)
        logits, _ = self(images, distinct)  # (N, U)
        return info_nce_shared(logits, text_of_image)

    # ------------------------------------------------------------------------ save / load
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """config.json + model.safetensors + tokenizer.json, written to a staging directory
        and renamed into place (an interrupted save leaves no half-written model)."""
        directory = Path(directory)
        staging = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
        self.tokenizer.save(staging / TOKENIZER_NAME)
        payload = {"type": MODEL_TYPE, "config": to_json(self.config)}
        (staging / CONFIG_NAME).write_text(json.dumps(payload, indent=2), encoding="utf-8")
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> CLIP:
        """Rebuild a CLIP written by `save_pretrained`, in eval mode; a directory that holds
        something else (a policy, nothing) -> one InputError naming it."""
        config, tokenizer = load_config(directory)
        model = cls(config, tokenizer)
        state = load_file(str(Path(directory) / WEIGHTS_NAME))
        missing = sorted(set(model.state_dict()) ^ set(state))
        if missing:
            raise InputError(
                f"{directory}/{WEIGHTS_NAME}: keys do not match the config: {missing[:4]}"
            )
        if not next(model.parameters()).is_meta:  # a meta-device skeleton only checks keys
            model.load_state_dict(state)
        return model.eval()


def load_config(directory: str | os.PathLike) -> tuple[CLIPConfig, Tokenizer]:
    """(config, tokenizer) of a saved CLIP directory, checked to be one."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise MissingError(f"{directory}: not a CLIP model directory (no {CONFIG_NAME})")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: corrupt JSON ({error})") from error
    if not isinstance(payload, dict) or payload.get("type") != MODEL_TYPE:
        found = payload.get("type") if isinstance(payload, dict) else type(payload).__name__
        raise InputError(
            f"{directory}: not a nanovla CLIP model directory ({path} has type {found!r})"
        )
    if not (directory / WEIGHTS_NAME).is_file():
        raise MissingError(f"{directory}: no {WEIGHTS_NAME}")
    config = from_json(CLIPConfig, payload.get("config"), str(path))
    return config, Tokenizer.load(directory / TOKENIZER_NAME)
