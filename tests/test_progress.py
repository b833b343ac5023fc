"""nanovla.progress: tqdm on a terminal, a few complete plain lines in a log, silence when off."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tqdm import tqdm

from nanovla import progress as progress_module
from nanovla.progress import LineProgress, progress, set_enabled


class FakeClock:
    """time.monotonic for nanovla.progress, advanced by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(progress_module, "_clock", fake)
    monkeypatch.setenv("NANOVLA_PROGRESS_SECONDS", "10")
    return fake


@pytest.fixture(autouse=True)
def _enabled_again():
    yield
    set_enabled(True)


class TerminalStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_piped_stream_gets_a_bounded_number_of_complete_lines_ending_done(
    clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    bar = progress(total=600, desc="collect", unit="episode")
    assert isinstance(bar, LineProgress)  # pytest's captured stderr is not a terminal
    for _ in range(600):
        clock.now += 0.25  # 600 episodes in 150 s: one line per 10 s, not one per episode
        bar.update(1)
        bar.set_postfix(success="97%")
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err and err.endswith("\n")
    lines = err.splitlines()
    assert 10 <= len(lines) <= 150 / 10 + 1
    assert all(line.startswith("collect: ") and len(line) < 120 for line in lines)
    assert "eta" in lines[0] and "success=97%" in lines[0]
    assert lines[-1].startswith("collect: 600/600 episode (100%)") and "done in 2m30s" in lines[-1]


def test_iteration_prints_the_last_line_even_after_a_break(
    clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    for index in progress(range(10), desc="eval", unit="batch"):
        if index == 3:
            break
        clock.now += 1.0
    for _ in progress(range(5), desc="demo", unit="episode"):
        clock.now += 1.0
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "eval: 3/10 batch (30%), 1.0 batch/s, stopped after 3s",
        "demo: 5/5 episode (100%), 1.0 episode/s, done in 5s",
    ]


def test_postfix_numbers_are_formatted_as_tqdm_does(
    clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    bar = progress(total=2, desc="train", unit="step")
    bar.set_postfix({"loss": 0.123456}, lr=0.0003, refresh=False)
    clock.now += 1.0
    bar.update(2)
    bar.close()
    assert capsys.readouterr().err.splitlines() == [
        "train: 2/2 step (100%), 2.0 step/s, done in 1s, loss=0.123, lr=0.0003"
    ]


def test_disabled_prints_nothing(clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> None:
    bar = progress(total=3, desc="collect", enabled=False)
    for _ in range(3):
        clock.now += 60.0
        bar.update(1)
    bar.close()
    for _ in progress(range(3), desc="eval", enabled=False):
        clock.now += 60.0
    set_enabled(False)  # a command's global --quiet
    for _ in progress(range(3), desc="train"):
        clock.now += 60.0
    assert capsys.readouterr().err == ""


def test_terminal_gets_a_tqdm_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", TerminalStream())
    bar = progress(total=3, desc="collect", unit="episode")
    assert isinstance(bar, tqdm) and not bar.disable
    bar.close()
    assert progress(total=3, enabled=False).disable


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_bad_interval_falls_back_to_the_default(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NANOVLA_PROGRESS_SECONDS", value)
    assert LineProgress(total=1, stream=io.StringIO()).interval == progress_module.DEFAULT_SECONDS


def test_piped_collect_leaves_a_log_of_a_few_short_lines(tmp_path: Path) -> None:
    log = tmp_path / "collect.log"
    command = [
        sys.executable, "-m", "nanovla.cli", "collect", "--task", "reach", "--episodes", "40",
        "--num-envs", "8", "--image-size", "32", "--out", str(tmp_path / "reach"),
    ]  # fmt: skip
    env = {**os.environ, "NANOVLA_PROGRESS_SECONDS": "10"}
    start = time.monotonic()
    with log.open("w") as stderr:  # a file, not a terminal: what `2>log` gives
        run = subprocess.run(command, stdout=subprocess.PIPE, stderr=stderr, text=True,
                             env=env, timeout=240)  # fmt: skip
    seconds = time.monotonic() - start
    text = log.read_text()
    assert run.returncode == 0, text
    assert "\r" not in text
    lines = text.splitlines()
    assert 1 <= len(lines) <= 2 + seconds / 10
    assert all(len(line) < 120 for line in lines)
    assert lines[-1].startswith("collect: 40/40 episode (100%)") and "done in" in lines[-1]
    assert "wrote" in run.stdout  # the summary goes to stdout, on its own line


class RandomPolicy:
    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def select_action(self, obs: dict) -> np.ndarray:
        return self.rng.uniform(-1, 1, (len(obs["instruction"]), 3)).astype(np.float32)


def test_eval_bar_ends_its_line_so_the_table_starts_on_its_own(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nanovla.eval import EvalConfig, evaluate, format_table

    monkeypatch.setenv("NANOVLA_PROGRESS_SECONDS", "0")  # a line per batch
    config = EvalConfig(episodes=2, splits=("seen", "ko"), gifs=0)
    result = evaluate(RandomPolicy(), ("reach",), config, image_size=32)
    sys.stderr.write(format_table(result) + "\n")  # `nanovla eval 2>&1 > log` puts both in one
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0].startswith("eval: 1/2 batch (50%)") and "seen/reach" in lines[0]
    assert lines[1].startswith("eval: 2/2 batch (100%)") and "done in" in lines[1]
    assert lines[2].startswith("split")  # the table's header, not glued to a bar
