"""ViT: timm layout and parameter counts, equality with Hugging Face ViT, checkpointing."""

import pytest
import torch

from nanovla.models import create_model, list_models
from nanovla.models.vision.vit import VisionTransformer
from nanovla.models.vision.vit_hf import load_hf_vit_state_dict


def _count(name: str) -> int:
    with torch.device("meta"):  # no memory, no init cost: counting only
        model = create_model(name)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("vit_tiny_patch16_224", 5_717_416),
        ("vit_small_patch16_224", 22_050_664),
        ("vit_base_patch16_224", 86_567_656),
    ],
)
def test_parameter_counts_match_timm(name: str, count: int) -> None:
    assert _count(name) == count


def test_registry_names() -> None:
    assert {"vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224"} <= set(
        list_models("vit_*")
    )


def test_state_dict_uses_timm_key_layout() -> None:
    with torch.device("meta"):
        state = create_model("vit_tiny_patch16_224").state_dict()
    expected_shapes = {
        "cls_token": (1, 1, 192),
        "pos_embed": (1, 197, 192),
        "patch_embed.proj.weight": (192, 3, 16, 16),
        "patch_embed.proj.bias": (192,),
        "blocks.0.norm1.weight": (192,),
        "blocks.0.attn.qkv.weight": (576, 192),
        "blocks.0.attn.qkv.bias": (576,),
        "blocks.0.attn.proj.weight": (192, 192),
        "blocks.0.norm2.bias": (192,),
        "blocks.11.mlp.fc1.weight": (768, 192),
        "blocks.11.mlp.fc1.bias": (768,),
        "blocks.11.mlp.fc2.weight": (192, 768),
        "norm.weight": (192,),
        "head.weight": (1000, 192),
        "head.bias": (1000,),
    }
    for key, shape in expected_shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert len(state) == 4 + 12 * 12 + 2 + 2  # embeddings, 12 tensors per block, norm, head


def _tiny(**kwargs: object) -> VisionTransformer:
    args = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=5)
    return VisionTransformer(**(args | kwargs))


def _hf_config(**kwargs: object):
    from transformers import ViTConfig

    return ViTConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        image_size=32,
        patch_size=8,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
        qkv_bias=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **kwargs,
    )


def _randomize_norms(module: torch.nn.Module) -> None:
    """HF initialises LayerNorms to (1, 0) and cls to 0; perturb them so mapping errors show."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "layernorm" in name or "cls_token" in name or name.endswith("bias"):
                param.add_(torch.randn(param.shape, generator=gen) * 0.1)


def test_equals_hugging_face_vit_model() -> None:
    from transformers import ViTModel

    torch.manual_seed(0)
    hf = ViTModel(_hf_config(), add_pooling_layer=False).eval()
    _randomize_norms(hf)
    ours = _tiny().eval()
    missing, unexpected = ours.load_state_dict(
        load_hf_vit_state_dict(hf.state_dict()), strict=False
    )
    assert sorted(missing) == ["head.bias", "head.weight"] and not unexpected
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = hf(pixel_values=images).last_hidden_state
        got = ours.forward_features(images)
    assert got.shape == (2, 17, 64)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_equals_hugging_face_classifier() -> None:
    from transformers import ViTForImageClassification

    torch.manual_seed(1)
    hf = ViTForImageClassification(_hf_config(num_labels=5)).eval()
    _randomize_norms(hf)
    ours = _tiny().eval()
    ours.load_state_dict(load_hf_vit_state_dict(hf.state_dict()), strict=True)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            ours(images), hf(pixel_values=images).logits, atol=1e-5, rtol=1e-5
        )


def test_hf_mapping_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unexpected"):
        load_hf_vit_state_dict({"embeddings.mask_token": torch.zeros(1, 1, 64)})


def test_gradient_checkpointing_equality() -> None:
    torch.manual_seed(2)
    model = _tiny(drop_rate=0.1)
    images = torch.randn(2, 3, 32, 32)

    def run(enable: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.set_grad_checkpointing(enable)
        torch.manual_seed(3)
        out = model(images)
        return out, torch.autograd.grad(out.square().sum(), list(model.parameters()))

    plain_out, plain_grads = run(False)
    ckpt_out, ckpt_grads = run(True)
    torch.testing.assert_close(ckpt_out, plain_out)
    for got, want in zip(ckpt_grads, plain_grads):
        torch.testing.assert_close(got, want)


def test_small_images_heads_and_pooling() -> None:
    model = create_model("vit_tiny_patch16_224", img_size=64, patch_size=8, num_classes=3)
    images = torch.randn(2, 3, 64, 64)
    tokens = model.forward_features(images)
    assert tokens.shape == (2, 65, 192)
    assert model.forward_head(tokens, pre_logits=True).shape == (2, 192)
    assert model(images).shape == (2, 3)
    avg = _tiny(global_pool="avg", num_classes=0).eval()
    features = _tiny(num_classes=0).eval()
    features.load_state_dict(avg.state_dict())
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(avg(x), features.forward_features(x)[:, 1:].mean(1))
    model.reset_classifier(7)
    assert model(images).shape == (2, 7)


def test_attention_maps_are_distributions() -> None:
    model = _tiny().eval()
    maps = model.attention_maps(torch.randn(1, 3, 32, 32))
    assert len(maps) == 2 and maps[0].shape == (1, 4, 17, 17)
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(1, 4, 17))


def test_bad_input_is_a_clear_error() -> None:
    model = _tiny()
    with pytest.raises(ValueError, match="img_size=32"):
        model(torch.randn(1, 3, 48, 48))
    with pytest.raises(ValueError, match="expected images"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="global_pool"):
        _tiny(global_pool="max")
    with pytest.raises(ValueError, match="multiple of patch_size"):
        _tiny(img_size=30)


def test_attention_weights_reproduce_the_fused_attention() -> None:
    attention = _tiny().eval().blocks[0].attn
    tokens = torch.randn(2, 17, 64)
    weights = attention.attention_weights(tokens)  # (B, H, N, N)
    values = attention.qkv(tokens).reshape(2, 17, 3, 4, 16)[:, :, 2].transpose(1, 2)
    explicit = attention.proj((weights @ values).transpose(1, 2).reshape(2, 17, 64))
    torch.testing.assert_close(explicit, attention(tokens), atol=1e-5, rtol=1e-5)
