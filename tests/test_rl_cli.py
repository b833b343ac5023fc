"""`nanovla rl reinforce|ppo`: smoke runs in subprocesses with tiny settings, resume rules, and
bad input as one line naming the option (nothing written)."""

import json

import pytest
from cli_run import nanovla

from nanovla.errors import InputError
from nanovla.rl import ppo, reinforce

QUIET = ("--no-progress", "--no-tensorboard", "--eval-episodes", "2")
PPO_TINY = ("--num-envs", "2", "--num-steps", "64", "--minibatch-size", "32",
            "--update-epochs", "2", *QUIET)  # fmt: skip


def test_ppo_smoke_writes_the_run(tmp_path):
    done = nanovla("rl", "ppo", "--env", "CartPole-v1", "--total-steps", "384", "--seed", "1",
                   "--save-every", "1", "--keep-last", "2", "--out", "run", *PPO_TINY,
                   cwd=tmp_path, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "run/eval.json").read_text())
    assert result["env"] == "CartPole-v1" and result["episodes"] == 2
    assert isinstance(result["mean_return"], float) and result["env_steps"] == 384
    assert (tmp_path / "run/checkpoints/last/pretrained_model/model.safetensors").is_file()
    assert (tmp_path / "run/learning_curve.png").stat().st_size > 1000
    saved = sorted(p.name for p in (tmp_path / "run/checkpoints").iterdir())
    assert saved == ["000002", "000003", "last"]  # --keep-last 2 of updates 1, 2, 3 (+ the link)
    assert "deterministic mean return" in done.stdout


def test_reinforce_smoke_writes_the_run(tmp_path):
    done = nanovla("rl", "reinforce", "--env", "Pendulum-v1", "--total-steps", "400",
                   "--num-envs", "2", "--squash", "tanh", "--out", "run", *QUIET,
                   cwd=tmp_path, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "run/eval.json").read_text())
    assert result["env"] == "Pendulum-v1" and result["env_steps"] == 400
    assert (tmp_path / "run/checkpoints/last/training_state/training_step.json").is_file()


def test_resume_with_different_options_is_refused(tmp_path):
    args = ("rl", "ppo", "--env", "CartPole-v1", "--total-steps", "128", *PPO_TINY, "--out", "r")
    assert nanovla(*args, cwd=tmp_path, timeout=120).returncode == 0
    again = nanovla(*args, cwd=tmp_path, timeout=60)
    assert again.returncode == 2 and "--out" in again.stderr and "--resume" in again.stderr
    other = nanovla(*args, "--resume", "--gamma", "0.5", cwd=tmp_path, timeout=60)
    assert other.returncode == 2 and "gamma" in other.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("rl", "ppo", "--env", "NoSuchEnv-v9"), "--env"),
        (("rl", "reinforce", "--env", "Pendulum-v1", "--gamma", "1.5"), "--gamma"),
        (("rl", "nope"), "subcommand"),
    ],
)
def test_bad_input_is_one_line_naming_the_option(tmp_path, args, named):
    done = nanovla(*args, "--out", "bad", cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], done.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    ("module", "args", "named"),
    [
        (reinforce, ("--env", "CartPole-v3"), "--env"),
        (ppo, ("--env", "CartPole-v1", "--learning-rate", "-1"), "--learning-rate"),
        (ppo, ("--env", "CartPole-v1", "--total-steps", "100"), "--total-steps"),
        (ppo, ("--env", "CartPole-v1", "--squash", "tanh"), "--squash"),
        (reinforce, ("--env", "Pendulum-v1", "--squash", "sigmoid"), "--squash"),
        (ppo, ("--env", "nanovla/Reach-v0", "--world-obs", "depth"), "--world-obs"),
        (ppo, ("--env", "CartPole-v1", "--minibatch-size", "0"), "--minibatch-size"),
        (reinforce, ("--env", "CartPole-v1", "--hidden", "0"), "--hidden"),
    ],
)
def test_bad_option_raises_input_error_before_writing(tmp_path, module, args, named):
    with pytest.raises(InputError, match=named):
        module.main([*args, "--out", str(tmp_path / "bad"), "--no-progress"])
    assert not (tmp_path / "bad").exists()
