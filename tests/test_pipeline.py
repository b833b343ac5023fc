"""The main job's chain (`nanovla.pipeline`) and the seams bugs it had: seeds, scenes, resume."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import ENV, nanovla

from nanovla import pipeline
from nanovla.data import EpisodeDataset
from nanovla.data.collect import CollectConfig, collect
from nanovla.errors import InputError
from nanovla.eval import select
from nanovla.eval.evaluate import EvalConfig, evaluate, seed_range


@pytest.fixture(scope="module")
def reach_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "reach"
    collect(CollectConfig(task="reach", episodes=12, num_envs=6, out=out, progress=False))
    return out


# ---------------------------------------------------------------- bug 1: --seed reaches the weights


def test_seed_decides_the_initial_weights(reach_data):
    dataset = EpisodeDataset(reach_data)

    def weights(seed: int, global_state: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(global_state)  # whatever the global RNG holds must not matter
        policy = pipeline.build_policy(pipeline.TrainCommand(seed=seed), dataset)
        return {k: v.clone() for k, v in policy.state_dict().items()}

    # same --seed from different global RNG states; another --seed from the same global state
    first, again, other = weights(0, 11), weights(0, 22), weights(1, 11)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


# ---------------------------------------------------------------- bug 2: scenes keyed on the family


class _FirstFrames:
    """A 'policy' that remembers the first observation of each family it is rolled out on."""

    def __init__(self) -> None:
        self.first: dict[str, np.ndarray] = {}

    def select_action(self, obs: dict) -> np.ndarray:
        family = obs["family"][0] if "family" in obs else obs["task"][0]
        self.first.setdefault(family, obs["state"].copy())
        return np.zeros((len(obs["state"]), 3), dtype=np.float32)


def test_eval_scenes_do_not_depend_on_the_task_list():
    config = EvalConfig(episodes=4, splits=("seen",), gifs=0)
    alone, in_suite = _FirstFrames(), _FirstFrames()
    evaluate(alone, ("push",), config, image_size=32, progress=False)
    evaluate(in_suite, ("reach", "pick_place", "push"), config, image_size=32, progress=False)
    np.testing.assert_array_equal(alone.first["push"], in_suite.first["push"])


# ---------------------------------------------------------------- bug 3: validation has its own seeds


def test_validation_rollouts_use_their_own_seed_range(monkeypatch):
    seen: list[int] = []

    def fake_evaluate(model, families, config, image_size, progress=True):
        seen.append(config.seed)
        return {"splits": {"seen": {"success": 0.0, "per_task": {}}}}

    monkeypatch.setattr(select, "evaluate", fake_evaluate)  # validation rollouts go through it
    command = pipeline.TrainCommand()

    class Model:
        def reset(self) -> None: ...

    pipeline._validation(command, [])(Model(), 0)
    assert seen == [command.val_seed]
    validation, final = seed_range(command.val_seed), seed_range(command.eval.seed)
    assert not set(validation) & set(final) and command.seed not in validation
    with pytest.raises(InputError, match="overlapping"):
        pipeline.TrainCommand(val_seed=command.eval.seed + 1)
    with pytest.raises(InputError, match="seed range"):
        pipeline.TrainCommand(seed=command.val_seed)


# ------------------------------------------------ --targets train: seen asks only for seen combos


class _Still:
    """A 'policy' that never moves."""

    def select_action(self, obs: dict) -> np.ndarray:
        return np.zeros((len(obs["state"]), 3), dtype=np.float32)


def test_validation_and_evaluation_follow_the_demonstrations_targets(monkeypatch):
    from nanovla.eval import rollout
    from nanovla.world.scene import COLORS, HELDOUT_COMBOS, KINDS

    asked: list[str] = []
    real = rollout.make_world

    def recording(*args, **kwargs):
        asked.append(kwargs.get("targets", "all"))
        return real(*args, **kwargs)

    monkeypatch.setattr(rollout, "make_world", recording)
    seen_config = {}

    def fake_evaluate(model, families, config, image_size, progress=True):
        seen_config["targets"] = config.targets
        return {"splits": {"seen": {"success": 0.0, "per_task": {}}}}

    monkeypatch.setattr(select, "evaluate", fake_evaluate)  # validation rollouts go through it

    class Model:
        def reset(self) -> None: ...

    pipeline._validation(pipeline.TrainCommand(targets="train"), [])(Model(), 0)
    assert seen_config["targets"] == "train"
    # unset --eval.targets: every split but combos asks for what the policy was trained on
    config = EvalConfig(episodes=30, splits=("seen", "combos"), gifs=0, targets="train")
    result = evaluate(_Still(), ("reach",), config, image_size=32, progress=False)
    assert asked == ["train", "heldout"] and result["splits"]["seen"]["targets"] == "train"
    assert EvalConfig().targets is None  # resolved from the run (run.json), "all" when unknown
    unset = evaluate(_Still(), ("reach",), EvalConfig(episodes=2, splits=("seen",),
                     gifs=0), image_size=32, progress=False)  # fmt: skip
    assert unset["targets"] == "all"
    heldout = {(KINDS.index(k), COLORS.index(c)) for k, c in HELDOUT_COMBOS}
    from nanovla.world import make_world

    world = make_world("reach", num_envs=200, image_size=32, seed=3, targets="train")
    world.reset(seed=3)
    state = world.state
    combos = set(zip(state.obj_kind[:, 0].tolist(), state.obj_color[:, 0].tolist()))
    assert combos and not combos & heldout
    with pytest.raises(InputError, match="--eval.targets"):
        evaluate(_Still(), ("reach",), EvalConfig(targets="some"), progress=False)


# ---------------------------------------------------------------- bug 4: --resume and other flags

TINY = (
    "--episodes", "12", "--collect-envs", "6", "--batch-size", "16", "--image-size", "32",
    "--train.steps", "6", "--train.warmup-steps", "1", "--train.log-every", "2",
    "--train.num-threads", "1", "--no-progress", "--eval.episodes", "2", "--eval.gifs", "0",
    "--tasks", "reach", "--eval-every-episodes", "2",
)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    result = nanovla("train", "--out", "run", *TINY, cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    return root


def _step(run: Path) -> int:
    return json.loads((run / "checkpoints/last/training_state/training_step.json").read_text())[
        "step"
    ]


def test_resume_refuses_options_that_may_not_change_by_name(tiny_run):
    result = nanovla(
        "train", "--out", "run", "--resume", "--batch-size", "8", "--policy.vision", "lenet",
        cwd=tiny_run,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--batch-size" in result.stderr and "--policy.vision" in result.stderr
    assert _step(tiny_run / "run") == 6


def test_resume_applies_a_new_step_count(tiny_run):
    result = nanovla("train", "--out", "run", "--resume", "--train.steps", "8", cwd=tiny_run)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "train.steps" in result.stdout and _step(tiny_run / "run") == 8
    saved = json.loads((tiny_run / "run" / "train_command.json").read_text())
    assert saved["train"]["steps"] == 8  # a later --resume continues with it


# ---------------------------------------------------------------- bug 5: eval never overwrites


def test_eval_writes_beside_the_runs_result(tiny_run):
    run = tiny_run / "run"
    before = (run / "eval.json").read_bytes()
    args = ("eval", "--checkpoint", "run/checkpoints/last", "--eval.episodes", "2")
    for _ in range(2):
        result = nanovla(*args, "--eval.gifs", "0", cwd=tiny_run)
        assert result.returncode == 0, result.stderr[-2000:]
    assert (run / "eval.json").read_bytes() == before
    written = sorted(p.name for p in run.glob("eval-*.json"))
    assert len(written) == 2 and written[0].startswith("eval-0000")
    refused = nanovla(*args, "--out", "run/eval.json", cwd=tiny_run)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert (run / "eval.json").read_bytes() == before


def test_the_ema_weights_carry_the_runs_record(tiny_run):
    """`nanovla eval` of `pretrained_model/ema` judges the run's families and targets, as the
    raw weights' folder does (without run.json beside them it judged all four families)."""
    pretrained = tiny_run / "run/checkpoints/last/pretrained_model"
    assert (pretrained / "ema" / "run.json").read_bytes() == (pretrained / "run.json").read_bytes()


