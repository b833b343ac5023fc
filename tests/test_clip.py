"""nanovla.models.clip: InfoNCE by hand, the temperature clamp, save/load, bad input, HF interop."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nanovla.data.captions import make_captions
from nanovla.errors import InputError, MissingError
from nanovla.models.clip import CLIP, EOS_ID, CLIPConfig, clip_tokenizer
from nanovla.nn.losses import info_nce, info_nce_shared

TINY = dict(text_width=32, text_layers=1, text_heads=2, text_ff=64, embed_dim=16, max_text_len=48)
VIT = dict(
    vision="vit_tiny_patch16_224", patch_size=8, vision_width=32, vision_layers=2, vision_heads=4
)


@pytest.fixture(scope="module")
def pairs():
    captions = make_captions("train", 8, seed=0)
    texts = captions.captions["object"]["en"] + captions.captions["relation"]["ko"]
    return captions, clip_tokenizer(texts + captions.captions["scene"]["en"])


def _clip(tokenizer, **changes):
    torch.manual_seed(0)
    return CLIP(CLIPConfig(**(TINY | changes)), tokenizer)


def test_info_nce_equals_a_hand_computation():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [-0.2, 0.4, 3.0]])
    rows = -sum(math.log(math.exp(r[i]) / sum(math.exp(v) for v in r))
                for i, r in enumerate(logits.tolist())) / 3  # fmt: skip
    cols = logits.t().tolist()
    columns = -sum(math.log(math.exp(c[i]) / sum(math.exp(v) for v in c))
                   for i, c in enumerate(cols)) / 3  # fmt: skip
    assert info_nce(logits).item() == pytest.approx((rows + columns) / 2, rel=1e-6)


def test_loss_is_infonce_of_scaled_cosine_similarities(pairs):
    captions, tokenizer = pairs
    clip = _clip(tokenizer)
    texts = captions.captions["object"]["en"]
    image = F.normalize(clip.visual_projection(clip.vision(clip.pixels(captions.images))), dim=-1)
    text = clip.encode_text(texts)
    assert torch.allclose(image.norm(dim=-1), torch.ones(8), atol=1e-6)
    assert torch.allclose(text.norm(dim=-1), torch.ones(8), atol=1e-6)
    logits = image @ text.t() / 0.07
    assert clip.loss(captions.images, texts).item() == pytest.approx(
        info_nce(logits).item(), rel=1e-4
    )


def test_repeated_texts_are_encoded_once_and_share_their_images(pairs):
    captions, tokenizer = pairs
    clip = _clip(tokenizer)
    texts = ["a red box", "a blue ball", "a red box", "a small ball"] * 2
    images = captions.images
    distinct = ["a red box", "a blue ball", "a small ball"]
    logits = clip(images, distinct)[0]  # (8, 3)
    text_of_image = torch.tensor([0, 1, 0, 2] * 2)
    expected = info_nce_shared(logits, text_of_image)
    assert clip.loss(images, texts).item() == pytest.approx(expected.item(), rel=1e-6)


def test_temperature_is_clamped_at_100(pairs):
    _, tokenizer = pairs
    clip = _clip(tokenizer)
    assert clip.logit_scale_value().item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        clip.logit_scale.fill_(10.0)
    assert clip.logit_scale_value().item() == pytest.approx(100.0, rel=1e-5)
    clip.logit_scale_value().backward()
    assert clip.logit_scale.grad.item() == 0.0  # no push beyond the clamp
    clip.clamp_logit_scale_()
    assert clip.logit_scale.item() == pytest.approx(math.log(100.0), rel=1e-6)


def test_length_buckets_do_not_change_text_embeddings(pairs):
    captions, tokenizer = pairs
    clip = _clip(tokenizer).eval()
    texts = captions.captions["object"]["en"][:4] + captions.captions["scene"]["en"][:4]
    with torch.no_grad():
        bucketed = clip.encode_text(texts, buckets=4)
        padded = clip.text_features(clip.tokenize(texts))
    assert torch.allclose(bucketed, padded, atol=1e-6)


@pytest.mark.parametrize("vision", ["vla_cnn", "vit"])
def test_save_and_load_give_the_same_embeddings(tmp_path, pairs, vision):
    captions, tokenizer = pairs
    clip = _clip(tokenizer, **(VIT if vision == "vit" else {})).eval()
    clip.save_pretrained(tmp_path / "model")
    loaded = CLIP.from_pretrained(tmp_path / "model")
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(captions.images), clip.encode_image(captions.images))
        texts = captions.captions["relation"]["ko"]
        assert torch.equal(loaded.encode_text(texts), clip.encode_text(texts))


def test_bad_input_names_the_argument(tmp_path, pairs):
    captions, tokenizer = pairs
    clip = _clip(tokenizer)
    with pytest.raises(InputError, match="images: must be a uint8"):
        clip.encode_image(captions.images.astype(np.float32))
    with pytest.raises(InputError, match=r"images: must be \(N, 64, 64, 3\)"):
        clip.encode_image(captions.images[:, :32])
    with pytest.raises(InputError, match=r"texts\[1\]: the tokenizer knows none"):
        clip.encode_text(["a red box", "zzz qqq"])
    with pytest.raises(InputError, match=r"texts\[0\]: must be a non-empty string"):
        clip.encode_text([""])
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "config.json").write_text(json.dumps({"type": "nanovla_policy"}))
    with pytest.raises(InputError, match="not a nanovla CLIP model directory"):
        CLIP.from_pretrained(tmp_path / "policy")
    with pytest.raises(MissingError, match="not a CLIP model directory"):
        CLIP.from_pretrained(tmp_path / "nothing")


def _hf_inputs(clip, captions):
    texts = captions.captions["object"]["en"] + captions.captions["relation"]["ko"]
    ids = clip.tokenize(texts[:8])
    assert (ids == EOS_ID).sum() == 8
    return clip.pixels(captions.images), ids


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_hf_clip_model_gives_our_outputs(pairs, act):
    from nanovla.models.clip_hf import from_hf, to_hf

    captions, tokenizer = pairs
    clip = _clip(tokenizer, act=act, **VIT).eval()
    with torch.no_grad():  # a non-zero patch bias must survive the mapping (folded into positions)
        clip.vision.backbone.patch_embed.proj.bias.normal_()
    hf = to_hf(clip)
    pixels, ids = _hf_inputs(clip, captions)
    with torch.no_grad():
        theirs = hf(input_ids=ids, pixel_values=pixels)
        image, text = clip.image_features(pixels), clip.text_features(ids)
        ours_logits = clip.logit_scale_value() * image @ text.t()
    assert torch.allclose(theirs.image_embeds, image, atol=1e-5)
    assert torch.allclose(theirs.text_embeds, text, atol=1e-5)
    assert torch.allclose(theirs.logits_per_image, ours_logits, atol=1e-4)
    back = from_hf(hf, tokenizer, clip.config.image_mean, clip.config.image_std)
    with torch.no_grad():
        assert torch.allclose(back.image_features(pixels), image, atol=1e-5)
        assert torch.allclose(back.text_features(ids), text, atol=1e-5)


def test_hf_model_built_from_a_config_loads_into_ours(pairs):
    from transformers import CLIPModel

    from nanovla.models.clip_hf import from_hf, hf_config

    captions, tokenizer = pairs
    torch.manual_seed(1)
    hf = CLIPModel(hf_config(CLIPConfig(**(TINY | VIT)), tokenizer.vocab_size)).eval()
    clip = from_hf(hf, tokenizer)
    pixels, ids = _hf_inputs(clip, captions)
    with torch.no_grad():
        theirs = hf(input_ids=ids, pixel_values=pixels)
        assert torch.allclose(theirs.image_embeds, clip.image_features(pixels), atol=1e-5)
        assert torch.allclose(theirs.text_embeds, clip.text_features(ids), atol=1e-5)


def test_a_cnn_tower_does_not_map_to_hf(pairs):
    from nanovla.models.clip_hf import to_hf

    with pytest.raises(InputError, match="only a ViT image tower"):
        to_hf(_clip(pairs[1]))
