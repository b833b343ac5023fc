"""Policy checkpoints: save/load round trip, golden outputs, and clear errors on bad files."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_policy import SIZE, make_batch, make_obs, make_policy

from nanovla.models.policy import Policy, PolicyConfig

GOLDEN = Path(__file__).parent / "golden" / "policy_default_seed0.safetensors"


def test_save_load_round_trip_gives_identical_actions(tmp_path):
    policy = make_policy(seed=3)
    policy(make_batch())  # one training-mode pass moves the BatchNorm running stats
    policy.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json",
    ]  # fmt: skip
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["type"] == "nanovla_policy" and config["image_size"] == SIZE
    loaded = Policy.from_pretrained(tmp_path / "ckpt")
    assert not loaded.training and loaded.config == policy.config
    assert loaded.tokenizer == policy.tokenizer
    obs = make_obs(num_envs=4)
    np.testing.assert_array_equal(loaded.select_action(obs), policy.select_action(obs))
    for key, value in policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_save_overwrites_atomically_and_keeps_other_files(tmp_path):
    directory = tmp_path / "pretrained_model"
    directory.mkdir()
    (directory / "train_config.json").write_text("{}")
    make_policy(seed=0).save_pretrained(directory)
    make_policy(seed=1).save_pretrained(directory)
    names = sorted(p.name for p in directory.iterdir())
    assert names == ["config.json", "model.safetensors", "tokenizer.json", "train_config.json"]
    reloaded = Policy.from_pretrained(directory)
    torch.testing.assert_close(reloaded.state_dict(), make_policy(seed=1).eval().state_dict())


def _golden_inputs() -> tuple[Policy, dict]:
    policy = make_policy(seed=0).eval()
    return policy, make_obs(num_envs=2, seed=7)


def test_golden_actions():
    """Actions of the default architecture at seed 0 on fixed inputs, stored once.

    Regenerate (after an intended change only) with NANOVLA_REGEN_GOLDEN=1."""
    policy, obs = _golden_inputs()
    actions = torch.from_numpy(policy.select_action(obs))  # (2, 3)
    num_params = sum(p.numel() for p in policy.parameters())
    if os.environ.get("NANOVLA_REGEN_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        save_file({"actions": actions, "num_params": torch.tensor(num_params)}, str(GOLDEN))
    golden = load_file(str(GOLDEN))
    assert actions.shape == (2, 3) and actions.dtype == torch.float32
    assert actions.abs().max() <= 1.0 and not torch.equal(actions[0], actions[1])
    assert num_params == int(golden["num_params"])
    torch.testing.assert_close(actions, golden["actions"], atol=1e-5, rtol=1e-4)


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Policy.from_pretrained(tmp_path / "nowhere")
    directory = tmp_path / "ckpt"
    make_policy().save_pretrained(directory)
    (directory / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="model.safetensors"):
        Policy.from_pretrained(directory)
    (directory / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        Policy.from_pretrained(directory)
    (directory / "config.json").write_text('{"type": "nanovla_policy", "fusion": ')
    with pytest.raises(ValueError, match="config.json"):
        Policy.from_pretrained(directory)
    (directory / "config.json").write_text(json.dumps({"type": "something_else"}))
    with pytest.raises(ValueError, match="config.json.*nanovla_policy"):
        Policy.from_pretrained(directory)


def test_weights_that_do_not_match_the_config_name_the_keys(tmp_path):
    directory = tmp_path / "ckpt"
    make_policy().save_pretrained(directory)
    config = json.loads((directory / "config.json").read_text())
    config["hidden_dim"] = 64  # a checkpoint from a different config
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"model\.safetensors.*shape: head\.mlp\.0\.weight"):
        Policy.from_pretrained(directory)
    config["hidden_dim"], config["fusion"] = PolicyConfig().hidden_dim, "concat"
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unexpected: fusion.blocks"):
        Policy.from_pretrained(directory)
