"""Small file helpers every layer shares: atomic writes, and reads whose errors name the file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nanovla.errors import InputError, MissingError


def _file_mode() -> int:
    """0666 minus the process's umask: the mode `open()` would give a new file (mkstemp's 0600
    would make every report, eval.json and dataset file unreadable to other users)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed onto `path` when the block ends
    without an error, removed otherwise. The parent directory is created if needed.

    A crash or an error part-way leaves either the old file or the new one, never half of one,
    and no temporary file behind; the new file gets a normal file's permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, _file_mode())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically (`atomic_path`); returns the path."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    """Write `data` as indented UTF-8 JSON to `path` atomically; returns the path."""
    return write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Parsed JSON of `path`; a missing file is MissingError, bad JSON InputError, both naming it."""
    path = Path(path)
    if not path.is_file():
        raise MissingError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise InputError(f"{path}: not valid JSON ({error})") from error


def read_json_object(path: str | Path) -> dict[str, Any]:
    """`read_json` that also insists on a JSON object at the top."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
