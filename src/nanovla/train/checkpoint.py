"""Checkpoints on disk: layout, atomic writes and loading (the state files: `train/state.py`).

```
<out_dir>/checkpoints/
  000500/
    pretrained_model/     config.json, model.safetensors (model.save_pretrained), train_config.json
    training_state/       optimizer_state.{safetensors,json}, scheduler_state.json,
                          rng_state.{safetensors,json}, loader_state.{safetensors,json},
                          grad_scaler_state.json (fp16 only), training_step.json
  001000/
  last -> 001000           (a re-save of step 1000 would be 001000.1/)
```

A checkpoint is written into `checkpoints/.tmp-<step>-<pid>/` and renamed into place, then
`last` is swapped with a temporary symlink + `os.replace`. A re-save of a step already on disk
goes to a new name (`000500.1`, `000500.2`, ...) so that nothing `last` names is ever renamed
or deleted: a crash at any instant leaves `last` naming a complete checkpoint, and the next save
removes what the crash left (see `write_checkpoint`). (Atomic against process crashes and
interrupts; files are not fsync'ed, so a power loss right after a save may still lose it.)
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nanovla.codec import to_json
from nanovla.constants import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    LAST_LINK,
    PRETRAINED_DIR,
    WEIGHTS_FILE,
)
from nanovla.errors import InputError, MissingError
from nanovla.train.state import _load_safetensors, _read_json, parse_save_name

_TMP_PREFIX = ".tmp-"


def step_dir_name(step: int) -> str:
    """The directory name of the checkpoint taken after `step` optimizer steps: `000500`."""
    return f"{step:06d}"


# ---------------------------------------------------------------- layout and atomic writes


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """`out_dir/checkpoints/last` resolved to its step directory, or None when there is none."""
    return _last_target(Path(out_dir) / CHECKPOINTS_DIR)


def step_dirs(out_dir: str | Path) -> list[Path]:
    """The checkpoint of each saved step under `out_dir/checkpoints`, oldest step first.

    A step saved twice has two directories (`000500`, `000500.1`) until the next
    `write_checkpoint` removes the superseded one; the one listed is the one `last` names, or
    else the newest.
    """
    return _current_saves(Path(out_dir) / CHECKPOINTS_DIR)


def write_checkpoint(
    out_dir: str | Path, step: int, write: Callable[[Path], None], keep_last: int = 0
) -> Path:
    """Atomically create the checkpoint of `step` under `out_dir/checkpoints/` and point `last`
    at it; returns its directory.

    `write(tmp_dir)` fills a temporary directory `.tmp-<step>-<pid>/`; only when it returns is
    the directory renamed into place and `last` swapped (temporary symlink + `os.replace`). If
    `write` raises, the temporary directory is removed and the exception propagates, with
    `last` untouched. The first save of a step is named `<step:06d>`; a re-save of a step that
    is already on disk (e.g. a Ctrl-C right after a save) is named `<step:06d>.<n>` (n = 1, 2,
    ...), and the older save is removed only after `last` names the new one. Then only the
    newest `keep_last` steps are kept (0 = keep all; the one `last` names is never removed).

    Crash safety: at every instant `last` names a complete checkpoint (or nothing, before the
    first save). A directory is renamed or removed only when `last` does not name it, and
    removal is a rename to `.tmp-old-...` followed by `rmtree`, so a crash part-way through a
    removal leaves a temporary directory, never a half-deleted step. Every save first removes
    what an interrupted save left: `.tmp-*` entries and superseded re-saves.
    """
    root = Path(out_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(root)
    tmp = root / f"{_TMP_PREFIX}{step_dir_name(step)}-{os.getpid()}"
    tmp.mkdir()
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    older = _saves_by_step(root).get(step, [])
    final = root / _new_save_name(step, older)
    os.replace(tmp, final)
    _point_last_at(root, final.name)
    for old in older:
        _discard(root, old)
    if keep_last > 0:
        _prune(root, keep_last)
    return final


def _last_target(root: Path) -> Path | None:
    last = root / LAST_LINK
    return last.resolve() if last.exists() else None


def _saves_by_step(root: Path) -> dict[int, list[Path]]:
    """Every save directory under `root`, grouped by step, oldest generation first."""
    if not root.is_dir():
        return {}
    saves: dict[int, list[tuple[int, Path]]] = {}
    for path in root.iterdir():
        parsed = parse_save_name(path.name)
        if parsed is not None and path.is_dir() and not path.is_symlink():
            saves.setdefault(parsed[0], []).append((parsed[1], path))
    return {step: [p for _, p in sorted(found)] for step, found in saves.items()}


def _current_saves(root: Path) -> list[Path]:
    """One directory per step (the one `last` names, else the newest), oldest step first."""
    last = _last_target(root)
    current = []
    for _, saves in sorted(_saves_by_step(root).items()):
        named = [p for p in saves if p.resolve() == last]
        current.append(named[0] if named else saves[-1])
    return current


def _new_save_name(step: int, older: list[Path]) -> str:
    """`000500` for a step's first save, `000500.<n+1>` when generation n is the newest."""
    if not older:
        return step_dir_name(step)
    newest = max(parse_save_name(p.name)[1] for p in older)  # type: ignore[index]
    return f"{step_dir_name(step)}.{newest + 1}"


def _remove_leftovers(root: Path) -> None:
    """Remove what an interrupted save left: `.tmp-*` entries and superseded re-saves."""
    for entry in root.iterdir():
        if entry.name.startswith(_TMP_PREFIX):
            _delete(entry)
    current = set(_current_saves(root))
    for saves in _saves_by_step(root).values():
        for path in saves:
            if path not in current:
                _discard(root, path)