# ---------------------------------------------------------------- resume through the CLI, exact


def test_interrupted_then_resumed_run_is_bit_identical(tmp_path, reach_data):
    args = (
        "--dataset", str(reach_data), "--tasks", "reach", "--image-size", "64", "--batch-size",
        "8", "--train.steps", "400", "--train.save-every", "50", "--train.log-every", "50",
        "--train.num-threads", "1", "--no-progress", "--eval.episodes", "2",
        "--eval.gifs", "0", "--eval.splits", "seen", "--eval-every-episodes", "2",
    )  # fmt: skip
    straight = nanovla("train", "--out", "straight", *args, cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-2000:]
    process = subprocess.Popen(
        [sys.executable, "-m", "nanovla.cli", "train", "--out", "cut", *args],
        cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (tmp_path / "cut/checkpoints/000050").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert 50 <= _step(tmp_path / "cut") < 400
    resumed = nanovla("train", "--out", "cut", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for weights in ("model.safetensors", "ema/model.safetensors", "ema/ema.json"):
        path = f"checkpoints/last/pretrained_model/{weights}"  # the raw weights and their EMA
        assert (tmp_path / "cut" / path).read_bytes() == (tmp_path / "straight" / path).read_bytes()
    a, b = (json.loads((tmp_path / r / "eval.json").read_text()) for r in ("straight", "cut"))
    assert a["splits"] == b["splits"]


def test_a_run_saved_before_an_option_existed_resumes_without_it(tmp_path):
    from nanovla.io import write_json
    from nanovla.train_command import ABSENT_MEANS, TrainCommand, command_json, load_command

    saved = command_json(TrainCommand(), tmp_path)
    for name in ABSENT_MEANS:
        del saved[name]  # as an older nanovla wrote train_command.json
    del saved["policy"]["word_insertion"]
    write_json(tmp_path / "train_command.json", saved)
    command = load_command(tmp_path)
    assert (command.color_swap, command.ko_scramble) == (0.0, 0.0)  # off, as those runs were
    assert command.policy.word_insertion == 0.0
    assert TrainCommand().color_swap == 0.5 and TrainCommand().ko_scramble == 0.5
    assert TrainCommand().policy.word_insertion == 0.3
