"""The VLA policy with CLIP encoders: --policy.vision clip:PATH / --policy.text clip:PATH."""

from __future__ import annotations

import pytest
import torch

from nanovla.data.captions import make_captions
from nanovla.errors import NanovlaError
from nanovla.models.clip import CLIP, CLIPConfig, clip_tokenizer
from nanovla.models.policy import Policy, PolicyConfig

STATS = {
    "observation.image": {
        "mean": [[[0.8]], [[0.8]], [[0.8]]], "std": [[[0.1]], [[0.1]], [[0.1]]],
        "min": [[[0.0]], [[0.0]], [[0.0]]], "max": [[[1.0]], [[1.0]], [[1.0]]], "count": [1],
    },
    "observation.state": {"mean": [0.0] * 4, "std": [1.0] * 4, "min": [0.0] * 4,
                          "max": [1.0] * 4, "count": [1]},
    "action": {"mean": [0.0] * 3, "std": [1.0] * 3, "min": [-1.0] * 3, "max": [1.0] * 3,
               "count": [1]},
}  # fmt: skip
TASKS = ["put the red box in the blue bowl", "빨간 상자를 파란 그릇에 넣어", "reach the ball"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    captions = make_captions("train", 8)
    texts = [t for style in captions.captions.values() for lang in style.values() for t in lang]
    torch.manual_seed(0)
    config = CLIPConfig(text_width=32, text_layers=1, text_heads=2, text_ff=64, embed_dim=16)
    clip = CLIP(config, clip_tokenizer(texts + TASKS))
    return clip.save_pretrained(tmp_path_factory.mktemp("clip") / "model")


def _batch():
    torch.manual_seed(1)
    return {
        "observation.image": torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8),
        "observation.state": torch.rand(3, 4),
        "action": torch.rand(3, 4, 3) * 2 - 1,
        "action_is_pad": torch.zeros(3, 4, dtype=torch.bool),
        "task": TASKS,
    }


def _policy(clip_dir, frozen):
    path = f"clip:{clip_dir}"
    config = PolicyConfig(vision=path, text=path, clip_frozen=frozen, vision_widths=(32,))
    return Policy(config, dataset_stats=STATS)


def test_policy_starts_from_the_clip_weights(clip_dir):
    policy = _policy(clip_dir, frozen=False)
    clip = CLIP.from_pretrained(clip_dir)
    ours = policy.vision.model.backbone.stem_and_stages[0][0].weight
    assert torch.equal(ours, clip.vision.backbone.stem_and_stages[0][0].weight)
    assert torch.equal(policy.language.encoder.text.token_embedding.weight,
                       clip.text.token_embedding.weight)  # fmt: skip
    assert policy.tokenizer == clip.tokenizer  # the CLIP's own vocabulary reads the instructions
    loss, _ = policy(_batch())
    loss.backward()
    assert policy.vision.model.backbone.stem_and_stages[0][0].weight.grad is not None
    assert policy.language.encoder.text.token_embedding.weight.grad is not None


def test_frozen_encoders_get_no_gradient_and_keep_their_statistics(clip_dir):
    policy = _policy(clip_dir, frozen=True).train()
    bn = policy.vision.model.module.backbone.stem_and_stages[0][1]
    before = bn.running_mean.clone()
    loss, _ = policy(_batch())
    loss.backward()
    assert not bn.training and torch.equal(bn.running_mean, before)
    frozen = list(policy.vision.parameters()) + list(policy.language.parameters())
    assert all(not p.requires_grad and p.grad is None for p in frozen)
    assert policy.head.parameters().__next__().grad is not None


@pytest.mark.parametrize("frozen", [False, True])
def test_save_and_load_act_alike(tmp_path, clip_dir, frozen):
    policy = _policy(clip_dir, frozen).eval()
    policy.save_pretrained(tmp_path / "policy")
    loaded = Policy.from_pretrained(tmp_path / "policy")
    batch = _batch()
    args = (batch["observation.image"], batch["observation.state"], batch["task"])
    with torch.no_grad():
        assert torch.equal(loaded.predict_chunk(*args), policy.predict_chunk(*args))


def test_bad_clip_paths_are_one_line_errors(tmp_path, clip_dir):
    with pytest.raises(NanovlaError, match="not a CLIP model directory"):
        Policy(PolicyConfig(vision=f"clip:{tmp_path}"), dataset_stats=STATS)
    with pytest.raises(NanovlaError, match="the CLIP takes 64px images"):
        Policy(PolicyConfig(vision=f"clip:{clip_dir}", image_size=32), dataset_stats=STATS)
    with pytest.raises(NanovlaError, match="PolicyConfig.text"):
        PolicyConfig(text="clip:")
