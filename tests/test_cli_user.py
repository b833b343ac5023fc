"""The command line as a new user meets it (issue: options that do nothing, typos that record
thousands of episodes, help text): each check runs the real command in a subprocess."""

import dataclasses
import json
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from cli_run import nanovla as run_nanovla

from nanovla import pipeline


def nanovla(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_nanovla(*args, cwd=cwd, env={"COLUMNS": "100"})  # help in one column


TINY = (
    "--episodes", "8", "--collect-envs", "4", "--batch-size", "16", "--image-size", "32",
    "--train.steps", "2", "--train.warmup-steps", "1", "--train.log-every", "1",
    "--train.eval-every", "0", "--train.num-threads", "1", "--no-progress",
    "--eval.episodes", "2", "--eval.gifs", "0", "--eval.splits", "seen", "--tasks", "reach",
)  # fmt: skip


@pytest.fixture(scope="module")
def reach_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("user")
    result = nanovla("train", "--out", "run", *TINY, cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    return root


# ---------------------------------------------------------------- options that do nothing


@pytest.mark.parametrize(
    "option", ["--train.batch-size", "--train.seed", "--train.resume", "--policy.image-size"]
)
def test_shadowed_options_are_gone(tmp_path, option):
    result = nanovla("train", option, "8", "--out", "x", cwd=tmp_path)
    assert result.returncode == 2 and not (tmp_path / "x").exists()
    help_text = nanovla("train", "--help", cwd=tmp_path).stdout
    assert option not in help_text


def test_nanovla_without_a_command_prints_help_and_exits_2(tmp_path):
    result = nanovla(cwd=tmp_path)
    assert result.returncode == 2 and "usage: nanovla COMMAND" in result.stderr


# ---------------------------------------------------------------- paths that are wrong


def test_a_dataset_that_does_not_exist_is_an_error_not_a_recording(tmp_path):
    result = nanovla("train", "--dataset", "data/nope", "--out", "r", *TINY, cwd=tmp_path)
    assert result.returncode == 2 and "data/nope" in result.stderr
    assert "--collect-missing" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "r").exists()
    made = nanovla(
        "train", "--dataset", "data/new", "--collect-missing", "--out", "r", *TINY, cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr[-2000:]
    assert (tmp_path / "data" / "new" / "meta" / "info.json").is_file()


def test_a_given_dataset_wins_over_the_options_that_describe_it():
    command = pipeline.TrainCommand(dataset=Path("d"), episodes=6000, image_size=64)
    dataset = SimpleNamespace(
        num_episodes=300, image_shape=(96, 96, 3), info={"nanovla": {"families": ["sort"]}}
    )
    fixed = pipeline.reconcile_dataset(command, dataset)
    assert (fixed.episodes, fixed.image_size, fixed.tasks) == (300, 96, ("sort",))
    default = dataclasses.replace(command, dataset=None)
    assert pipeline.reconcile_dataset(default, dataset) == default  # only a given one


def test_eval_warns_about_families_the_checkpoint_never_trained_on(reach_run):
    result = nanovla(
        "eval", "--checkpoint", "run/checkpoints/last", "--tasks", "push",
        "--eval.episodes", "2", "--eval.gifs", "0", "--eval.splits", "seen", "--no-progress",
        cwd=reach_run,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "warning" in result.stderr and "push" in result.stderr and "reach" in result.stderr


def test_eval_executes_as_much_of_each_chunk_as_asked(reach_run):
    args = ("eval", "--checkpoint", "run/checkpoints/last", "--eval.episodes", "2",
            "--eval.gifs", "0", "--eval.splits", "seen", "--no-progress")  # fmt: skip
    result = nanovla(*args, "--n-action-steps", "3", "--out", "e3.json", cwd=reach_run)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((reach_run / "e3.json").read_text())["n_action_steps"] == 3
    refused = nanovla(*args, "--n-action-steps", "99", "--out", "e99.json", cwd=reach_run)
    assert refused.returncode == 2 and "--n-action-steps" in refused.stderr
    assert "Traceback" not in refused.stderr and not (reach_run / "e99.json").exists()


def test_resume_applies_what_may_change_and_refuses_the_rest(reach_run):
    refused = nanovla("train", "--out", "run", "--resume", "--seed", "3", cwd=reach_run)
    assert refused.returncode == 2 and "--seed" in refused.stderr
    applied = nanovla("train", "--out", "run", "--resume", "--train.steps", "3", cwd=reach_run)
    assert applied.returncode == 0, applied.stderr[-2000:]
    saved = json.loads((reach_run / "run" / "train_command.json").read_text())
    assert saved["train"]["steps"] == 3


# ---------------------------------------------------------------- --quick


def test_quick_is_a_documented_smaller_job_and_options_still_apply():
    quick = pipeline.parse(["--quick"])
    assert quick.quick and quick.tasks == ("reach", "push")
    assert quick.train.steps < pipeline.TrainCommand().train.steps
    assert quick.episodes < pipeline.TrainCommand().episodes
    assert pipeline.parse(["--quick", "--train.steps", "7"]).train.steps == 7


# ---------------------------------------------------------------- help text


def _help(*command: str) -> str:
    result = nanovla(*command, "--help", cwd=Path.cwd())
    assert result.returncode == 0
    return re.sub(r"[│╭╮╰╯─]", " ", result.stdout)


def test_help_explains_the_jargon_it_uses():
    text = " ".join(_help("train").split())
    for explained in (
        "DART (noise injected while demonstrating)",
        'film" (feature-wise linear modulation)',
        "spatial softmax: each channel becomes the expected x, y",
        'two-hot" targets',
        "baseline VLA (SimpleVLA)",
    ):
        assert explained in text, explained


def test_no_option_shows_two_defaults():
    for command in (("train",), ("eval",), ("collect",)):
        for option in re.split(r"\n\s+--", _help(*command)):
            assert len(re.findall(r"default[:s]", option, re.I)) <= 1, option


@pytest.mark.parametrize("command", [("train",), ("eval",), ("collect",), ("world", "demo")])
def test_help_sentences_are_not_broken_where_the_source_wraps(command):
    lines = _help(*command).splitlines()
    for line, following in zip(lines, lines[1:], strict=False):
        body, after = line.strip(), following.strip()
        if not body or body.startswith("-") or body.endswith("options") or not after:
            continue
        # a short description line followed by more description is a hard break
        assert len(line.rstrip()) >= 60 or after.startswith(("-", "(default")), (body, after)
