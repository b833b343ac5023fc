"""Our CLIP <-> `transformers.CLIPModel`: configs and state dicts mapped both ways, offline.

A CLIP with a ViT image tower (`CLIPConfig(vision="vit_...")`) has HF's architecture exactly:
pre-LN ViT with `pre_layrnorm`, quick_gelu (or gelu) MLPs, the [CLS] token after the final norm
(HF's `post_layernorm` is our ViT's `norm`: LayerNorm works per token, so normalising every
token and taking [CLS] equals normalising [CLS] alone), a causal text Transformer pooled at the
first <eos> token (HF's rule when `eos_token_id != 2`; ours is 3), bias-free projections and
the learned `logit_scale`. Key by key:

    vision.backbone.cls_token (1, 1, W)      <-> vision_model.embeddings.class_embedding (W,)
    vision.backbone.pos_embed (1, 1 + N, W)  <-> vision_model.embeddings.position_embedding
    vision.backbone.patch_embed.proj          <-> vision_model.embeddings.patch_embedding
    vision.pre_norm / backbone.norm           <-> vision_model.pre_layrnorm / post_layernorm
    blocks.i.attn.qkv (rows [q; k; v])        <-> encoder.layers.i.self_attn.{q,k,v}_proj
    blocks.i.attn.proj / norm1 / norm2 / mlp  <-> self_attn.out_proj / layer_norm1 / 2 / mlp
    text.encoder.layers.i.self_attn.W_{q,k,v,o} <-> text_model ... self_attn.{q,k,v,out}_proj
    text.encoder.layers.i.feed_forward.{0,3}  <-> mlp.fc{1,2};  text.encoder.norm <-> final_layer_norm

HF's patch embedding has no bias; ours has one, which adds the same vector to every patch token,
so `to_hf` folds it into the patch positions' embeddings (exact) and `from_hf` sets it to zero.
Tokenizers are not mapped: HF's BPE vocabulary is not ported, so a model loaded with `from_hf`
is used through token ids (`CLIP.text_features`) or with a nanovla tokenizer of the same size.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nanovla.errors import InputError
from nanovla.models.clip import BOS_ID, CLIP, EOS_ID, CLIPConfig
from nanovla.models.text.tokenizer import PAD_ID, Tokenizer

_LAYER = {
    "norm1": "layer_norm1",
    "norm2": "layer_norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_TEXT_LAYER = {
    "self_attn.W_q": "self_attn.q_proj", "self_attn.W_k": "self_attn.k_proj",
    "self_attn.W_v": "self_attn.v_proj", "self_attn.W_o": "self_attn.out_proj",
    "norm1": "layer_norm1", "norm2": "layer_norm2",
    "feed_forward.0": "mlp.fc1", "feed_forward.3": "mlp.fc2",
}  # fmt: skip


def hf_config(config: CLIPConfig, vocab_size: int) -> Any:
    """The `transformers.CLIPConfig` of our (ViT-tower) config."""
    from transformers import CLIPConfig as HFConfig

    if not config.is_vit:
        raise InputError(
            f"CLIPConfig.vision={config.vision!r}: only a ViT image tower maps onto HF's CLIPModel"
        )
    common = dict(
        hidden_act=config.act, layer_norm_eps=config.layer_norm_eps, attention_dropout=0.0
    )
    text = dict(
        vocab_size=vocab_size, hidden_size=config.text_width, intermediate_size=config.text_ff,
        num_hidden_layers=config.text_layers, num_attention_heads=config.text_heads,
        max_position_embeddings=config.max_text_len, pad_token_id=PAD_ID, bos_token_id=BOS_ID,
        eos_token_id=EOS_ID, **common,
    )  # fmt: skip
    vision = dict(
        hidden_size=config.vision_width, intermediate_size=int(config.vision_width * config.mlp_ratio),
        num_hidden_layers=config.vision_layers, num_attention_heads=config.vision_heads,
        image_size=config.image_size, patch_size=config.patch_size, num_channels=3, **common,
    )  # fmt: skip
    return HFConfig(
        text_config=text, vision_config=vision, projection_dim=config.embed_dim,
        logit_scale_init_value=config.logit_scale_init,
    )  # fmt: skip


def _our_config(hf: Any) -> CLIPConfig:
    text, vision = hf.text_config, hf.vision_config
    if text.hidden_act != vision.hidden_act or text.hidden_act not in ("quick_gelu", "gelu"):
        raise InputError(
            f"HF CLIP: hidden_act {text.hidden_act!r}/{vision.hidden_act!r} unsupported"
        )
    if text.eos_token_id != EOS_ID:
        raise InputError(f"HF CLIP: eos_token_id must be {EOS_ID} (ours), got {text.eos_token_id}")
    return CLIPConfig(
        vision="vit_tiny_patch16_224", image_size=vision.image_size, patch_size=vision.patch_size,
        vision_width=vision.hidden_size, vision_layers=vision.num_hidden_layers,
        vision_heads=vision.num_attention_heads,
        mlp_ratio=vision.intermediate_size / vision.hidden_size, text_width=text.hidden_size,
        text_layers=text.num_hidden_layers, text_heads=text.num_attention_heads,
        text_ff=text.intermediate_size, max_text_len=text.max_position_embeddings,
        embed_dim=hf.projection_dim, act=text.hidden_act, layer_norm_eps=text.layer_norm_eps,
        logit_scale_init=hf.logit_scale_init_value,
    )  # fmt: skip


def _paired_keys(config: CLIPConfig) -> dict[str, str]:
    """our key -> HF key for every tensor that maps one-to-one (no reshaping or splitting)."""
    pairs = {
        "logit_scale": "logit_scale",
        "visual_projection.weight": "visual_projection.weight",
        "text_projection.weight": "text_projection.weight",
        "vision.backbone.patch_embed.proj.weight": "vision_model.embeddings.patch_embedding.weight",
        "text.token_embedding.weight": "text_model.embeddings.token_embedding.weight",
        "text.position_embedding": "text_model.embeddings.position_embedding.weight",
    }
    for part in ("weight", "bias"):
        pairs[f"vision.pre_norm.{part}"] = f"vision_model.pre_layrnorm.{part}"
        pairs[f"vision.backbone.norm.{part}"] = f"vision_model.post_layernorm.{part}"
        pairs[f"text.encoder.norm.{part}"] = f"text_model.final_layer_norm.{part}"
        for i in range(config.vision_layers):
            src, dst = f"vision.backbone.blocks.{i}.", f"vision_model.encoder.layers.{i}."
            pairs[f"{src}attn.proj.{part}"] = f"{dst}self_attn.out_proj.{part}"
            for mine, theirs in _LAYER.items():
                pairs[f"{src}{mine}.{part}"] = f"{dst}{theirs}.{part}"
        for i in range(config.text_layers):
            src, dst = f"text.encoder.layers.{i}.", f"text_model.encoder.layers.{i}."
            for mine, theirs in _TEXT_LAYER.items():
                pairs[f"{src}{mine}.{part}"] = f"{dst}{theirs}.{part}"
    return pairs


def to_hf_state_dict(clip: CLIP) -> dict[str, Tensor]:
    """Our CLIP's state dict in `transformers.CLIPModel`'s keys."""
    ours = clip.state_dict()
    out = {hf_key: ours[key] for key, hf_key in _paired_keys(clip.config).items()}
    v, hv = "vision.backbone.", "vision_model."
    pos = ours[v + "pos_embed"][0].clone()
    pos[1:] += ours[v + "patch_embed.proj.bias"]  # fold the patch bias into the positions
    out[hv + "embeddings.class_embedding"] = ours[v + "cls_token"].reshape(-1)
    out[hv + "embeddings.position_embedding.weight"] = pos
    for i in range(clip.config.vision_layers):
        for part in ("weight", "bias"):
            q, k, w = ours[f"{v}blocks.{i}.attn.qkv.{part}"].chunk(3, dim=0)
            for name, tensor in (("q", q), ("k", k), ("v", w)):
                out[f"{hv}encoder.layers.{i}.self_attn.{name}_proj.{part}"] = tensor
    return out


def from_hf_state_dict(hf_state: dict[str, Tensor], config: CLIPConfig) -> dict[str, Tensor]:
    """`transformers.CLIPModel` state dict -> ours (the inverse of `to_hf_state_dict`)."""
    missing = [k for k in _paired_keys(config).values() if k not in hf_state]
    if missing:
        raise InputError(f"HF CLIP state dict: missing keys {missing[:4]}")
    out = {key: hf_state[hf_key] for key, hf_key in _paired_keys(config).items()}
    v, hv = "vision.backbone.", "vision_model."
    for i in range(config.vision_layers):
        for part in ("weight", "bias"):
            names = (f"{hv}encoder.layers.{i}.self_attn.{n}_proj.{part}" for n in "qkv")
            out[f"{v}blocks.{i}.attn.qkv.{part}"] = torch.cat([hf_state[n] for n in names])
    width = config.vision_width
    out[v + "cls_token"] = hf_state[hv + "embeddings.class_embedding"].reshape(1, 1, width)
    out[v + "pos_embed"] = hf_state[hv + "embeddings.position_embedding.weight"].unsqueeze(0)
    out[v + "patch_embed.proj.bias"] = torch.zeros(width)
    out["image_mean"] = torch.tensor(config.image_mean).view(3, 1, 1)
    out["image_std"] = torch.tensor(config.image_std).view(3, 1, 1)
    return out


def to_hf(clip: CLIP) -> Any:
    """A `transformers.CLIPModel` (built from a config, offline) holding our CLIP's weights."""
    from transformers import CLIPModel

    model = CLIPModel(hf_config(clip.config, clip.tokenizer.vocab_size))
    model.load_state_dict(to_hf_state_dict(clip), strict=True)
    return model.eval()


def from_hf(
    model: Any, tokenizer: Tokenizer, image_mean=(0.5, 0.5, 0.5), image_std=(0.25,) * 3
) -> CLIP:
    """Our CLIP holding a `transformers.CLIPModel`'s weights; `tokenizer` must have the model's
    vocabulary size (with <bos>, <eos> at 2, 3); images are standardised with image_mean/std."""
    config = _our_config(model.config)
    config.image_mean, config.image_std = tuple(image_mean), tuple(image_std)
    if tokenizer.vocab_size != model.config.text_config.vocab_size:
        raise InputError(
            f"tokenizer: vocab_size {tokenizer.vocab_size} != the HF model's "
            f"{model.config.text_config.vocab_size}"
        )
    clip = CLIP(config, tokenizer)
    clip.load_state_dict(from_hf_state_dict(model.state_dict(), config), strict=True)
    return clip.eval()
