"""Meta-World: the adapter, recording, a tiny train + eval, the command's errors (tiny settings)."""

import importlib
import json

import numpy as np
import pytest

pytest.importorskip("metaworld")

from cli_run import nanovla  # noqa: E402

from nanovla.cli import main as cli_main  # noqa: E402
from nanovla.envs import metaworld as mw  # noqa: E402
from nanovla.errors import InputError  # noqa: E402

TASK = "reach-v3"  # the expert reaches in ~45 steps: the cheapest task to run


def _expert_rollout(env, goal, steps):
    obs = [env.reset(goal)]
    for _ in range(steps):
        obs.append(env.step(env.expert_action(obs[-1]))[0])
    return np.stack(obs)


def test_reset_and_step_are_deterministic_per_goal_configuration():
    goals = mw.goal_configs(TASK, 0)
    assert len(goals) == mw.GOALS_PER_SEED and goals[3].index == 3
    first, second = mw.MetaWorldEnv(TASK), mw.MetaWorldEnv(TASK)
    a = _expert_rollout(first, goals[3], 10)
    b = _expert_rollout(second, goals[3], 10)
    assert a.shape == (11, mw.OBS_DIM) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)  # a fresh env gives the same episode
    _expert_rollout(first, goals[7], 5)  # another episode in between changes nothing
    np.testing.assert_array_equal(_expert_rollout(first, goals[3], 10), a)
    other = first.reset(goals[4])
    assert not np.array_equal(other[-3:], a[0, -3:])  # another goal position


def test_goal_seeds_decide_the_configurations():
    again = mw.goal_configs.__wrapped__(TASK, 0)  # bypass the cache: really draw again
    env = mw.MetaWorldEnv(TASK)
    same = [env.reset(g)[-3:] for g in (mw.goal_configs(TASK, 0)[0], again[0])]
    np.testing.assert_array_equal(*same)
    assert not np.array_equal(env.reset(mw.goal_configs(TASK, 1)[0])[-3:], same[0])
    goals = mw.goals_for(TASK, 52, 0)
    assert [(g.seed, g.index) for g in goals[49:]] == [(0, 49), (1, 0), (1, 1)]


def test_expert_actions_are_in_the_action_box_and_succeed():
    from nanovla.eval.metaworld import evaluate_metaworld

    result = evaluate_metaworld(None, (TASK,), episodes=2, max_steps=120, progress=False)
    assert result["per_task"] == {TASK: 1.0} and result["episodes_per_task"] == 2
    assert result["tasks"][TASK]["ci95"][1] == 1.0


def test_unknown_task_lists_the_allowed_names():
    with pytest.raises(InputError) as error:
        mw.resolve_tasks(["reach-v3", "pick"])
    message = str(error.value)
    assert "'pick'" in message and "MT10" in message and "peg-insert-side-v3" in message
    assert mw.resolve_tasks(["MT10", "reach-v3"]) == mw.MT10


