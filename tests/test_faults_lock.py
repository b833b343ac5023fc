"""Two processes on one run directory: the second refuses, naming the lock file and the holder's
pid; a lock left by a killed process is stale and taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nanovla.errors import ExistsError
from nanovla.train.lock import RunLock, pid_alive

HOLD = """
import sys, time
from nanovla.train.lock import RunLock
lock = RunLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def _holder(out: Path) -> subprocess.Popen:
    """A process that takes `out/.lock` and keeps it until killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_holder_is_refused_with_the_lock_file_and_the_pid(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    try:
        with pytest.raises(ExistsError) as caught:
            RunLock(tmp_path).acquire()
        message = str(caught.value)
        assert str(tmp_path / ".lock") in message and f"pid {holder.pid}" in message
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holders_lock_is_stale_and_taken_over(tmp_path: Path, capsys) -> None:
    holder = _holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / ".lock").exists()  # kill -9 leaves the file
    assert not pid_alive(holder.pid)
    with RunLock(tmp_path) as lock:
        assert lock.took_over is not None and lock.took_over["pid"] == holder.pid
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
        assert f"stale lock {tmp_path / '.lock'} of pid {holder.pid}" in capsys.readouterr().out
        with pytest.raises(ExistsError, match="in use by pid"):
            RunLock(tmp_path).acquire()  # a second holder in this process is refused too
    assert not (tmp_path / ".lock").exists()  # leaving removes it


def test_an_unreaped_killed_holder_is_not_alive(tmp_path: Path) -> None:
    """A killed child its parent has not waited for is a zombie: kill(pid, 0) still answers."""
    holder = _holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(holder.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        os.kill(holder.pid, 0)  # still there (not reaped) ...
        assert not pid_alive(holder.pid)  # ... and yet gone
        with RunLock(tmp_path) as lock:
            assert lock.took_over["pid"] == holder.pid
    finally:
        holder.wait()


def test_a_torn_or_foreign_lock_file_is_handled(tmp_path: Path) -> None:
    (tmp_path / ".lock").write_text("")  # killed between creating and writing it
    with RunLock(tmp_path) as lock:
        assert lock.took_over is None
    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    with RunLock(tmp_path) as lock:  # no flock on it: the process that wrote it is gone
        assert lock.took_over["host"] == "elsewhere"


def test_release_is_idempotent_and_a_lock_can_be_taken_again(tmp_path: Path) -> None:
    lock = RunLock(tmp_path / "new")
    lock.acquire()
    assert (tmp_path / "new" / ".lock").is_file()
    lock.release()
    lock.release()
    with RunLock(tmp_path / "new"):
        pass
    assert not (tmp_path / "new" / ".lock").exists()


def test_nanovla_train_twice_on_one_run_directory(tmp_path: Path) -> None:
    """A second `nanovla train --out R` and a `--resume` of R while the first still runs are
    refused by name; after the first is killed, --resume takes its stale lock over."""
    from test_faults_kill import ENV, _args

    first = subprocess.Popen(
        [sys.executable, "-m", "nanovla.cli", "train", "--out", "run", *_args(400, 100)],
        cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "run" / "train_command.json").exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        for again in (["--out", "run", *_args(400, 100)], ["--out", "run", "--resume"]):
            second = subprocess.run(
                [sys.executable, "-m", "nanovla.cli", "train", *again],
                cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
            assert "run/.lock" in second.stderr and f"pid {first.pid}" in second.stderr
            assert first.poll() is None  # the first run was not disturbed
    finally:
        first.kill()
        first.wait()
    resumed = subprocess.run(
        [sys.executable, "-m", "nanovla.cli", "train", "--out", "run", "--resume"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"took over the stale lock run/.lock of pid {first.pid}" in resumed.stdout
