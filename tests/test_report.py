"""The run report: what it reads from a run directory, what it says is missing, what it shows."""

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from cli_run import nanovla

from nanovla.data.collect import CollectConfig, collect
from nanovla.errors import InputError, MissingError
from nanovla.eval.evaluate import SPLIT_TEMPLATES, scene_seed
from nanovla.eval.video import write_video
from nanovla.io import write_json
from nanovla.report import REPORT_FILE, build_report, write_report
from nanovla.report.curves import panel_keys, plot_curves
from nanovla.report.gather import command_line, gather, launch_dir, read_metrics
from nanovla.report.rollouts import attach_instructions, find_rollouts
from nanovla.train_command import TrainCommand, command_json, parse, quick_command
from nanovla.world import make_world

EVAL_SEED = 100000


def _eval_json(families: tuple[str, ...], videos: list[str]) -> dict:
    split = {
        "success": 0.5,
        "ci95": [0.2, 0.8],
        "successes": 2,
        "episodes": 4,
        "templates": "train",
        "per_task": {f: 0.5 for f in families},
        "per_task_ci95": {f: [0.1, 0.9] for f in families},
    }
    return {
        "episodes_per_task": 2,
        "seed": EVAL_SEED,
        "targets": "all",
        "families": list(families),
        "splits": {"seen": split, "ko": {**split, "templates": "ko", "successes": 3}},
        "videos": videos,
    }


