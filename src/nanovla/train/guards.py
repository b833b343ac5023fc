"""What keeps a training run safe to stop at any instant, shared by every trainer: the test
hook that kills the process at a named point (`kill_point`), OS errors that name the path they
failed on (`naming`, `safetensors_errors`), and a Ctrl-C that waits for the end of the step
(`DeferredInterrupt`). `nanovla.train.engine` re-exports them under their old names.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from nanovla.progress import note

KILL_ENV = "NANOVLA_TEST_KILL_AT"
"""environment variable read by `kill_point` (tests only)"""
_kill_counts: dict[str, int] = {}


def kill_point(name: str) -> None:
    """SIGKILL this process here when `NANOVLA_TEST_KILL_AT` is `name` or `name@n` (the n-th
    time this point is reached, 1-based): how tests kill -9 at a chosen instant. A no-op when
    the variable is unset. Points: `checkpoint:begin` (nothing written yet),
    `checkpoint:weights` (model files in the temporary directory), `checkpoint:state` (the
    temporary directory complete, not yet renamed), `checkpoint:saved` (renamed, `last`
    swapped, old steps pruned), and `train:evaluate` (the pipeline's final evaluation)."""
    wanted = os.environ.get(KILL_ENV)
    if not wanted or wanted.partition("@")[0] != name:
        return
    _kill_counts[name] = count = _kill_counts.get(name, 0) + 1
    if count == int(wanted.partition("@")[2] or 1):
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Give an OSError raised inside (a full disk, a read-only directory) `path` as its
    filename when it names none (a failed `write()` or `flush()` does not), so the one line
    the CLI prints says where it could not write."""
    try:
        yield
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error


class DeferredInterrupt:
    """Context manager: the first Ctrl-C only sets `requested` (the loop saves at the end of
    the step), a second one sets `aborted` and raises KeyboardInterrupt at once.

    Signal handlers can only be installed from the main thread; elsewhere this does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self.aborted = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            self.aborted = True
            raise KeyboardInterrupt
        self.requested = True
        note("Ctrl-C: saving a checkpoint after this step (press again to quit at once)")

    def __enter__(self) -> DeferredInterrupt:
        self.requested = self.aborted = False
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


@contextlib.contextmanager
def safetensors_errors(path: Path) -> Iterator[None]:
    """An OS error inside safetensors (e.g. a full disk) raised as the OSError it is, naming
    `path`: safetensors reports it as a SafetensorError with the errno only in its text
    ("I/O error: No space left on device (os error 28)")."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as error:
        code = re.search(r"\(os error (\d+)\)|\bcode: (\d+)", str(error))
        if code is None:
            raise
        number = int(code[1] or code[2])
        raise OSError(number, os.strerror(number), str(path)) from error
