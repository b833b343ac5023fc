"""Hugging Face ViT state dicts -> `models/vision/vit.VisionTransformer`'s (timm's) keys.

`load_hf_vit_state_dict(ViTModel(...).state_dict())` loads into our ViT, and the outputs then
equal HF's (tests/test_vit.py; `benchmarks/blocks_vs_reference.py` times both).
"""

from __future__ import annotations

import torch
from torch import Tensor

from nanovla.errors import InputError

# Hugging Face ViT layer keys -> ours (inside blocks.{i}.). Checkpoints on disk (and
# `save_pretrained` output) use the legacy `encoder.layer.{i}.` layout; transformers >= 5 names the
# same tensors `layers.{i}.` in memory. Both are accepted.
_HF_LAYER_KEYS = {
    "layernorm_before": "norm1",
    "attention.output.dense": "attn.proj",
    "attention.o_proj": "attn.proj",
    "layernorm_after": "norm2",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_HF_QKV_KEYS = {
    "attention.attention.query": "q",
    "attention.attention.key": "k",
    "attention.attention.value": "v",
    "attention.q_proj": "q",
    "attention.k_proj": "k",
    "attention.v_proj": "v",
}
_HF_LAYER_PREFIXES = ("encoder.layer.", "layers.")
_HF_TOP_KEYS = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
    "classifier.weight": "head.weight",
    "classifier.bias": "head.bias",
}


def _map_hf_layer_key(name: str, qkv: dict[str, dict[str, Tensor]], value: Tensor) -> str | None:
    """`encoder.layer.{i}.…` / `layers.{i}.…` -> our key; q/k/v are collected into `qkv` (None)."""
    prefix = next(p for p in _HF_LAYER_PREFIXES if name.startswith(p))
    index, rest = name[len(prefix) :].split(".", 1)
    module, _, suffix = rest.rpartition(".")  # e.g. ("attention.attention.query", "weight")
    if module in _HF_QKV_KEYS:
        qkv.setdefault(f"blocks.{index}.attn.qkv.{suffix}", {})[_HF_QKV_KEYS[module]] = value
        return None
    if module in _HF_LAYER_KEYS:
        return f"blocks.{index}.{_HF_LAYER_KEYS[module]}.{suffix}"
    raise InputError(f"unexpected Hugging Face ViT key {name!r}")


def load_hf_vit_state_dict(hf_state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map a Hugging Face `ViTModel` (or `ViTForImageClassification`) state dict to our keys.

    Accepts the checkpoint layout (`encoder.layer.{i}.attention.attention.query`, as on the Hub and
    written by `save_pretrained`) and the in-memory layout of transformers >= 5
    (`layers.{i}.attention.q_proj`), with or without the classifier's `vit.` prefix. HF's separate
    query/key/value projections are concatenated into the fused `qkv` (rows [q; k; v]); the pooler
    (`pooler.*`, not on ViT's classifier path) is dropped. `ViTModel` has no classifier, so load
    the result with `strict=False` (only `head.*` missing) or into a model with `num_classes=0`;
    `ViTForImageClassification`'s `classifier` becomes `head`. For equal outputs the HF config must
    use hidden_act="gelu", layer_norm_eps=1e-6 and qkv_bias=True.
    """
    converted: dict[str, Tensor] = {}
    qkv: dict[str, dict[str, Tensor]] = {}
    for key, value in hf_state_dict.items():
        name = key.removeprefix("vit.")
        if name.startswith("pooler."):
            continue
        if name.startswith(_HF_LAYER_PREFIXES):
            ours = _map_hf_layer_key(name, qkv, value)
        elif name in _HF_TOP_KEYS:
            ours = _HF_TOP_KEYS[name]
        else:
            raise InputError(f"unexpected Hugging Face ViT key {key!r}")
        if ours is not None:
            converted[ours] = value
    for key, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise InputError(
                f"{key}: the Hugging Face state dict lacks {sorted({'q', 'k', 'v'} - set(parts))}"
            )
        converted[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return converted