def _gif(run: Path, family: str, index: int, success: bool) -> str:
    """The GIF the evaluation would write for episode `index` of `family` (2 episodes)."""
    world = make_world(
        family, num_envs=2, seed=scene_seed(EVAL_SEED, family), instructions=SPLIT_TEMPLATES["seen"]
    )
    obs = world.reset(seed=scene_seed(EVAL_SEED, family))
    frames = np.repeat(obs["image"][index][None], 3, axis=0)
    name = f"{family}_{index}_{'success' if success else 'failure'}.gif"
    write_video(frames, run / "videos" / name, caption=obs["instruction"][index], success=success)
    return f"somewhere/else/videos/{name}"  # eval.json's paths are relative to the old cwd


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A hand-made run directory: command, dataset (English + Korean), log, eval.json, GIFs."""
    root = tmp_path_factory.mktemp("report")
    dataset = collect(
        CollectConfig(task="reach,push", episodes=6, out=root / "data", num_envs=6, progress=False)
    )
    run = root / "run"
    command = TrainCommand(dataset=dataset, tasks=("reach", "push"), seed=3)
    write_json(run / "train_command.json", command_json(command, run))
    rows = [{"step": s, "train/loss": 1.0 / s, "train/lr": 1e-3, "train/samples_per_s": 500.0} for s in (1, 2, 3)]  # fmt: skip
    rows.append({"step": 2, "eval/success": 0.5, "eval/success_reach": 1.0, "eval/val_loss": 0.4})
    lines = [json.dumps(row) for row in rows] + ['{"step": 4, "train/lo']  # cut by a crash
    (run / "logs").mkdir()
    (run / "logs" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    videos = [_gif(run, "reach", 0, True), _gif(run, "push", 1, False)]
    write_json(run / "eval.json", _eval_json(("reach", "push"), videos))
    return run


def test_report_shows_every_section(run_dir):
    page, summary = build_report(run_dir)
    assert summary.dataset is not None and summary.dataset.episodes == 6
    assert set(summary.dataset.examples) == {"English", "Korean"}
    for text in summary.dataset.examples["Korean"]:
        assert text in page and re.search("[\uac00-\ud7a3]", text)
    assert 'id="success-table"' in page and "0.50 [0.20, 0.80]" in page and "3/4" in page
    assert f'id="eval-seed">{EVAL_SEED}<' in page
    assert page.count("data:image/gif;base64,") == 2 and page.count("data:image/png;base64,") == 1
    assert "http://" not in page and "https://" not in page and "<script" not in page
    # the crash-cut log line is skipped and said so; nothing else is missing
    assert len(summary.missing) == 1 and "1 unreadable line" in summary.missing[0]


def test_rollouts_get_their_instruction_only_when_the_scene_matches(run_dir):
    result = json.loads((run_dir / "eval.json").read_text())
    rollouts = find_rollouts(run_dir, result)
    assert [(r.family, r.index, r.success) for r in rollouts] == [("reach", 0, True), ("push", 1, False)]  # fmt: skip
    attach_instructions(rollouts, result, 64)
    for rollout in rollouts:
        world = make_world(rollout.family, num_envs=2, seed=scene_seed(EVAL_SEED, rollout.family))
        expected = world.reset(seed=scene_seed(EVAL_SEED, rollout.family))["instruction"]
        assert rollout.instruction == expected[rollout.index]
    moved = {**result, "seed": EVAL_SEED + 1}  # other scenes: the frames do not match
    rollouts = find_rollouts(run_dir, moved)
    attach_instructions(rollouts, moved, 64)
    assert all(r.instruction is None for r in rollouts)


def test_missing_eval_json_is_said_and_the_rest_still_rendered(run_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "logs").mkdir()
    (run / "logs" / "metrics.jsonl").write_bytes((run_dir / "logs" / "metrics.jsonl").read_bytes())
    (run / "train_command.json").write_bytes((run_dir / "train_command.json").read_bytes())
    path = write_report(run)
    page = path.read_text()
    assert path == run / REPORT_FILE
    assert 'id="missing"' in page and "eval.json not found" in page
    assert "data:image/png;base64," in page and 'id="command"' in page
    assert 'id="success-table"' not in page


def test_broken_eval_json_is_named(run_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "eval.json").write_text("{not json")
    summary = gather(run)
    assert summary.eval is None
    assert any("eval.json: not valid JSON" in line for line in summary.missing)


def test_not_a_run_directory_is_refused(tmp_path):
    with pytest.raises(MissingError, match="run directory not found"):
        gather(tmp_path / "nope")
    with pytest.raises(InputError, match="not a run directory"):
        gather(tmp_path)


def test_the_command_line_starts_the_same_run(tmp_path):
    argv = ["--quick", "--out", str(tmp_path / "r"), "--tasks", "reach", "--train.lr", "0.01"]
    argv += ["--no-progress", "--train.no-tensorboard", "--eval.splits", "seen", "ko"]
    command = parse(argv)
    line = command_line(command_json(command, tmp_path / "r"))
    words = shlex.split(line)
    assert words[:3] == ["nanovla", "train", "--quick"]
    assert parse(words[2:]) == command
    plain = command_line(command_json(quick_command(), tmp_path / "q"))
    assert plain == f"nanovla train --quick --out {tmp_path / 'q'}"


def test_log_rows_sorted_and_a_resumed_step_keeps_its_last_row(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 2, "train/loss": 5}\n{"step": 1, "train/loss": 1}\n[1]\n{"step": 2, "train/loss": 2}\n')  # fmt: skip
    rows, bad = read_metrics(path)
    assert [(r["step"], r["train/loss"]) for r in rows] == [(1, 1), (2, 2)] and bad == 1


def test_curves_draw_only_what_the_log_holds():
    rows = [{"step": 1, "train/loss": 0.5}, {"step": 2, "train/loss": float("nan")}]
    assert [title for title, _, _ in panel_keys(rows)] == ["loss"]
    png = plot_curves(rows)
    assert png is not None and png.startswith(b"\x89PNG")
    assert plot_curves([{"step": 1, "other": 1.0}]) is None


def test_cli_writes_the_page_and_names_a_bad_run(run_dir, tmp_path):
    out = tmp_path / "page.html"
    result = nanovla("report", str(run_dir), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.is_file() and f"wrote {out}" in result.stdout
    result = nanovla("report", str(tmp_path / "missing"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("run directory not found")


def test_a_metaworld_eval_json_gets_a_row_per_task(tmp_path):
    result = {
        "episodes_per_task": 4, "per_task": {"reach-v3": 1.0, "push-v3": 0.5}, "success": 0.75,
        "ci95": [0.41, 0.93], "successes": 6, "episodes": 8, "seed": 7,
        "tasks": {
            "reach-v3": {"instruction": "reach the goal", "successes": 4, "episodes": 4, "ci95": [0.51, 1.0]},
            "push-v3": {"instruction": "push the puck to the goal", "successes": 2, "episodes": 4, "ci95": [0.15, 0.85]},
        },
    }  # fmt: skip
    write_json(tmp_path / "eval.json", result)
    page, summary = build_report(tmp_path)
    table = re.search(r'<table id="success-table">.*?</table>', page, re.S).group(0)
    assert "push the puck to the goal" in table and "0.50 [0.15, 0.85]" in table
    assert "0.75 [0.41, 0.93]" in table and "6/8" in table
    assert any("train_command.json not found" in line for line in summary.missing)


def test_a_relative_dataset_is_found_from_where_the_run_was_started(tmp_path):
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    assert launch_dir(run, "runs/a") == tmp_path.resolve()
    assert launch_dir(run, "./runs/a") == tmp_path.resolve()
    assert launch_dir(run, "elsewhere/a") is None and launch_dir(run, str(run)) is None


def test_without_matplotlib_the_page_says_which_extra_draws_the_curves(run_dir, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    page, summary = build_report(run_dir, complete_outcomes=False)
    assert "nanovla[plots]" in page and "data:image/png;base64," not in page
    assert 'id="success-table"' in page


def test_the_judged_weights_are_the_ones_eval_json_names(tmp_path):
    from nanovla.report.outcomes import judged_checkpoint

    run = tmp_path / "r"
    (run / "checkpoints" / "last").mkdir(parents=True)
    (run / "selection" / "best").mkdir(parents=True)
    best = {"checkpoint": "r/selection/best"}
    assert judged_checkpoint(run, best, tmp_path) == tmp_path / "r/selection/best"
    assert judged_checkpoint(run, {"checkpoint": "gone/last"}, tmp_path) == run / "checkpoints/last"
    assert judged_checkpoint(run, {}, None) == run / "checkpoints/last"
