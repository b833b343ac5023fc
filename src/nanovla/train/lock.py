"""`RunLock`: one process at a time writes into a run directory.

`nanovla train --out R` holds `R/.lock` for as long as it writes into `R` (training, checkpoints,
logs, the final evaluation); a second `nanovla train --out R` (or a `--resume` of R) refuses with
an `ExistsError` naming the lock file and the holder's pid, host and start time.

The lock file holds `{"pid", "host", "started", "argv"}` as JSON, and its holder keeps an
exclusive `flock` on it while it runs. The kernel drops that flock when the holder dies, however
it dies (`kill -9` included), so a lock file whose flock can be taken is stale: its pid is no
longer running (or was reused: a pid alone cannot tell). The next process takes it over in place
and says so in one line. Checking the flock instead of the pid also means that two processes
taking over the same stale lock cannot both win, and that a killed holder its parent has not yet
reaped does not look alive. Where the filesystem has no flock (some network mounts), a lock file
counts as held while its pid is alive on this host.

The lock file stays on disk after a kill; leaving normally removes it. Child processes forked
while the lock is held inherit the flock (the training engine forks none).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from nanovla.constants import LOCK_FILE
from nanovla.errors import ExistsError

_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)
DYING_HOLDER_SECONDS = 5.0
"""how long a lock whose holder's pid is gone may stay flocked (the holder still exiting)"""


def pid_alive(pid: int) -> bool:
    """Whether a process with id `pid` runs on this host (an unreaped zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): trust kill(pid, 0)


def _parse(text: str) -> dict[str, Any] | None:
    try:
        holder = json.loads(text)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


class RunLock:
    """Context manager holding `out_dir/.lock` (see the module docstring); `out_dir` is created.

    Entering raises `ExistsError` naming the lock file and its live holder; leaving removes the
    lock file. After entering, `took_over` is the stale holder's record when one was replaced.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_FILE
        self.took_over: dict[str, Any] | None = None
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock (taking over a stale one); ExistsError when a live process holds it."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: already held by this RunLock")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                previous = self._lock(fd)
                try:
                    same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same = False
                if same:  # not a file its holder unlinked while we waited: ours now
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "argv": sys.argv,
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record, indent=2) + "\n").encode(), 0)
        except OSError as error:  # a full disk: name the lock file, leave none behind
            self.path.unlink(missing_ok=True)
            os.close(fd)
            raise OSError(error.errno, error.strerror, str(self.path)) from error
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if previous is not None and previous.get("pid") != os.getpid():
            self.took_over = previous
            print(
                f"train: took over the stale lock {self.path} of pid {previous['pid']} "
                f"(started {previous.get('started', '?')}; no longer running)"
            )

    def _lock(self, fd: int) -> dict[str, Any] | None:
        """flock `fd` or raise ExistsError naming the holder; returns the file's old record.

        A holder whose pid is already gone but whose flock is still held is a process being
        torn down (its other threads are exiting): its flock is waited for, up to
        `DYING_HOLDER_SECONDS`."""
        deadline = time.monotonic() + DYING_HOLDER_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                flocked = True
            except BlockingIOError:
                flocked = False
            except OSError as error:
                if error.errno not in _NO_FLOCK:
                    raise
                flocked = None  # no flock here: fall back on the pid
            holder = _parse(os.pread(fd, 1 << 16, 0).decode("utf-8", errors="replace"))
            dying = (
                flocked is False
                and holder is not None
                and holder.get("host") == socket.gethostname()
                and not pid_alive(holder["pid"])
            )
            if not dying or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if flocked is None and holder is not None:
            flocked = not (holder.get("host") == socket.gethostname() and pid_alive(holder["pid"]))
        if not flocked:
            who = "another process" if holder is None else (
                f"pid {holder['pid']} on {holder.get('host', '?')} "
                f"(since {holder.get('started', '?')})"
            )  # fmt: skip
            raise ExistsError(
                f"{self.path}: run directory {self.out_dir} is in use by {who}; wait for it to "
                "finish or stop it"
            )
        return holder

    def release(self) -> None:
        """Remove the lock file and drop the flock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
