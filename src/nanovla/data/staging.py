"""Atomic directory replacement for dataset writers: a dataset is written into a staging
directory beside its final place and renamed in, and what a killed writer left behind is
cleaned up (moved out of `writer.py`, which uses these).

`<root>.tmp-<pid>-XXXX` is a dataset being written; `<root>.old-<pid>-XXXX` the old dataset an
overwrite moved aside while the new one is renamed in. The writer's pid tells a live writer's
directories from a killed one's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from nanovla.data.format import INFO_PATH
from nanovla.errors import ExistsError


def _refuse_existing(root: Path, overwrite: bool) -> None:
    """FileExistsError unless `root` is free, or `overwrite` and `root` is a dataset (or empty):
    overwrite never deletes a directory that is not a dataset (a mistyped --out)."""
    if not root.exists():
        return
    if not overwrite:
        raise ExistsError(
            f"{root}: already exists; pass overwrite=True (--overwrite) to replace it"
        )
    is_dataset = (root / INFO_PATH).is_file()
    if not root.is_dir() or not (is_dataset or not any(root.iterdir())):
        raise ExistsError(
            f"{root}: exists and is not a dataset (no {INFO_PATH}); refusing to overwrite it"
        )


_ACTIVE: set[Path] = set()
"""staging directories this process is writing right now (never removed as unfinished)"""


def _staging_prefix(root: Path, kind: str) -> str:
    """`<name>.tmp-<pid>-` / `<name>.old-<pid>-`: the writer's pid tells a live one from a
    killed one."""
    return f"{root.name}.{kind}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def remove_unfinished(root: Path | str) -> list[Path]:
    """Clean up after writers of `root` that were killed part-way; returns what was found.

    `<root>.tmp-<pid>-*` (a dataset being written) is deleted; `<root>.old-<pid>-*` (the old
    dataset an overwrite had moved aside) is renamed back to `root` when `root` is missing,
    deleted otherwise. Directories of writers still running (their pid is alive, or they belong
    to a writer of this process that is not done) are left alone.
    """
    root = Path(root)
    if not root.parent.is_dir():
        return []
    found = []
    for entry in sorted(root.parent.iterdir()):
        for kind in ("tmp", "old"):
            prefix = f"{root.name}.{kind}-"
            pid = entry.name[len(prefix) :].split("-", 1)[0]
            if not (entry.name.startswith(prefix) and pid.isdigit()) or entry in _ACTIVE:
                continue
            if int(pid) != os.getpid() and _pid_alive(int(pid)):
                continue
            found.append(entry)
            if kind == "old" and not root.exists():
                entry.rename(root)
            else:
                shutil.rmtree(entry, ignore_errors=True)
    return found


def _replace_dir(staging: Path, root: Path) -> None:
    """Rename `staging` to `root`; an existing `root` is moved aside first and deleted after
    (and moved back if the rename fails, so the old dataset is never lost)."""
    if not root.exists():
        staging.rename(root)
        return
    retired = Path(tempfile.mkdtemp(prefix=_staging_prefix(root, "old"), dir=root.parent))
    retired.rmdir()
    root.rename(retired)
    try:
        staging.rename(root)
    except BaseException:
        retired.rename(root)
        raise
    shutil.rmtree(retired, ignore_errors=True)