def _discard(root: Path, path: Path) -> None:
    """Rename `path` to a `.tmp-old-...` name (atomic), then delete it."""
    aside = root / f"{_TMP_PREFIX}old-{path.name}-{os.getpid()}"
    if aside.is_symlink() or aside.exists():
        _delete(aside)
    os.replace(path, aside)
    _delete(aside)


def _delete(entry: Path) -> None:
    if entry.is_symlink() or not entry.is_dir():
        entry.unlink(missing_ok=True)
    else:
        shutil.rmtree(entry, ignore_errors=True)


def replace_symlink(link: Path, target: str) -> None:
    """Point the symlink `link` at `target` (relative, so the run directory can be moved),
    atomically: a temporary link beside it is renamed over it."""
    link_tmp = link.parent / f"{_TMP_PREFIX}{link.name}-{os.getpid()}"
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    os.symlink(target, link_tmp)
    os.replace(link_tmp, link)


def _point_last_at(root: Path, name: str) -> None:
    replace_symlink(root / LAST_LINK, name)


def _prune(root: Path, keep_last: int) -> None:
    last = _last_target(root)
    current = _current_saves(root)
    for old in current[: max(len(current) - keep_last, 0)]:
        if old.resolve() != last:
            _discard(root, old)


def pretrained_dir(path: str | Path) -> Path:
    """The `pretrained_model/` directory of a checkpoint given as step dir, `last` or itself."""
    path = Path(path)
    if not path.exists():
        raise MissingError(f"{path}: checkpoint not found")
    if (path / PRETRAINED_DIR).is_dir():
        return path / PRETRAINED_DIR
    if (path / CONFIG_FILE).is_file() or (path / WEIGHTS_FILE).is_file():
        return path
    raise MissingError(
        f"{path}: not a checkpoint (expected {PRETRAINED_DIR}/ or {CONFIG_FILE} inside)"
    )


def load_checkpoint_dir(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """`(config dict, state dict)` of the model saved in a checkpoint.

    `path` is a step directory (`runs/x/checkpoints/000500`), the `last` link, or its
    `pretrained_model/`. FileNotFoundError / ValueError name the missing or unreadable file.
    """
    directory = pretrained_dir(path)
    config = _read_json(directory / CONFIG_FILE)
    if not isinstance(config, dict):
        raise InputError(
            f"{directory / CONFIG_FILE}: expected a JSON object, got {type(config).__name__}"
        )
    return config, _load_safetensors(directory / WEIGHTS_FILE)


# ---------------------------------------------------------------- model config on resume


def model_config_dict(model: torch.nn.Module) -> dict[str, Any]:
    """`model.config` as `nanovla.codec.to_json` writes it (tuples as lists, paths as str): the
    form a checkpoint's config.json reads back as.

    A config with its own `to_dict()` (the policy's) is asked for it, since that is what its
    `save_pretrained` writes; otherwise a dataclass (or a plain dict) goes through `to_json`.
    """
    config = getattr(model, "config", None)
    if callable(getattr(config, "to_dict", None)):
        raw = config.to_dict()
    elif (dataclasses.is_dataclass(config) and not isinstance(config, type)) or isinstance(
        config, dict
    ):
        raw = config
    else:
        raise InputError(
            f"model.config must be a config dataclass (got {type(config).__name__}); the engine "
            "compares it with a checkpoint's config.json on resume"
        )
    return to_json(raw)


def config_defaults(model: torch.nn.Module) -> dict[str, Any]:
    """The defaults of `model.config`'s dataclass fields, in `model_config_dict`'s JSON form
    (empty for a config that is not a dataclass)."""
    config = getattr(model, "config", None)
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return {}
    defaults = {}
    for field in dataclasses.fields(config):
        if field.default is not dataclasses.MISSING:
            defaults[field.name] = to_json(field.default)
        elif field.default_factory is not dataclasses.MISSING:
            defaults[field.name] = to_json(field.default_factory())
    return defaults


def config_differences(
    model_config: dict[str, Any],
    saved_config: dict[str, Any],
    defaults: dict[str, Any] | None = None,
) -> list[str]:
    """Keys of the model's config whose value differs from (or is missing in) a saved config.

    Keys only in the saved file (metadata a `save_pretrained` may add) are not differences, nor
    are keys missing from it whose value here is their default in `defaults` (an option added
    after the checkpoint was written, left at the default that means "as before").
    """
    diffs = []
    defaults = defaults or {}
    for key, value in model_config.items():
        if key not in saved_config and key in defaults and defaults[key] == value:
            continue
        if key not in saved_config:
            diffs.append(f"{key} (missing in checkpoint, model has {value!r})")
        elif saved_config[key] != value:
            diffs.append(f"{key} (checkpoint {saved_config[key]!r}, model {value!r})")
    return diffs


def check_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    """Same keys and shapes as the model's state dict, or a ValueError naming `path`."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in weights.items()}
    problems = [f"missing {k}" for k in expected.keys() - found.keys()]
    problems += [f"unexpected {k}" for k in found.keys() - expected.keys()]
    problems += [
        f"{k} has shape {found[k]}, model {expected[k]}"
        for k in expected.keys() & found.keys()
        if found[k] != expected[k]
    ]
    if problems:
        raise InputError(f"{path}: weights do not fit the model: {'; '.join(sorted(problems)[:8])}")
