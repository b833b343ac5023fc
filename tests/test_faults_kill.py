"""kill -9 at any instant of `nanovla train` and `nanovla collect`, then what the user does next.

After each kill: `last` names a complete checkpoint (or nothing), no half-written dataset is
taken for a finished one, and continuing (`--resume` once the run directory holds its
train_command.json, else the same command again) ends with weights bit-identical to an
uninterrupted run. Kills land at seeded random instants (collection, training, checkpoint
writes, the final evaluation) and at named points inside the checkpoint writer
(`NANOVLA_TEST_KILL_AT`, see `nanovla.train.guards.kill_point`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from safetensors import safe_open

from nanovla.constants import COMMAND_FILE, TRAINING_STATE_DIR
from nanovla.data import EpisodeDataset
from nanovla.data.format import INFO_PATH
from nanovla.train import latest_checkpoint, load_checkpoint_dir
from nanovla.train.checkpoint import step_dirs
from nanovla.train.state import load_training_state

ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "MPLBACKEND": "Agg",
    "OMP_NUM_THREADS": "1",
    "NANOVLA_PROGRESS_SECONDS": "1000",
    "PYTHONUNBUFFERED": "1",  # what a killed process printed is not lost in its buffer
}
ENV.pop("NANOVLA_TEST_KILL_AT", None)
SHORT, LONG = (8, 2), (300, 20)
"""(steps, save_every) of the run killed at named points, and of the one killed at random
instants (long enough that most instants fall into training and checkpoint writes)"""
WEIGHTS = "checkpoints/last/pretrained_model/model.safetensors"
KILL_AT_RENAME = """
import os, pathlib, signal, sys
real_rename = pathlib.Path.rename
calls = []
def rename(self, target):  # SIGKILL at the n-th Path.rename (the dataset writer's renames)
    calls.append(self)
    if len(calls) == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_rename(self, target)
pathlib.Path.rename = rename
from nanovla.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _args(steps: int, save_every: int) -> tuple[str, ...]:
    return (
        "--tasks", "reach", "--episodes", "12", "--collect-envs", "6", "--image-size", "32",
        "--batch-size", "16", "--train.steps", str(steps), "--train.warmup-steps", "1",
        "--train.log-every", "2", "--train.save-every", str(save_every),
        "--train.keep-last", "2", "--train.num-threads", "1", "--train.eval-every", "0",
        "--train.no-tensorboard", "--eval.episodes", "2", "--eval.gifs", "0",
        "--eval.splits", "seen",
    )  # fmt: skip


def _command(cwd: Path, run: tuple[int, int]) -> list[str]:
    """What the user runs next: --resume once the run has its train_command.json, else the
    command again."""
    if (cwd / "run" / COMMAND_FILE).is_file():
        return ["train", "--out", "run", "--resume"]
    return ["train", "--out", "run", *_args(*run)]


