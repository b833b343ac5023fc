"""BC -> RL fine-tuning (nanovla.rl.finetune, `nanovla rl finetune`): the Gaussian wrapper starts
as the BC policy, the KL penalty is zero at init and equals its formula, frozen parts stay
frozen, a subprocess smoke run writes before.json / eval.json, bad input is one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import nanovla as nanovla_subprocess

from nanovla.cli import main as nanovla
from nanovla.models.policy import Policy, PolicyConfig
from nanovla.models.policy.pretrained import read_safetensors
from nanovla.models.text.tokenizer import Tokenizer
from nanovla.rl.finetune import FinetuneCommand, FinetuneEnv, update
from nanovla.rl.ppo import collect
from nanovla.rl.rollout import RolloutState
from nanovla.rl.vla_actor_critic import VLAActorCritic, Vocabulary
from nanovla.train.logger import read_metrics
from nanovla.train.run_record import RunRecord
from nanovla.world import make_world

SIZE = 32
STATS = {
    "observation.image": {"mean": [[[0.5]], [[0.4]], [[0.3]]], "std": [[[0.2]]] * 3},
    "observation.state": {"mean": [0.5] * 4, "std": [0.3] * 4},
    "action": {"min": [-0.8, -0.9, -1.0], "max": [0.8, 0.9, 1.0]},
}


def tiny_policy(seed: int = 0) -> Policy:
    torch.manual_seed(seed)
    texts = make_world("reach", 8, SIZE, 0, instructions="train+heldout+ko").reset(seed=0)
    tokenizer = Tokenizer.from_texts(texts["instruction"], level="word")
    config = PolicyConfig(image_size=SIZE, state_dim=4, action_dim=3, hidden_dim=32)
    return Policy(config, dataset_stats=STATS, tokenizer=tokenizer).eval()


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    directory = tmp_path / "bc" / "pretrained_model"
    tiny_policy().save_pretrained(directory)
    RunRecord(("reach",), SIZE, "train", "none", 1, 0).save(directory)
    return tmp_path / "bc"


def _env_agent(policy: Policy, num_envs: int = 4, **kwargs) -> tuple[FinetuneEnv, VLAActorCritic]:
    vocabulary = Vocabulary()
    env = FinetuneEnv(("reach",), num_envs, SIZE, "train", "shaped", vocabulary)
    return env, VLAActorCritic(policy, vocabulary, -1.0, **kwargs)


def test_gaussian_mean_is_the_bc_action_at_init() -> None:
    policy = tiny_policy()
    env, agent = _env_agent(policy)
    world_obs = env.world.reset(seed=3)
    expected = policy.select_action(world_obs)  # the BC action, raw units
    obs = agent.prepare(env._observe(world_obs))
    dist = agent.dist(obs)
    assert torch.allclose(dist.mean, obs["ref_mean"])
    assert np.allclose(agent.env_action(dist.mode().detach()), expected, atol=1e-6)
    assert not np.allclose(agent.env_action(dist.sample().detach()), expected, atol=1e-3)
    assert torch.allclose(dist.std, torch.full((4, 3), math.exp(-1.0)))


def test_kl_penalty_is_zero_at_init_and_matches_the_formula() -> None:
    env, agent = _env_agent(tiny_policy())
    obs = agent.prepare(env.reset(seed=0))
    assert torch.allclose(agent.kl_to_reference(obs, agent.dist(obs)), torch.zeros(4), atol=1e-7)
    with torch.no_grad():
        agent.log_std.copy_(torch.tensor([-0.5, -1.0, -2.0]))
        agent.policy.head.mlp[-1].bias.add_(0.3)
    dist = agent.dist(obs)
    kl = agent.kl_to_reference(obs, dist)
    mu, mu_ref = dist.mean.detach().numpy(), obs["ref_mean"].numpy()
    s, s0 = np.exp([-0.5, -1.0, -2.0]), math.exp(-1.0)
    by_hand = (np.log(s0 / s) + (s**2 + (mu - mu_ref) ** 2) / (2 * s0**2) - 0.5).sum(-1)
    assert np.allclose(kl.detach().numpy(), by_hand, rtol=1e-5) and (by_hand > 0.1).all()
    torch_kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(dist.mean, dist.std),
        torch.distributions.Normal(obs["ref_mean"], torch.full_like(dist.mean, s0)),
    ).sum(-1)
    assert torch.allclose(kl, torch_kl, rtol=1e-5)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict, module: torch.nn.Module) -> set[str]:
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


@pytest.mark.parametrize("freeze_vision", [False, True])
def test_frozen_parts_stay_frozen(freeze_vision: bool) -> None:
    torch.manual_seed(0)
    env, agent = _env_agent(tiny_policy(), freeze_vision=freeze_vision)
    cmd = FinetuneCommand(checkpoint=Path("x"), num_steps=8, update_epochs=2, minibatch_size=16)
    state = RolloutState.fresh(agent, env, 0, None)
    view = type("View", (), dict(num_steps=8, gamma=0.99, gae_lambda=0.95, env="w", out=Path(".")))
    optimizer = torch.optim.Adam([{"params": agent.actor_parameters(), "lr": 1e-2},
                                  {"params": agent.critic.parameters(), "lr": 1e-2}])  # fmt: skip
    policy, reference, critic = (
        _snapshot(m) for m in (agent.policy, agent.reference, agent.critic)
    )
    update(agent, optimizer, collect(agent, env, state, view), cmd, train_actor=False)
    assert _changed(policy, agent.policy) == set() and _changed(critic, agent.critic)
    update(agent, optimizer, collect(agent, env, state, view), cmd, train_actor=True)
    changed = _changed(policy, agent.policy)
    assert any(k.startswith("head.") for k in changed)
    assert not any(k.startswith(("language.", "goal_head.", "normalizer.")) for k in changed)
    assert any(k.startswith("vision.") and "running" not in k for k in changed) != freeze_vision
    assert not any("running" in k or "num_batches" in k for k in changed)  # BatchNorm in eval
    assert _changed(reference, agent.reference) == set()
    assert not agent.policy.training and not agent.reference.training


def test_subprocess_smoke_run_writes_before_and_eval(tmp_path: Path, tiny_checkpoint: Path) -> None:
    args = ["rl", "finetune", "--checkpoint", str(tiny_checkpoint), "--out", "out",
            "--total-steps", "64", "--num-envs", "4", "--num-steps", "8", "--update-epochs", "1",
            "--minibatch-size", "16", "--critic-warmup", "1", "--eval-episodes", "2",
            "--val-episodes", "2", "--val-every", "1", "--no-progress", "--no-tensorboard"]  # fmt: skip
    done = nanovla_subprocess(*args, cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    before, after = (json.loads((out / name).read_text()) for name in ("before.json", "eval.json"))
    for result in (before, after):
        assert set(result["splits"]) == {"seen", "heldout", "ko"} and result["families"] == [
            "reach"
        ]
        for split in result["splits"].values():
            lo, hi = split["ci95"]
            assert split["episodes"] == 2 and 0 <= lo <= split["success"] <= hi <= 1
    assert after["env_steps"] == 64 and set(after["before"]) == {"seen", "heldout", "ko"}
    assert after["before"]["seen"] == before["splits"]["seen"]["success"]
    assert "wrote out/eval.json" in done.stdout and "95% Wilson CI" in done.stdout
    tuned = Policy.from_pretrained(out / "checkpoints" / "last" / "pretrained_model")
    assert RunRecord.load(out / "checkpoints" / "last" / "pretrained_model").families == ("reach",)
    assert tuned.select_action(make_world("reach", 2, SIZE, 0).reset(seed=0)).shape == (2, 3)
    assert (out / "success_vs_steps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = [
        json.loads(line)
        for line in (out / "logs" / "metrics.jsonl").read_text().split("\n")
        if line
    ]
    assert sum("eval/seen_success" in r for r in records) == 1 + 64 // 32
    again = nanovla_subprocess(*args, cwd=tmp_path, timeout=60)
    assert again.returncode == 2 and "--out" in again.stderr


def test_bad_input_is_one_line_naming_the_argument(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    binned = tmp_path / "bins"
    torch.manual_seed(0)
    Policy(PolicyConfig(image_size=SIZE, action_head="bins"), dataset_stats=STATS,
           tokenizer=Tokenizer.from_texts(["go"], level="word")).save_pretrained(binned)  # fmt: skip
    out = tmp_path / "out"
    cases = [
        (["--checkpoint", str(tmp_path / "nope")], "--checkpoint"),
        (["--checkpoint", str(binned)], "no tanh action head"),
        (["--checkpoint", str(tiny_checkpoint), "--total-steps", "100"], "--total-steps"),
        (["--checkpoint", str(tiny_checkpoint), "--tasks", "fly"], "--tasks"),
        (["--checkpoint", str(tiny_checkpoint), "--reward", "dense"], "--reward"),
    ]
    for args, message in cases:
        assert nanovla(["rl", "finetune", *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_kill_and_resume_is_bit_identical(tmp_path: Path, tiny_checkpoint: Path) -> None:
    args = ["rl", "finetune", "--checkpoint", str(tiny_checkpoint), "--total-steps", "96",
            "--num-envs", "4", "--num-steps", "8", "--update-epochs", "1", "--minibatch-size",
            "16", "--critic-warmup", "1", "--eval-episodes", "2", "--val-episodes", "2",
            "--val-every", "1", "--save-every", "1", "--no-progress", "--no-tensorboard"]  # fmt: skip
    straight = nanovla_subprocess(*args, "--out", "a", cwd=tmp_path, timeout=240)
    assert straight.returncode == 0, straight.stderr
    killed = nanovla_subprocess(*args, "--out", "b", cwd=tmp_path, timeout=240,
                                env={"NANOVLA_TEST_KILL_AT": "checkpoint:saved@2"})  # fmt: skip
    assert killed.returncode == -9 and not (tmp_path / "b/eval.json").exists()
    changed = nanovla_subprocess(*args, "--out", "b", "--resume", "--kl-coef", "0.5",
                                 cwd=tmp_path, timeout=60)  # fmt: skip
    assert changed.returncode == 2 and "kl_coef" in changed.stderr
    resumed = nanovla_subprocess(*args, "--out", "b", "--resume", cwd=tmp_path, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    a, b = tmp_path / "a", tmp_path / "b"
    last = "checkpoints/last/pretrained_model"
    for name in ("model.safetensors", "rl_head.safetensors"):
        wa, wb = (read_safetensors(run / last / name) for run in (a, b))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)

    def curve(run: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "charts/SPS"}
                for r in read_metrics(run / "logs/metrics.jsonl")]  # fmt: skip

    assert curve(a) == curve(b)
    ea, eb = (json.loads((run / "eval.json").read_text()) for run in (a, b))
    assert ea["splits"] == eb["splits"] and ea["env_steps"] == eb["env_steps"] == 96
    missing = nanovla_subprocess(*args, "--out", "c", "--resume", cwd=tmp_path, timeout=60)
    assert missing.returncode == 2 and "--resume" in missing.stderr
