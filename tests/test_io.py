"""nanovla.io: atomic writes leave the old file or the new one, no temporary file, and the new
file has a normal file's permissions (0666 minus the umask, not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from nanovla.io import atomic_path, read_json, write_json, write_text


def test_new_files_get_the_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "sub" / "eval.json", {"success": 0.5, "text": "빨간 상자"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert read_json(path) == {"success": 0.5, "text": "빨간 상자"}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = write_text(tmp_path / "report.html", "old")
    with pytest.raises(RuntimeError), atomic_path(path) as temporary:
        temporary.write_text("half of the new")
        raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    with atomic_path(path) as temporary:
        temporary.write_bytes(b"new")
    assert path.read_text() == "new" and len(list(tmp_path.iterdir())) == 1