def _start(cwd: Path, args: list[str], kill_at: str | None = None) -> subprocess.Popen:
    env = dict(ENV) if kill_at is None else {**ENV, "NANOVLA_TEST_KILL_AT": kill_at}
    return subprocess.Popen(
        [sys.executable, "-m", "nanovla.cli", *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def _datasets(cwd: Path) -> list[Path]:
    """The directories under data/ that `nanovla train` would take for its cached dataset
    (not the `<name>.tmp-*` a writer fills before renaming it)."""
    return [
        info.parent.parent
        for info in (cwd / "data").glob("*/" + INFO_PATH)
        if ".tmp-" not in info.parent.parent.name and ".old-" not in info.parent.parent.name
    ]


def _phase(cwd: Path, steps: int, pid: int, stdout: str) -> str:
    """Where the killed process `pid` stood, from what it printed and left on disk."""
    run = cwd / "run"
    if "frames, policy" not in stdout:  # run() prints it as training starts
        return "start-up or collection"
    if any(p.name.endswith(f"-{pid}") for p in (run / "checkpoints").glob(".tmp-*")):
        return "inside a checkpoint write"
    last = latest_checkpoint(run)
    step = 0 if last is None else load_training_state(last / TRAINING_STATE_DIR)["step"]
    return "final evaluation" if step == steps else f"training (last = step {step})"


def _assert_consistent(cwd: Path) -> None:
    """What a kill may leave: `last` names a complete checkpoint or nothing, every step
    directory is complete, and every directory under data/ that looks like a dataset is one."""
    run = cwd / "run"
    last = latest_checkpoint(run)
    for checkpoint in ([last] if last is not None else []) + step_dirs(run):
        config, weights = load_checkpoint_dir(checkpoint)
        assert weights and config, checkpoint
        state = load_training_state(checkpoint / TRAINING_STATE_DIR)
        assert state["step"] == int(checkpoint.name.split(".")[0]), checkpoint
    for path in _datasets(cwd):
        assert EpisodeDataset(path).num_episodes == 12, path


def _weights(path: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    """(every tensor's bytes, the metadata) of a safetensors file. Not the file's bytes:
    safetensors writes its metadata keys in a per-process random order (a Rust HashMap), so two
    identical runs give files that differ in the order of the header's metadata keys."""
    with safe_open(str(path), "pt") as file:
        tensors = {k: file.get_tensor(k).numpy().tobytes() for k in sorted(file.keys())}
        return tensors, dict(file.metadata() or {})


def _straight(cwd: Path, run: tuple[int, int]) -> dict[str, Any]:
    """An uninterrupted run: its final weights, eval.json's splits, its wall seconds, and how
    they split into start-up (imports) and run() (eval.json's timing_s)."""
    start = time.monotonic()
    code, _, err = _finish(_start(cwd, ["train", "--out", "run", *_args(*run)]))
    assert code == 0, err[-3000:]
    seconds = time.monotonic() - start
    result = json.loads((cwd / "run" / "eval.json").read_text())
    timing = result["timing_s"]
    return {
        "weights": _weights(cwd / "run" / WEIGHTS),
        "splits": result["splits"],
        "startup": max(seconds - timing["total"], 0.0),
        "collect": timing["collect"],
        "train": timing["train"],
        "eval": timing["eval"],
    }


@pytest.fixture(scope="module")
def straight_short(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _straight(tmp_path_factory.mktemp("short"), SHORT)


@pytest.fixture(scope="module")
def straight_long(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _straight(tmp_path_factory.mktemp("long"), LONG)


def _assert_matches(cwd: Path, straight: dict[str, Any]) -> None:
    weights = _weights(cwd / "run" / WEIGHTS)
    assert weights == straight["weights"], "weights differ from the straight run"
    assert json.loads((cwd / "run" / "eval.json").read_text())["splits"] == straight["splits"]
    assert not (cwd / "run" / ".lock").exists()


def test_kill_9_at_random_instants_then_resume_is_bit_identical(
    tmp_path: Path, straight_long
) -> None:
    """Six SIGKILLs at seeded random instants of one run (each continued), then it finishes.

    A quarter of the attempts are killed within the start-up (imports, collection or loading
    the cached dataset); the others once training has started (run() prints its "frames,
    policy" line), at a draw over the training left plus the final evaluation as the straight
    run timed them, which includes the checkpoint writes.
    """
    rng = random.Random(1)  # on the 2-core CI machine: start-up, training, evaluation
    timing = straight_long
    phases = []
    for _ in range(6):
        last = latest_checkpoint(tmp_path / "run")
        done = 0 if last is None else load_training_state(last / TRAINING_STATE_DIR)["step"]
        rest = timing["train"] * (1 - done / LONG[0]) + timing["eval"]
        early = rng.random() < 0.25
        delay = rng.uniform(0, timing["startup"] if early else rest)
        process = _start(tmp_path, _command(tmp_path, LONG))
        printed = []
        while not early and process.poll() is None:  # read up to the line training starts at
            printed.append(process.stdout.readline())
            if not printed[-1] or "frames, policy" in printed[-1]:
                break
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
        code, stdout, err = _finish(process)
        if code == 0:
            phases.append("finished before the kill")
            break
        assert code == -signal.SIGKILL, err[-3000:]
        phases.append(_phase(tmp_path, LONG[0], process.pid, "".join(printed) + stdout))
        _assert_consistent(tmp_path)
    else:
        code, _, err = _finish(_start(tmp_path, _command(tmp_path, LONG)))
        assert code == 0, err[-3000:]
    print("kill phases:", phases)
    _assert_matches(tmp_path, straight_long)


KILL_CHAIN = [
    # (NANOVLA_TEST_KILL_AT, what `last` names afterwards)
    ("checkpoint:begin", None),  # the first save (step 2) has written nothing
    ("checkpoint:weights", None),  # --resume with no checkpoint: from step 0 again
    ("checkpoint:state", None),  # the temporary directory is complete, not renamed
    ("checkpoint:saved", 2),  # renamed and `last` swapped, then killed
    ("checkpoint:state@2", 4),  # resumed at 2: saves 4, killed inside the save of 6
    ("train:evaluate", 8),  # resumed at 4: saves 6 and 8, killed before the evaluation
]


def test_kill_9_at_each_point_of_the_checkpoint_writer(tmp_path: Path, straight_short) -> None:
    """Killed as the demonstrations are renamed into place, then at each named point of the
    checkpoint writer, each time continued with --resume; the run ends as the straight one."""
    args = ["-c", KILL_AT_RENAME, "1", "train", "--out", "run", *_args(*SHORT)]
    process = subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=ENV, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    code, _, err = _finish(process)
    assert code == -signal.SIGKILL, err[-3000:]
    assert _datasets(tmp_path) == [] and (tmp_path / "run" / COMMAND_FILE).is_file()
    (staging,) = (tmp_path / "data").iterdir()
    assert ".tmp-" in staging.name  # complete, but never taken for the dataset
    for kill_at, expected in KILL_CHAIN:
        code, out, err = _finish(_start(tmp_path, _command(tmp_path, SHORT), kill_at=kill_at))
        assert code == -signal.SIGKILL, f"{kill_at}: {err[-3000:]}"
        if kill_at == "checkpoint:begin":  # the first --resume: no checkpoint, no dataset
            assert "has no checkpoint yet" in out and "starting from step 0" in out, out
            assert f"removed what an interrupted collection left ({staging.name})" in out, out
        _assert_consistent(tmp_path)
        last = latest_checkpoint(tmp_path / "run")
        assert (None if last is None else int(last.name)) == expected, kill_at
        if kill_at == "checkpoint:weights":  # the second attempt found no checkpoint
            assert "has no checkpoint yet" in out and "starting from step 0" in out
        if last is not None:
            steps = [
                load_training_state(d / TRAINING_STATE_DIR)["step"]
                for d in step_dirs(tmp_path / "run")
            ]
            assert steps[-1] == expected and len(steps) <= 2
    code, out, err = _finish(_start(tmp_path, _command(tmp_path, SHORT)))
    assert code == 0, err[-3000:]
    assert "took over the stale lock" in out  # every killed attempt left its .lock
    _assert_matches(tmp_path, straight_short)
    leftovers = [p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name[0] == "."]
    assert leftovers == []  # each save removed what the kills before it left


# ---------------------------------------------------------------- nanovla collect

COLLECT = ("collect", "--task", "reach", "--episodes", "300", "--num-envs", "6", "--image-size",
           "32", "--no-progress")  # fmt: skip
"""~0.9 s on the 2-core machine: imports, 0.5 s of recording, the finalize"""


def _collect(cwd: Path, *extra: str, kill_at_rename: int | None = None) -> subprocess.Popen:
    if kill_at_rename is None:
        command = [sys.executable, "-m", "nanovla.cli", *COLLECT, *extra]
    else:
        command = [sys.executable, "-c", KILL_AT_RENAME, str(kill_at_rename), *COLLECT, *extra]
    return subprocess.Popen(
        command, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _data_bytes(dataset: Path) -> dict[str, bytes]:
    return {str(p.relative_to(dataset)): p.read_bytes() for p in dataset.rglob("*") if p.is_file()}


def test_collect_killed_at_random_instants_never_leaves_a_dataset_and_reruns_clean(
    tmp_path: Path,
) -> None:
    reference = tmp_path / "reference"
    start = time.monotonic()
    code, _, err = _finish(_collect(tmp_path, "--out", str(reference)))
    assert code == 0, err
    seconds = time.monotonic() - start
    expected = _data_bytes(reference)
    rng = random.Random(3)
    out = tmp_path / "ds"
    kills = 0
    for _ in range(4):
        process = _collect(tmp_path, "--out", str(out))
        try:
            process.wait(timeout=rng.uniform(0.1, 0.95) * seconds)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
        code, _, _ = _finish(process)
        if code == 0:
            break
        kills += 1
        assert not out.exists() or _data_bytes(out) == expected  # all or nothing
    assert kills >= 1
    if not out.exists():
        code, _, err = _finish(_collect(tmp_path, "--out", str(out)))
        assert code == 0, err
    assert _data_bytes(out) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "reference"]


def test_collect_killed_inside_finalize_and_inside_an_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    # 1st rename = the staging directory onto --out: killed just before it
    code, _, _ = _finish(_collect(tmp_path, "--out", str(out), kill_at_rename=1))
    assert code == -signal.SIGKILL
    assert not out.exists()
    (staging,) = [p.name for p in tmp_path.iterdir()]
    assert staging.startswith("ds.tmp-") and (tmp_path / staging / INFO_PATH).is_file()
    code, stdout, err = _finish(_collect(tmp_path, "--out", str(out)))
    assert code == 0, err
    assert f"removed what an interrupted collection left ({staging})" in stdout
    assert "starting clean" in stdout and [p.name for p in tmp_path.iterdir()] == ["ds"]
    first = _data_bytes(out)
    # --overwrite: the old dataset is moved aside (rename 1), the new one renamed in (2):
    # killed between the two, --out is missing until the rerun puts the old one back
    code, _, _ = _finish(_collect(tmp_path, "--out", str(out), "--overwrite", kill_at_rename=2))
    assert code == -signal.SIGKILL and not out.exists()
    code, stdout, err = _finish(_collect(tmp_path, "--out", str(out), "--overwrite"))
    assert code == 0, err
    assert "restored the dataset it was replacing" in stdout
    assert _data_bytes(out) == first and [p.name for p in tmp_path.iterdir()] == ["ds"]