def test_missing_extra_is_one_line_naming_it(monkeypatch, capsys):
    real = importlib.import_module

    def no_metaworld(name, *args):
        if name.split(".")[0] == "metaworld":
            raise ImportError(f"No module named {name!r}")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_metaworld)
    with pytest.raises(InputError, match=r"nanovla\[metaworld\]"):
        mw.require_metaworld()
    monkeypatch.setattr(importlib, "import_module", real)  # the CLI imports its module first
    import nanovla.metaworld_command  # noqa: F401

    monkeypatch.setattr(importlib, "import_module", no_metaworld)
    code = cli_main(["metaworld", "collect", "--tasks", TASK, "--episodes", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "nanovla[metaworld]" in err


def test_collect_writes_a_dataset_that_reads_back(tmp_path):
    from nanovla.data.state_dataset import StateDataset
    from nanovla.eval.metaworld import record_demonstrations

    summary = record_demonstrations(
        tmp_path / "ds", (TASK,), 2, noise=0.1, max_steps=120, progress=False
    )
    dataset = StateDataset(tmp_path / "ds")
    assert dataset.num_episodes == summary["episodes"] == 2
    assert dataset.num_frames == summary["frames"] and dataset.state_dim == mw.OBS_DIM
    assert dataset.action_dim == mw.ACTION_DIM and dataset.tasks == [mw.instruction(TASK)]
    assert np.abs(dataset.actions).max() <= 1.0
    assert "observation.image" not in dataset.info["features"]
    assert dataset.info["nanovla"]["simulator"] == "metaworld"
    # the recorded states are the env's: episode 0 starts where goal 0 of seed 0 resets
    start = mw.MetaWorldEnv(TASK).reset(mw.goal_configs(TASK, 0)[0])
    np.testing.assert_array_equal(dataset.states[0], start)


def test_tiny_train_and_eval_write_eval_json(tmp_path, monkeypatch):
    from nanovla.metaworld_command import EvalCommand, LoopOptions, TrainCommand, evaluate, train

    monkeypatch.chdir(tmp_path)  # the recording is cached under ./data
    command = TrainCommand(
        tasks=(TASK,), episodes=2, max_steps=60, eval_episodes=2, out=tmp_path / "run",
        expert_baseline=False, progress=False, batch_size=32,
        train=LoopOptions(steps=30, log_every=10, warmup_steps=0, tensorboard=False),
    )  # fmt: skip
    train(command)
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert isinstance(result["episodes_per_task"], int) and result["episodes_per_task"] == 2
    assert set(result["per_task"]) == {TASK} and isinstance(result["per_task"][TASK], float)
    assert isinstance(result["success"], float) and 0.0 <= result["success"] <= 1.0
    # the saved checkpoint acts as the trained policy did: same episodes, same outcome
    again = evaluate(
        EvalCommand(
            checkpoint=tmp_path / "run" / "checkpoints" / "last", episodes=2, max_steps=60,
            progress=False,
        )
    )  # fmt: skip
    assert again["per_task"] == result["per_task"]
    assert (tmp_path / "run" / "eval-000030.json").is_file()


def test_state_policy_trains_saves_and_loads(tmp_path):
    import torch

    from nanovla.data.loader import BatchLoader
    from nanovla.data.state_dataset import StateDataset, StateDatasetWriter, state_episode
    from nanovla.models.policy.state_policy import StatePolicy, StatePolicyConfig

    rng = np.random.default_rng(0)
    writer = StateDatasetWriter(tmp_path / "ds", fps=80)
    for task in ("open the door", "close the drawer"):
        states = rng.normal(size=(30, 5)).astype(np.float32)
        writer.add_episode(state_episode(states, np.tanh(states[:, :2]), task))
    writer.finalize()
    dataset = StateDataset(tmp_path / "ds")
    torch.manual_seed(0)
    policy = StatePolicy.from_dataset(StatePolicyConfig(chunk=3, hidden_dim=32), dataset)
    batch = BatchLoader(dataset, 16, chunk=3, val_fraction=0.0).next_batch()
    loss, metrics = policy(batch)
    assert loss.ndim == 0 and {"l1", "l1_dim0", "l1_dim1"} <= set(metrics)
    loss.backward()
    assert all(p.grad is not None for p in policy.layers.parameters())
    policy.save_pretrained(tmp_path / "model")
    loaded = StatePolicy.from_pretrained(tmp_path / "model")
    obs = {"state": dataset.states[:4], "instruction": ["open the door"] * 4}
    np.testing.assert_array_equal(policy.select_action(obs), loaded.select_action(obs))
    assert loaded.select_action({"state": dataset.states[0], "instruction": "x"}).shape == (2,)
    with pytest.raises(InputError, match="observation.state"):
        policy.select_action({"state": dataset.states[:2, :4], "instruction": ["a", "b"]})


def test_command_smoke_and_errors_in_a_subprocess(tmp_path):
    run = nanovla(
        "metaworld", "train", "--tasks", TASK, "--episodes", "1", "--max-steps", "60",
        "--eval-episodes", "1", "--train.steps", "10", "--batch-size", "16", "--noise", "0",
        "--no-progress",
        "--out", "run", cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "reach-v3" in run.stdout and "expert" in run.stdout and "wall time" in run.stdout
    assert json.loads((tmp_path / "run" / "expert_eval.json").read_text())["success"] == 1.0
    bad = nanovla("metaworld", "collect", "--tasks", "pick", "--episodes", "1", cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "unknown Meta-World task 'pick'" in bad.stderr and "reach-v3" in bad.stderr
