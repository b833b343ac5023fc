"""Vision Transformer (ViT), "An Image is Worth 16x16 Words" (Dosovitskiy et al., 2021).

    image (B, C, H, W) -> non-overlapping P x P patches -> linear embedding (a strided conv)
    -> prepend [CLS] -> + learned position embedding -> pre-norm Transformer blocks -> LayerNorm
    -> head on the [CLS] token (or on the mean of the patch tokens)

Parameter names, shapes and counts are timm's (`vit_tiny_patch16_224` 5,717,416;
`vit_base_patch16_224` 86,567,656 at 1000 classes), so a timm checkpoint loads with `strict=True`;
`vit_hf.load_hf_vit_state_dict` maps a Hugging Face `ViTModel` / `ViTForImageClassification` state dict,
and the outputs then equal HF's (tests/test_vit.py).

Departures from the seed's sketch, which builds the blocks from its post-norm
`TransformerEncoder`: blocks are pre-norm (as the paper and every released ViT), attention uses a
fused qkv projection (timm's layout) and the fused `F.scaled_dot_product_attention` kernel, the
LayerNorm epsilon is 1e-6, and the [CLS] token starts near zero (std 1e-6) as in timm.
Departures from timm: no stochastic depth, layer scale, register tokens or dynamic image size;
with `global_pool="avg"` the final `norm` is still applied to every token (timm moves it to a
`fc_norm` after pooling), so `forward_features` always returns normalised tokens.

timm's face: `num_classes=0` makes `head` an identity (`forward` returns the pooled `(B, D)`
features), `reset_classifier(n, global_pool=None)` replaces the head (and optionally the pooling),
`get_classifier()` returns it, `num_features == head_hidden_size == embed_dim`; as in timm,
`global_pool=""` pools nothing and `forward` returns all `(B, 1 + N, D)` tokens.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from nanovla.errors import InputError
from nanovla.models.registry import register_model

_GLOBAL_POOLS = ("token", "avg", "")


class PatchEmbed(nn.Module):
    """(B, C, H, W) image -> (B, N, D) patch tokens, N = (H / P) * (W / P), via a P-stride conv."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        if patch_size < 1 or img_size % patch_size != 0:
            raise InputError(
                f"img_size ({img_size}) must be a positive multiple of patch_size ({patch_size})"
            )
        self.img_size = img_size
        self.patch_size = patch_size
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size**2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.proj.in_channels:
            raise InputError(
                f"expected images (B, {self.proj.in_channels}, {self.img_size}, {self.img_size}), "
                f"got {tuple(x.shape)}"
            )
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise InputError(
                f"image size {tuple(x.shape[-2:])} does not match the model's img_size="
                f"{self.img_size}; resize the images or build the model with img_size="
                f"{x.shape[-1]}"
            )
        x = self.proj(x)  # (B, D, H/P, W/P)
        return x.flatten(2).transpose(1, 2)  # (B, N, D)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (timm's `Attention`)."""

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool, attn_drop: float, proj_drop: float
    ) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads != 0:
            raise InputError(f"embed_dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, N, d)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape  # (B, N, D)
        q, k, v = self._qkv(x)
        dropout_p = self.attn_drop if self.training else 0.0
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)  # (B, H, N, d)
        x = x.transpose(1, 2).reshape(batch, tokens, dim)  # (B, N, D)
        return self.proj_drop(self.proj(x))

    def attention_weights(self, x: Tensor) -> Tensor:
        """softmax(QK^T / sqrt(d)) for plots: (B, N, D) -> (B, H, N, N)."""
        q, k, _ = self._qkv(x)
        return (q @ k.transpose(-2, -1) * self.head_dim**-0.5).softmax(dim=-1)


