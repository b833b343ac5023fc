"""Subprocess smoke runs of the user-facing commands with tiny settings: collect -> train -> eval."""

import json
from pathlib import Path

import pytest
from cli_run import nanovla

TINY_TRAIN = (
    "--episodes", "12", "--collect-envs", "6", "--batch-size", "16", "--val-fraction", "0.2",
    "--train.steps", "6", "--train.warmup-steps", "1", "--train.log-every", "2",
    "--train.save-every", "3", "--train.num-threads", "1", "--no-progress",
    "--eval.episodes", "2", "--eval.gifs", "1", "--tasks", "reach", "push",
    "--eval-every-episodes", "2",
)  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("smoke")
    result = nanovla("train", "--out", "run", *TINY_TRAIN, cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "seen" in result.stdout and "wall time" in result.stdout
    return root


def test_collect_writes_a_lerobot_dataset(tmp_path):
    result = nanovla(
        "collect", "--task", "reach", "--episodes", "3", "--num-envs", "3", "--out", "d",
        "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads((tmp_path / "d" / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 3


def test_train_writes_checkpoints_eval_and_videos(trained_run):
    run = trained_run / "run"
    result = json.loads((run / "eval.json").read_text())
    assert result["episodes_per_task"] == 2
    for split in ("seen", "heldout", "user", "ko", "ko_heldout", "combos"):
        summary = result["splits"][split]
        assert set(summary["per_task"]) == {"reach", "push"}
        assert 0.0 <= summary["ci95"][0] <= summary["success"] <= summary["ci95"][1] <= 1.0
    last = run / "checkpoints" / "last"
    assert (last / "pretrained_model" / "model.safetensors").is_file()
    assert (last / "training_state" / "training_step.json").is_file()
    assert json.loads((last / "training_state" / "training_step.json").read_text())["step"] == 6
    assert list((run / "videos").glob("*.gif"))
    keys = set().union(*(json.loads(line) for line in (run / "logs" / "metrics.jsonl").open()))
    assert {"train/loss", "train/samples_per_s"} <= keys
    # the demonstrations were cached for the next run
    assert len(list((trained_run / "data").iterdir())) == 1


def test_eval_of_the_checkpoint_writes_the_same_schema(trained_run):
    out = trained_run / "again.json"
    first = json.loads((trained_run / "run" / "eval.json").read_text())
    # the run evaluated its selected EMA weights, and says where they are
    assert first["checkpoint"] == "run/selection/000006/pretrained_model"
    assert first["selected_step"] == 6
    result = nanovla(
        "eval", "--checkpoint", "run/selection/best", "--out", str(out),
        "--eval.episodes", "2", "--eval.gifs", "0", cwd=trained_run,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    fresh = json.loads(out.read_text())
    assert fresh["families"] == ["reach", "push"]  # read from the checkpoint's run.json
    # same seeded initial states, same weights: the same successes
    for split in ("seen", "heldout", "ko"):
        assert fresh["splits"][split]["per_task"] == first["splits"][split]["per_task"]


def test_train_refuses_to_overwrite_a_run(trained_run):
    before = (trained_run / "run" / "eval.json").read_bytes()
    result = nanovla("train", "--out", "run", *TINY_TRAIN, cwd=trained_run)
    assert result.returncode == 2
    assert "already holds a run" in result.stderr and "Traceback" not in result.stderr
    assert (trained_run / "run" / "eval.json").read_bytes() == before


def test_resume_without_checkpoint_is_one_clear_line(tmp_path):
    result = nanovla("train", "--out", "nothing-here", "--resume", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "nothing-here" in result.stderr
    assert not (tmp_path / "nothing-here").exists()


def test_eval_of_a_missing_checkpoint_is_one_clear_line(tmp_path):
    result = nanovla("eval", "--checkpoint", "runs/none/checkpoints/last", cwd=tmp_path)
    assert result.returncode == 2 and "runs/none/checkpoints/last" in result.stderr
    assert "Traceback" not in result.stderr
