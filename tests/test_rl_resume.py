"""Exact resume of `nanovla rl ppo|reinforce`: a run killed (-9) right after its first checkpoint
and resumed ends bit-identical to the same run done straight (weights, optimizer, logs, eval)."""

import json

import pytest
import torch
from cli_run import nanovla

from nanovla.models.policy.pretrained import read_safetensors
from nanovla.train.logger import read_metrics
from nanovla.train.state import load_state

QUIET = ("--no-progress", "--no-tensorboard", "--eval-episodes", "2")
PPO_TINY = ("--num-envs", "2", "--num-steps", "64", "--minibatch-size", "32",
            "--update-epochs", "2", *QUIET)  # fmt: skip


def _weights(run) -> dict[str, torch.Tensor]:
    return read_safetensors(run / "checkpoints/last/pretrained_model/model.safetensors")


def _curve(run) -> list:
    drop = ("charts/SPS",)
    return [
        {k: v for k, v in r.items() if k not in drop}
        for r in read_metrics(run / "logs/metrics.jsonl")
    ]


@pytest.mark.parametrize(
    "command",
    [
        ("rl", "ppo", "--env", "Pendulum-v1", "--total-steps", "512", "--normalize-obs",
         "True", "--normalize-reward", "True", "--clip-vloss", "--anneal-lr", "True", "--squash", "tanh", *PPO_TINY),
        ("rl", "reinforce", "--env", "CartPole-v1", "--total-steps", "600", "--num-envs", "2", *QUIET),
    ],
    ids=["ppo", "reinforce"],
)  # fmt: skip
def test_kill_and_resume_is_bit_identical(tmp_path, command):
    args = (*command, "--save-every", "2")
    straight = nanovla(*args, "--out", "a", cwd=tmp_path, timeout=120)
    assert straight.returncode == 0, straight.stderr
    killed = nanovla(*args, "--out", "b", cwd=tmp_path, timeout=120,
                     env={"NANOVLA_TEST_KILL_AT": "checkpoint:saved@1"})  # fmt: skip
    assert killed.returncode == -9 and not (tmp_path / "b/eval.json").exists()
    resumed = nanovla(*args, "--out", "b", "--resume", cwd=tmp_path, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    a, b = tmp_path / "a", tmp_path / "b"
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    state = "checkpoints/last/training_state"
    oa, ob = load_state(a / state, "optimizer_state"), load_state(b / state, "optimizer_state")
    assert all(
        torch.equal(oa["state"][i]["exp_avg_sq"], ob["state"][i]["exp_avg_sq"]) for i in oa["state"]
    )
    assert _curve(a) == _curve(b)
    ea, eb = (json.loads((run / "eval.json").read_text()) for run in (a, b))
    assert ea["returns"] == eb["returns"]