class Mlp(nn.Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout."""

    def __init__(self, dim: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop: float,
        attn_drop: float,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))  # (B, N, D)
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT with timm's parameter layout.

    Args:
        img_size: input height = width in pixels (a multiple of patch_size).
        patch_size: side of each square patch; tokens = (img_size / patch_size) ** 2 + 1.
        in_chans: image channels.
        num_classes: classifier outputs; 0 = identity head (`forward` returns pooled features).
        embed_dim: token width D. depth: number of blocks. num_heads: attention heads.
        mlp_ratio: MLP hidden width / embed_dim.
        qkv_bias: bias in the qkv projection.
        drop_rate: dropout after position embedding, in the MLP and projections, before the head.
        attn_drop_rate: dropout on attention weights.
        global_pool: "token" ([CLS], as the paper), "avg" (mean of the patch tokens) or ""
            (no pooling: the head reads every token).
        grad_checkpointing: recompute block activations in backward to save memory.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        global_pool: str = "token",
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if global_pool not in _GLOBAL_POOLS:
            raise InputError(f"global_pool must be one of {_GLOBAL_POOLS}, got {global_pool!r}")
        if depth < 1 or num_classes < 0:
            raise InputError(f"need depth >= 1 and num_classes >= 0, got {depth}, {num_classes}")
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1
        self.grad_checkpointing = grad_checkpointing
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        self.blocks = nn.Sequential(
            *(
                Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate)
                for _ in range(depth)
            )
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """timm's default ("timm" mode) initialisation."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward instead of storing them (same result)."""
        self.grad_checkpointing = enable

    def get_classifier(self) -> nn.Module:
        """The head: `head` (an `nn.Identity` when `num_classes == 0`)."""
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head, e.g. for fine-tuning on new classes (0 = identity), initialised as
        at construction; `global_pool` (one of "token", "avg", "") also changes the pooling."""
        if num_classes < 0:
            raise InputError(f"num_classes must be >= 0 (0: no head), got {num_classes}")
        if global_pool is not None:
            if global_pool not in _GLOBAL_POOLS:
                raise InputError(f"global_pool must be one of {_GLOBAL_POOLS}, got {global_pool!r}")
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        if isinstance(self.head, nn.Linear):
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def _tokens(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, 1 + N, D): patches, [CLS] in front, position embedding added."""
        x = self.patch_embed(x)  # (B, N, D)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, D)
        return self.pos_drop(torch.cat([cls, x], dim=1) + self.pos_embed)  # (B, 1 + N, D)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) images -> (B, 1 + N, D) tokens after the final LayerNorm ([CLS] first)."""
        x = self._tokens(x)
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.norm(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """(B, 1 + N, D) tokens -> pooled (B, D) when `pre_logits`, else logits (B, num_classes);
        with global_pool="" every token stays: (B, 1 + N, D) or (B, 1 + N, num_classes)."""
        if self.global_pool == "avg":
            x = x[:, self.num_prefix_tokens :].mean(dim=1)  # (B, D)
        elif self.global_pool == "token":
            x = x[:, 0]  # (B, D): the [CLS] token
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, num_classes) logits (or (B, D) features when num_classes=0)."""
        return self.forward_head(self.forward_features(x))

    @torch.no_grad()
    def attention_maps(self, x: Tensor) -> list[Tensor]:
        """Per block attention weights (B, H, 1 + N, 1 + N) for heatmaps (explicit softmax path)."""
        maps = []
        tokens = self._tokens(x)
        for block in self.blocks:
            maps.append(block.attn.attention_weights(block.norm1(tokens)))
            tokens = block(tokens)
        return maps


def _vit(defaults: dict[str, Any], kwargs: dict[str, Any]) -> VisionTransformer:
    return VisionTransformer(**(defaults | kwargs))


# The builders name the arguments callers pick per model (`registry.model_arguments` lists them:
# `img_size` fixes the position embedding's length); the rest pass through to VisionTransformer.


@register_model
def vit_tiny_patch16_224(
    num_classes: int = 1000,
    in_chans: int = 3,
    img_size: int = 224,
    global_pool: str = "token",
    **kwargs: Any,
) -> VisionTransformer:
    """ViT-Ti/16 (5,717,416 parameters at 1000 classes): D=192, 12 blocks, 3 heads."""
    named = dict(
        num_classes=num_classes, in_chans=in_chans, img_size=img_size, global_pool=global_pool
    )
    return _vit(dict(patch_size=16, embed_dim=192, depth=12, num_heads=3) | named, kwargs)


@register_model
def vit_small_patch16_224(
    num_classes: int = 1000,
    in_chans: int = 3,
    img_size: int = 224,
    global_pool: str = "token",
    **kwargs: Any,
) -> VisionTransformer:
    """ViT-S/16 (22,050,664 parameters at 1000 classes): D=384, 12 blocks, 6 heads."""
    named = dict(
        num_classes=num_classes, in_chans=in_chans, img_size=img_size, global_pool=global_pool
    )
    return _vit(dict(patch_size=16, embed_dim=384, depth=12, num_heads=6) | named, kwargs)


@register_model
def vit_base_patch16_224(
    num_classes: int = 1000,
    in_chans: int = 3,
    img_size: int = 224,
    global_pool: str = "token",
    **kwargs: Any,
) -> VisionTransformer:
    """ViT-B/16 (86,567,656 parameters at 1000 classes): D=768, 12 blocks, 12 heads."""
    named = dict(
        num_classes=num_classes, in_chans=in_chans, img_size=img_size, global_pool=global_pool
    )
    return _vit(dict(patch_size=16, embed_dim=768, depth=12, num_heads=12) | named, kwargs)
