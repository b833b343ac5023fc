"""Progress reporting for every long loop: a tqdm bar on a terminal, plain lines elsewhere.

A tqdm bar redraws itself with carriage returns; piped into a log file that becomes one huge line
(a 600-episode collection wrote a 58 KB line, 6,000 episodes ~0.6 MB). `progress(...)` therefore
returns a tqdm bar only when stderr is a terminal; otherwise a `LineProgress` that prints one
short line every `NANOVLA_PROGRESS_SECONDS` seconds (default 10) and one when it closes, each a
complete line ending in a newline and never a carriage return. Both have tqdm's face (`update`,
`set_postfix`, `set_postfix_str`, `close`, `write`, iteration, `with`), so callers do not care
which they got. `enabled=False` (a command's `--no-progress`) silences both; `set_enabled(False)`
silences every bar of the process (a command's global `--quiet`).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from numbers import Number
from typing import Any, TextIO

from tqdm import tqdm

DEFAULT_SECONDS = 10.0
"""seconds between two plain progress lines when NANOVLA_PROGRESS_SECONDS is unset or invalid"""

_enabled = True
_clock = time.monotonic  # a module attribute, so tests can drive the clock


def set_enabled(enabled: bool) -> None:
    """Turns every later `progress(...)` bar of this process on or off (`--quiet`)."""
    global _enabled
    _enabled = bool(enabled)


def _interval() -> float:
    """NANOVLA_PROGRESS_SECONDS as a finite number >= 0, else DEFAULT_SECONDS."""
    try:
        seconds = float(os.environ.get("NANOVLA_PROGRESS_SECONDS", DEFAULT_SECONDS))
    except ValueError:
        return DEFAULT_SECONDS
    return seconds if math.isfinite(seconds) and seconds >= 0 else DEFAULT_SECONDS


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream
        return False


class LineProgress:
    """tqdm's face for logs: prints `desc: n/total unit (pct), rate, eta, postfix` lines.

    A line is printed when `update` finds `interval` seconds passed since the last one (short of
    `total`), and once at `close` (which iteration and `with` call): "done in ..." when `total`
    was reached (or there is no total), "stopped after ..." otherwise. Nothing is printed when
    disabled or when no item was counted.
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        disable: bool = False,
        stream: TextIO | None = None,
        interval: float | None = None,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self._start_n = initial
        self.disable = disable
        self.stream = stream if stream is not None else sys.stderr
        self.interval = _interval() if interval is None else interval
        self._start = self._last = _clock()
        self._postfix = ""
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        try:
            for item in self.iterable if self.iterable is not None else ():
                yield item
                self.update(1)
        finally:  # also when the caller breaks out of the loop, as tqdm does
            self.close()

    def update(self, n: int = 1) -> None:
        """Counts `n` more items; prints a line when `interval` seconds passed since the last
        (not on reaching `total`: the closing line follows)."""
        self.n += n
        if self.disable or self._closed or (self.total and self.n >= self.total):
            return
        now = _clock()
        if now - self._last >= self.interval:
            self._last = now
            self._print(now)

    def set_postfix(
        self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any
    ) -> None:
        """Shows `key=value` pairs at the end of the next line (numbers formatted as tqdm does)."""
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(
            f"{k}={tqdm.format_num(v) if isinstance(v, Number) else v}" for k, v in items.items()
        )

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        """Shows `s` at the end of the next line."""
        self._postfix = s

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        """Renames the bar."""
        self.desc = desc or ""

    def write(self, s: str) -> None:
        """Prints `s` on its own line (tqdm.write's face)."""
        print(s, file=self.stream, flush=True)

    def refresh(self) -> None:
        """Does nothing: lines are printed on `update` and `close` only."""

    def close(self) -> None:
        """Prints the last line (once; not when disabled or nothing was counted)."""
        if self._closed:
            return
        self._closed = True
        if not self.disable and self.n > self._start_n:
            self._print(_clock(), final=True)

    def _print(self, now: float, final: bool = False) -> None:
        elapsed = max(now - self._start, 1e-9)
        rate = (self.n - self._start_n) / elapsed
        parts = [f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{rate:.1f} {self.unit}/s")
        if final:
            finished = not self.total or self.n >= self.total
            parts.append(f"{'done in' if finished else 'stopped after'} {_duration(elapsed)}")
        elif self.total and rate > 0:
            parts.append(f"eta {_duration(max(self.total - self.n, 0) / rate)}")
        if self._postfix:
            parts.append(self._postfix)
        prefix = f"{self.desc}: " if self.desc else ""
        print(prefix + ", ".join(parts), file=self.stream, flush=True)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    enabled: bool = True,
    leave: bool = True,
) -> tqdm | LineProgress:
    """A progress reporter over `iterable` (or counted with `update`): a tqdm bar when stderr is
    a terminal, a `LineProgress` otherwise. `enabled=False`, or `set_enabled(False)` earlier,
    silences it; `leave=False` clears a tqdm bar when it closes (plain lines stay)."""
    enabled = enabled and _enabled
    if _is_terminal(sys.stderr):
        return tqdm(
            iterable, total=total, desc=desc, unit=unit, initial=initial, disable=not enabled,
            leave=leave, file=sys.stderr,
        )  # fmt: skip
    return LineProgress(
        iterable, total=total, desc=desc, unit=unit, initial=initial, disable=not enabled
    )


def note(text: str) -> None:
    """Prints `text` to stderr on its own line without breaking a live tqdm bar."""
    tqdm.write(text, file=sys.stderr)
