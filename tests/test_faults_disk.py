"""A full disk or a read-only directory under `nanovla train` and `nanovla collect`: one line
naming the path and the errno, exit 1, the previous checkpoint and dataset intact, no temporary
files or directories left behind.

Real faults where root may mount a small tmpfs (filled up, then remounted read-only); the CLI's
one-line message and the write of eval.json are also checked by injecting the OSError.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_run import nanovla

from nanovla import cli
from nanovla.constants import TRAINING_STATE_DIR
from nanovla.train import latest_checkpoint, load_checkpoint_dir
from nanovla.train.state import load_training_state

ARGS = (
    "--tasks", "reach", "--episodes", "12", "--collect-envs", "6", "--image-size", "32",
    "--batch-size", "16", "--train.steps", "4", "--train.warmup-steps", "1",
    "--train.log-every", "2", "--train.save-every", "2", "--train.num-threads", "1",
    "--train.eval-every", "0", "--train.no-tensorboard",
    "--eval.episodes", "2", "--eval.gifs", "0", "--eval.splits", "seen",
)  # fmt: skip


def _error_line(result: subprocess.CompletedProcess, command: str) -> str:
    """The one error line, after checking exit 1 and no traceback."""
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"nanovla {command}:")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def _temporaries(directory: Path) -> list[str]:
    return sorted(str(p) for p in directory.rglob("*") if ".tmp" in p.name)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB tmpfs (root only; the test is skipped where mounting is not allowed)."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "nanovla-test", str(mount)],
        capture_output=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path, leave: int) -> Path:
    """Fill the filesystem of `directory`, then free `leave` bytes again."""
    filler = directory / f"filler-{uuid.uuid4().hex}"
    block = b"\0" * (1 << 20)
    with filler.open("wb") as file:
        try:
            while True:
                file.write(block)
                file.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
            file.truncate(max(file.tell() - leave, 0))
    return filler


def test_full_disk_and_read_only_run_directory(tmpfs: Path) -> None:
    done = nanovla("train", "--out", "run", *ARGS, cwd=tmpfs)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmpfs / "run"
    (dataset,) = (tmpfs / "data").iterdir()
    checkpoint, data = _files(run / "checkpoints" / "000004"), _files(dataset)
    filler = _fill(tmpfs, leave=256 * 1024)  # room for the lock, the command, the logs

    # a checkpoint does not fit: the save of step 6 fails, step 4 stays `last`
    result = nanovla("train", "--out", "run", "--resume", "--train.steps", "6", cwd=tmpfs)
    line = _error_line(result, "train")
    print(line)
    assert "cannot write run/checkpoints/" in line, line
    assert line.endswith(f"[Errno {errno.ENOSPC}] No space left on device"), line
    last = latest_checkpoint(run)
    assert last.name == "000004" and _files(last) == checkpoint
    load_checkpoint_dir(last)
    assert load_training_state(last / TRAINING_STATE_DIR)["step"] == 4
    assert _temporaries(tmpfs) == [] and not (run / ".lock").exists()

    # a dataset does not fit: nothing at --out, no staging directory, the cached one intact
    result = nanovla("collect", "--task", "reach", "--episodes", "400", "--num-envs", "16",
                     "--out", "ds", "--no-progress", cwd=tmpfs)  # fmt: skip
    line = _error_line(result, "collect")
    print(line)
    assert "cannot write ds" in line and f"[Errno {errno.ENOSPC}]" in line, line
    assert not (tmpfs / "ds").exists() and _temporaries(tmpfs) == []
    assert _files(dataset) == data

    # a read-only run directory: refused at the first write (the lock)
    filler.unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    try:
        result = nanovla("train", "--out", "run", "--resume", "--train.steps", "6", cwd=tmpfs)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=True)
    line = _error_line(result, "train")
    print(line)
    assert line.endswith(f"cannot write run/.lock: [Errno {errno.EROFS}] Read-only file system")

    # with room again, the run continues from step 4 as if nothing happened
    resumed = nanovla("train", "--out", "run", "--resume", "--train.steps", "6", cwd=tmpfs)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert latest_checkpoint(run).name == "000006"


def _full_on_write(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make every write of a file called `name` through nanovla.io fail as a full disk does:
    the temporary file is created, writing into it raises ENOSPC (and names no file)."""
    import nanovla.io as nio

    real_write_text, real_path_write = nio.write_text, Path.write_text

    def full(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        if self.name.startswith(f".{name}."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_path_write(self, data, *args, **kwargs)

    def write_text(path: Any, text: str) -> Path:
        if Path(path).name != name:
            return real_write_text(path, text)
        with monkeypatch.context() as patch:
            patch.setattr(Path, "write_text", full)
            return real_write_text(path, text)

    monkeypatch.setattr(nio, "write_text", write_text)


def test_eval_json_on_a_full_disk(tmp_path: Path, monkeypatch, capsys) -> None:
    done = nanovla("train", "--out", "run", *ARGS, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    before = (run / "eval.json").read_bytes()
    monkeypatch.chdir(tmp_path)
    _full_on_write(monkeypatch, "eval.json")
    assert cli.main(["train", "--out", "run", "--resume"]) == 1
    stderr = capsys.readouterr().err
    assert f"nanovla train: error: cannot write run/eval.json: [Errno {errno.ENOSPC}]" in stderr
    assert (run / "eval.json").read_bytes() == before
    assert _temporaries(run) == [] and not (run / ".lock").exists()
    assert latest_checkpoint(run).name == "000004"


# ---------------------------------------------------------------- the CLI's one line


@pytest.mark.parametrize(
    ("number", "verb"),
    [(errno.ENOSPC, "write"), (errno.EDQUOT, "write"), (errno.EROFS, "write"), (errno.EACCES, "access")],
)  # fmt: skip
def test_cli_prints_a_disk_error_as_one_line(monkeypatch, capsys, number: int, verb: str) -> None:
    def main(argv: list[str]) -> int:
        raise OSError(number, os.strerror(number), "runs/x/checkpoints/000004")

    module = types.ModuleType("fake_command")
    module.main = main
    monkeypatch.setitem(sys.modules, "fake_command", module)
    monkeypatch.setitem(cli.COMMANDS, "train", ("fake_command", "fake"))
    monkeypatch.delenv("NANOVLA_DEBUG", raising=False)
    assert cli.main(["train"]) == 1
    assert capsys.readouterr().err == (
        f"nanovla train: error: cannot {verb} runs/x/checkpoints/000004: "
        f"[Errno {number}] {os.strerror(number)}\n"
    )


def test_cli_keeps_the_traceback_of_other_os_errors(monkeypatch) -> None:
    def main(argv: list[str]) -> int:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    module = types.ModuleType("fake_command")
    module.main = main
    monkeypatch.setitem(sys.modules, "fake_command", module)
    monkeypatch.setitem(cli.COMMANDS, "train", ("fake_command", "fake"))
    with pytest.raises(OSError, match="Bad file descriptor"):
        cli.main(["train"])
