"""DAgger (`nanovla dagger`): the beta schedule, beta-mixing, aggregation, labels, resume, CLI."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import nanovla
from safetensors.torch import load_file

from nanovla.data import EpisodeDataset
from nanovla.data.recording import Mixing, record_episodes
from nanovla.data.writer import DatasetWriter
from nanovla.errors import InputError
from nanovla.eval.evaluate import EvalConfig
from nanovla.il.dagger import (
    EXECUTED_KEY,
    ROUND_KEY,
    DaggerCommand,
    PolicyLabeler,
    aggregate_round,
    recorded_rounds,
)
from nanovla.models.policy import Policy, PolicyConfig
from nanovla.world import make_world

TINY = ["--demos", "6", "--rollouts", "4", "--steps", "4", "--final-steps", "6", "--num-envs", "2"]
TINY += [
    "--batch-size",
    "16",
    "--image-size",
    "32",
    "--eval.episodes",
    "2",
    "--no-progress",
    "--tasks",
    "reach",
]
TINY += ["--policy.vision-widths", "8", "--policy.text-dim", "16"]


def small_command(tmp_path: Path, **changes) -> DaggerCommand:
    base = DaggerCommand(
        out=tmp_path / "run",
        tasks=("reach", "push"),
        demos=4,
        rollouts=3,
        num_envs=2,
        image_size=32,
        progress=False,
        eval=EvalConfig(episodes=2, splits=("seen",), gifs=0),
    )
    return replace(base, **changes)


class ConstantActor:
    """Always asks for the same, recognisable motion."""

    def select_action(self, obs):
        return np.tile(np.array([0.01, -0.01, 1.0], np.float32), (len(obs["state"]), 1))


def test_beta_follows_beta0_times_decay_to_the_round_and_round_0_is_the_expert(tmp_path) -> None:
    command = small_command(tmp_path, beta0=0.8, decay=0.5)
    assert [command.beta(i) for i in range(4)] == [1.0, 0.4, 0.2, 0.1]
    steps = small_command(tmp_path, rounds=3, steps=10, final_steps=25)
    assert [steps.round_steps(i) for i in range(4)] == [10, 10, 10, 25] and steps.total_steps == 55
    started = small_command(tmp_path, beta0=0.8, decay=0.5, checkpoint=tmp_path)
    assert started.beta(0) == pytest.approx(0.8)  # a given learner is mixed from round 0 on


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_mixing_executes_the_label_with_probability_beta_and_records_what_ran(tmp_path, p) -> None:
    world = make_world("reach", num_envs=4, image_size=32, seed=3)
    labels: list[np.ndarray] = []
    executed: list[np.ndarray] = []
    step, expert = world.step, world.expert_action

    def spy_expert(noise=None):
        labels.append(expert(noise=noise))
        return labels[-1]

    def spy_step(actions):
        executed.append(np.array(actions))
        return step(actions)

    world.expert_action, world.step = spy_expert, spy_step
    writer = DatasetWriter(tmp_path / "d", fps=10)
    record_episodes(world, writer, 8, actor=ConstantActor(), keep_failures=True, progress=False,
                    mixing=Mixing(p, EXECUTED_KEY, {ROUND_KEY: 3.0}))  # fmt: skip
    labels_all, executed_all = np.concatenate(labels), np.concatenate(executed)
    took_label = np.all(executed_all == labels_all, axis=1)
    took_actor = np.all(executed_all == ConstantActor().select_action({"state": [0]}), axis=1)
    assert np.all(took_label | took_actor)
    if p in (0.0, 1.0):
        assert took_label.mean() == p
    else:
        assert 0.35 < took_label.mean() < 0.65, took_label.mean()
    dataset = EpisodeDataset(writer.finalize(), progress=False)
    # every recorded frame: action = the expert's label of that state, action.executed = what
    # the world ran there (frames are stored by episode, the log by step: compare the pairs)
    logged = {tuple(row) for row in np.concatenate([labels_all, executed_all], axis=1).tolist()}
    recorded = np.concatenate([dataset.actions, dataset.read_feature(EXECUTED_KEY)], axis=1)
    assert all(tuple(row) in logged for row in recorded.tolist())
    assert np.all(dataset.read_feature(ROUND_KEY) == 3.0)


def test_aggregation_keeps_every_earlier_episode_and_tags_each_frame_with_its_round(
    tmp_path,
) -> None:
    command = small_command(tmp_path)
    aggregate_round(command, 0, None, None)
    data = tmp_path / "run" / "data"
    first = EpisodeDataset(data, progress=False)
    assert first.num_episodes == 4 and recorded_rounds(data) == 1
    assert np.array_equal(first.read_feature(EXECUTED_KEY), first.actions)  # the expert ran
    writer = aggregate_round(command, 1, ConstantActor(), None)
    both = EpisodeDataset(data, progress=False)
    assert (writer.num_episodes, writer.num_frames) == (both.num_episodes, both.num_frames)
    assert both.num_episodes == 7
    assert recorded_rounds(data) == 2
    old = slice(0, first.num_frames)
    assert np.array_equal(both.images[old], first.images)
    assert np.array_equal(both.actions[old], first.actions)
    rounds = both.read_feature(ROUND_KEY)[:, 0]
    assert np.all(rounds[old] == 0) and np.all(rounds[first.num_frames :] == 1)
    # round 1: the actor's motion ran (beta_1 = 0.5 mixes some expert steps in), labels are
    # the reach expert's (gripper open), never the actor's closing grip
    new = slice(first.num_frames, None)
    assert np.any(both.read_feature(EXECUTED_KEY)[new][:, 2] == 1.0)
    assert np.all(both.actions[new][:, 2] == -1.0)
    # the next round's writer forks this one in memory: the same files as reading them back
    shutil.copytree(data, tmp_path / "after-1")
    aggregate_round(command, 2, ConstantActor(), None, previous=writer)
    again = EpisodeDataset(data, progress=False)
    shutil.rmtree(data)
    shutil.copytree(tmp_path / "after-1", data)
    aggregate_round(command, 2, ConstantActor(), None)  # reads rounds 0-1 back from disk
    reread = EpisodeDataset(data, progress=False)
    assert again.num_episodes == reread.num_episodes == 10
    assert np.array_equal(again.images, reread.images)
    assert np.array_equal(again.read_feature(EXECUTED_KEY), reread.read_feature(EXECUTED_KEY))


def test_a_policy_labels_with_the_first_action_of_its_chunk(tmp_path) -> None:
    command = small_command(tmp_path, tasks=("reach",))
    aggregate_round(command, 0, None, None)
    torch.manual_seed(0)
    dataset = EpisodeDataset(tmp_path / "run" / "data", progress=False)
    policy = Policy.from_dataset(PolicyConfig(image_size=32, chunk=3), dataset)
    world = make_world("reach", num_envs=3, image_size=32, seed=1)
    obs = world.reset(seed=1)
    labels = PolicyLabeler(policy)(obs)
    assert labels.shape == (3, 3)
    np.testing.assert_allclose(labels, policy.select_action(obs), atol=1e-6)


def test_bad_options_are_refused_by_name(tmp_path) -> None:
    for changes, name in (
        ({"rounds": 0}, "--rounds"),
        ({"beta0": -0.1}, "--beta0"),
        ({"decay": 1.5}, "--decay"),
        ({"tasks": ("fly",)}, "--tasks"),
        ({"seed": -1}, "--seed"),
        ({"seed": 49_999}, "--seed"),
        ({"ema_decay": 1.0}, "--ema-decay"),
        ({"select_every": -1}, "--select-every"),
        ({"final_steps": 0}, "--final-steps"),
        ({"color_swap": 1.5}, "--color-swap"),
    ):
        with pytest.raises(InputError, match=name):
            small_command(tmp_path, **changes)


def test_amp_reaches_every_round_and_an_old_run_resumes_in_fp32(tmp_path) -> None:
    from nanovla.codec import to_json
    from nanovla.il.dagger import _spec
    from nanovla.il.dagger_command import COMMAND_FILE, parse
    from nanovla.train_command import fast_bf16

    assert DaggerCommand().amp == ("bf16" if fast_bf16() else "none")
    command = small_command(tmp_path, amp="bf16")
    assert _spec(command).amp == _spec(command, final=True).amp == "bf16"
    saved = to_json(small_command(tmp_path, amp="bf16"))
    del saved["amp"]  # a run saved before the option existed trained in fp32
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / COMMAND_FILE).write_text(json.dumps(saved))
    assert parse(["--out", str(tmp_path / "run"), "--resume"]).amp == "none"
    with pytest.raises(InputError, match="--amp"):
        parse(["--out", str(tmp_path / "run"), "--resume", "--amp", "bf16"])


def test_color_swap_reaches_the_last_round_and_the_baselines_only(tmp_path, monkeypatch) -> None:
    from nanovla.codec import to_json
    from nanovla.il import training
    from nanovla.il.dagger import _spec
    from nanovla.il.dagger_command import COMMAND_FILE, parse

    command = small_command(tmp_path, color_swap=0.5)
    assert (_spec(command).color_swap, _spec(command, final=True).color_swap) == (0.0, 0.5)
    seen = []  # the loader the training step builds gets the spec's probability

    class Loader:
        def __init__(self, *args, color_swap: float, **kwargs) -> None:
            seen.append(color_swap)
            raise InputError("stop here")

    monkeypatch.setattr("nanovla.data.BatchLoader", Loader)
    dataset = type("Dataset", (), {"root": tmp_path})()
    policy = type("Policy", (), {"config": PolicyConfig()})()
    with pytest.raises(InputError, match="stop here"):
        training._trainer(_spec(command, final=True), tmp_path, policy, dataset, 0, 5)
    assert seen == [0.5]
    saved = to_json(small_command(tmp_path))
    del saved["color_swap"]  # a run saved before the option existed trained without it
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / COMMAND_FILE).write_text(json.dumps(saved))
    assert parse(["--out", str(tmp_path / "run"), "--resume"]).color_swap == 0.0


def run_cli(tmp_path: Path, out: Path, *extra: str, env: dict | None = None):
    return nanovla("dagger", "--out", str(out), *TINY, *extra, cwd=tmp_path, timeout=600, env=env)


def _without_seconds(rounds: dict) -> dict:
    return {
        key: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]
        for key, rows in rounds.items()
    }


def test_command_runs_rounds_writes_its_files_and_resumes_after_a_kill(tmp_path) -> None:
    straight = tmp_path / "straight"
    done = run_cli(tmp_path, straight, "--rounds", "2")
    assert done.returncode == 0, done.stderr
    rounds = json.loads((straight / "rounds.json").read_text())
    assert [row["round"] for row in rounds["rounds"]] == [0, 1, 2]
    frames = [row["labelled_frames"] for row in rounds["rounds"]]
    assert frames == sorted(frames) and frames[0] > 0
    for row in rounds["rounds"] + rounds["bc"]:
        lo, hi = row["ci95"]
        assert 0 <= lo <= row["success"] <= hi <= 1
    assert rounds["bc"][0]["labelled_frames"] >= frames[-1]  # BC gets at least as many labels
    result = json.loads((straight / "eval.json").read_text())
    assert set(result["splits"]) == {"seen"} and result["families"] == ["reach"]
    assert (straight / "checkpoints" / "last" / "pretrained_model" / "run.json").is_file()
    assert (straight / "plots" / "dagger.png").stat().st_size > 1000
    assert "round" in done.stdout and "bc" in done.stdout

    # killed right after round 1's checkpoint was saved (the 2nd save), before its evaluation
    killed = tmp_path / "killed"
    env = {"NANOVLA_TEST_KILL_AT": "checkpoint:saved@2"}
    assert run_cli(tmp_path, killed, "--rounds", "2", env=env).returncode == -9
    partial = json.loads((killed / "rounds.json").read_text())
    assert [row["round"] for row in partial["rounds"]] == [0]
    again = run_cli(tmp_path, killed, "--rounds", "2")
    assert again.returncode != 0 and "--resume" in again.stderr  # nothing overwritten
    resumed = run_cli(tmp_path, killed, "--rounds", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    finished = json.loads((killed / "rounds.json").read_text())
    assert _without_seconds(finished) == _without_seconds(rounds)
    ema = Path("checkpoints", "last", "pretrained_model", "ema", "model.safetensors")
    judged = Path(json.loads((killed / "eval.json").read_text())["checkpoint"])
    assert judged == killed / "rounds" / "r02" / ema.parent  # the last round's EMA weights
    straight_ema, killed_ema = load_file(str(straight / ema)), load_file(str(killed / ema))
    for name, tensor in straight_ema.items():  # round 1's EMA restored, so round 2's is the same
        assert torch.equal(killed_ema[name], tensor), name

    changed = run_cli(tmp_path, killed, "--rounds", "3", "--resume")
    assert changed.returncode == 2 and "--rounds" in changed.stderr

    # --bc-every-round on resume trains rounds 0 and 1's baselines only; round 2's row stays
    curve = run_cli(tmp_path, straight, "--rounds", "2", "--bc-every-round", "--resume")
    assert curve.returncode == 0, curve.stderr
    with_curve = json.loads((straight / "rounds.json").read_text())
    assert [row["round"] for row in rounds["bc"]] == [2]
    assert [row["round"] for row in with_curve["bc"]] == [0, 1, 2]
    assert with_curve["bc"][2] == rounds["bc"][0]  # not retrained (its seconds too)
    bc_frames = [row["labelled_frames"] for row in with_curve["bc"]]
    assert all(b >= d for b, d in zip(bc_frames, frames)) and bc_frames == sorted(bc_frames)
    assert all((straight / name / "eval.json").is_file() for name in ("bc-r00", "bc-r01", "bc"))
    assert curve.stdout.count("\nbc ") == 3
    saved = json.loads((straight / "dagger_command.json").read_text())
    assert saved["bc_every_round"] is True


def test_bad_checkpoints_fail_in_one_line_before_anything_is_written(tmp_path) -> None:
    missing = run_cli(tmp_path, tmp_path / "a", "--checkpoint", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "--checkpoint" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and not (tmp_path / "a").exists()
    other = tmp_path / "other"
    world = make_world("reach", num_envs=1, image_size=48, seed=0)
    world.reset(seed=0)
    stats_source = small_command(tmp_path, image_size=48, tasks=("reach",), out=tmp_path / "s")
    aggregate_round(stats_source, 0, None, None)
    dataset = EpisodeDataset(tmp_path / "s" / "data", progress=False)
    Policy.from_dataset(PolicyConfig(image_size=48), dataset).save_pretrained(other)
    wrong = run_cli(tmp_path, tmp_path / "b", "--expert", str(other))
    assert wrong.returncode == 2 and "--expert" in wrong.stderr and "48x48" in wrong.stderr
    assert not (tmp_path / "b").exists()


def test_select_every_judges_the_last_rounds_selected_weights(tmp_path) -> None:
    out = tmp_path / "sel"
    done = run_cli(tmp_path, out, "--rounds", "1", "--select-every", "3", "--select-episodes", "1")
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "eval.json").read_text())
    assert Path(result["checkpoint"]).parent.parent == out / "rounds" / "r01" / "selection"
    assert result["selected_step"] in (3, 6)
    assert not (out / "rounds" / "r00" / "selection").exists()  # earlier rounds: no validation
    bc = json.loads((out / "bc" / "eval.json").read_text())
    assert Path(bc["checkpoint"]).parent.parent == out / "bc" / "train" / "selection"
