"""Checkpoints on disk: layout, atomic writes, state codecs and loading.

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

Every state (optimizer, scheduler, RNG, loader) goes through one codec: its tensors (and numpy
arrays) are pulled out into `<name>.safetensors` under their dotted path, and the rest of the
structure is JSON in `<name>.json` with `{"__tensor__": key}` markers where the tensors were
(`.safetensors` is only written when there is at least one tensor). Tuples and dicts with
non-string keys (the optimizer's `state` is keyed by parameter index) are tagged so that loading
gives back exactly the object that was saved. Floats survive JSON bit-exactly (Python writes the
shortest repr that round-trips).

A checkpoint is written into `checkpoints/.tmp-<step>-<pid>/` and renamed into place, then
`last` is swapped with a temporary symlink + `os.replace`. A re-save of a step already on disk
goes to a new name (`000500.1`, `000500.2`, ...) so that nothing `last` names is ever renamed
or deleted: a crash at any instant leaves `last` naming a complete checkpoint, and the next save
removes what the crash left (see `write_checkpoint`). (Atomic against process crashes and
interrupts; files are not fsync'ed, so a power loss right after a save may still lose it.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from nanovla.codec import to_json
from nanovla.constants import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    LAST_LINK,
    PRETRAINED_DIR,
    STEP_FILE,
    WEIGHTS_FILE,
)
from nanovla.errors import InputError, MissingError
from nanovla.io import read_json, write_json
from nanovla.models.policy.pretrained import read_safetensors

_STEP_DIR = re.compile(r"^(\d{6,})(?:\.(\d+))?$")
"""`000500` (a step's first save) or `000500.2` (its second re-save); see `write_checkpoint`"""
_TMP_PREFIX = ".tmp-"


def step_dir_name(step: int) -> str:
    """The directory name of the checkpoint taken after `step` optimizer steps: `000500`."""
    return f"{step:06d}"


# ---------------------------------------------------------------- JSON / state codec


def flatten_state(obj: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested state into `(tensors by dotted path, JSON-able skeleton)`.

    Tensors and numpy arrays become `{"__tensor__": key}` / `{"__ndarray__": key}` markers;
    tuples become `{"__tuple__": [...]}`; dicts whose keys are not all plain strings become
    `{"__items__": [[key, value], ...]}`. Anything else that JSON cannot hold raises ValueError
    naming its path.
    """
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(obj, prefix, tensors)
    return tensors, skeleton


def _encode(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor | np.ndarray) and path in tensors:
        raise InputError(f"state entries collide at {path!r} (keys containing '.'?)")
    if isinstance(obj, torch.Tensor):
        # clone: safetensors refuses tensors that share storage (e.g. views of one buffer)
        tensors[path] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": path}
    if isinstance(obj, np.ndarray):
        tensors[path] = torch.from_numpy(np.array(obj, copy=True, order="C"))
        return {"__ndarray__": path}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, tuple | list):
        items = [_encode(v, f"{path}.{i}" if path else str(i), tensors) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, dict):
        return _encode_dict(obj, path, tensors)
    raise InputError(
        f"state entry {path or '<root>'!r} has type {type(obj).__name__}, which a "
        "checkpoint cannot hold (allowed: tensors, arrays, numbers, str, lists, dicts)"
    )


def _encode_dict(obj: dict, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    def child(key: Any) -> str:
        return f"{path}.{key}" if path else str(key)

    plain = all(isinstance(k, str) and not k.startswith("__") for k in obj)
    if plain:
        return {k: _encode(v, child(k), tensors) for k, v in obj.items()}
    for key in obj:
        if not (key is None or isinstance(key, bool | int | float | str)):
            raise InputError(
                f"state entry {child(key)!r}: dict key of type "
                f"{type(key).__name__} cannot be stored (allowed: str, int, float)"
            )
    return {"__items__": [[k, _encode(v, child(k), tensors)] for k, v in obj.items()]}


def unflatten_state(
    skeleton: Any, tensors: dict[str, torch.Tensor], used: set[str] | None = None, where: str = ""
) -> Any:
    """Inverse of `flatten_state`: rebuild the object from its skeleton and tensors.

    A malformed skeleton (a tag whose value has the wrong form, a marker naming no tensor)
    raises InputError naming the dotted path `where` inside it; the tensor keys used are
    added to `used` when given.
    """
    at = where or "<root>"
    if isinstance(skeleton, list):
        return [
            unflatten_state(v, tensors, used, f"{where}.{i}" if where else str(i))
            for i, v in enumerate(skeleton)
        ]
    if not isinstance(skeleton, dict):
        return skeleton
    if len(skeleton) == 1:
        ((tag, value),) = skeleton.items()
        if tag in ("__tensor__", "__ndarray__"):
            if not isinstance(value, str) or value not in tensors:
                raise InputError(
                    f"entry {at!r}: state tensor {value!r} is missing from the .safetensors file"
                )
            if used is not None:
                used.add(value)
            tensor = tensors[value]
            return tensor.numpy() if tag == "__ndarray__" else tensor
        if tag == "__tuple__":
            if not isinstance(value, list):
                raise InputError(f"entry {at!r}: '__tuple__' must hold a list, got {value!r}")
            return tuple(
                unflatten_state(v, tensors, used, f"{where}.{i}" if where else str(i))
                for i, v in enumerate(value)
            )
        if tag == "__items__":
            pairs = value if isinstance(value, list) else None
            if pairs is None or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
                raise InputError(f"entry {at!r}: '__items__' must hold [key, value] pairs")
            out = {}
            for key, item in pairs:
                if not (key is None or isinstance(key, bool | int | float | str)):
                    raise InputError(f"entry {at!r}: dict key {key!r} is not a number or str")
                if key in out:
                    raise InputError(f"entry {at!r}: dict key {key!r} appears twice")
                out[key] = unflatten_state(
                    item, tensors, used, f"{where}.{key}" if where else str(key)
                )
            return out
    tags = [k for k in skeleton if k.startswith("__")]
    if tags:
        raise InputError(f"entry {at!r}: unknown or misplaced tag(s) {tags}")
    return {
        k: unflatten_state(v, tensors, used, f"{where}.{k}" if where else k)
        for k, v in skeleton.items()
    }


def save_state(obj: Any, directory: Path, name: str) -> None:
    """Write `obj` as `directory/<name>.json` (+ `<name>.safetensors` when it holds tensors)."""
    tensors, skeleton = flatten_state(obj)
    if tensors:
        save_file(tensors, str(directory / f"{name}.safetensors"))
    write_json(directory / f"{name}.json", skeleton)


def load_state(directory: Path, name: str) -> Any:
    """Read what `save_state(obj, directory, name)` wrote; errors name the file.

    Every tensor the JSON skeleton refers to must be in `<name>.safetensors` and every tensor
    there must be referred to (a tensor nothing uses means the two files do not belong
    together).
    """
    json_file = directory / f"{name}.json"
    skeleton = _read_json(json_file)
    tensor_file = directory / f"{name}.safetensors"
    tensors = _load_safetensors(tensor_file) if tensor_file.exists() else {}
    used: set[str] = set()
    try:
        state = unflatten_state(skeleton, tensors, used)
    except InputError as err:
        if "missing from the .safetensors file" in str(err) and not tensor_file.exists():
            raise MissingError(f"{tensor_file}: file not found ({json_file}: {err})") from err
        raise InputError(f"{json_file}: {err}") from err
    unused = sorted(set(tensors) - used)
    if unused:
        raise InputError(
            f"{tensor_file}: tensor(s) {unused[:6]} are not referred to by {json_file.name}"
        )
    return state


def _read_json(path: Path) -> Any:
    """`nanovla.io.read_json`, with a too deeply nested file also an InputError naming it."""
    try:
        return read_json(path)
    except RecursionError as err:
        raise InputError(f"{path}: not valid JSON (nested too deeply)") from err


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of `path`, checked against its checksum when it has one."""
    return read_safetensors(path)


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


def _parse_save_name(name: str) -> tuple[int, int] | None:
    """`(step, generation)` of a save directory's name (`000500` -> (500, 0)), else None."""
    match = _STEP_DIR.match(name)
    return None if match is None else (int(match[1]), int(match[2] or 0))


def _saves_by_step(root: Path) -> dict[int, list[Path]]:
    """Every save directory under `root`, grouped by step, oldest generation first."""
    if not root.is_dir():
        return {}
    saves: dict[int, list[tuple[int, Path]]] = {}
    for path in root.iterdir():
        parsed = _parse_save_name(path.name)
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
    newest = max(_parse_save_name(p.name)[1] for p in older)  # type: ignore[index]
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


def _point_last_at(root: Path, name: str) -> None:
    link_tmp = root / f"{_TMP_PREFIX}{LAST_LINK}-{os.getpid()}"
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    os.symlink(name, link_tmp)  # relative: the run directory can be moved
    os.replace(link_tmp, root / LAST_LINK)


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


def config_differences(model_config: dict[str, Any], saved_config: dict[str, Any]) -> list[str]:
    """Keys of the model's config whose value differs from (or is missing in) a saved config.

    Keys only in the saved file (metadata a `save_pretrained` may add) are not differences.
    """
    diffs = []
    for key, value in model_config.items():
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


# ---------------------------------------------------------------- training state

_STATE_PARTS = ("optimizer", "scheduler", "rng", "loader", "grad_scaler")


def save_training_state(directory: Path, state: dict[str, Any]) -> None:
    """Write a training state into `directory` (created).

    `state` holds `step` (int) and the state dicts `optimizer`, `scheduler`, `rng`, `loader`
    and, with fp16 loss scaling, `grad_scaler`; each part `x` becomes `x_state.json` (+
    `x_state.safetensors` for its tensors), the step `training_step.json`.
    """
    directory.mkdir(parents=True)
    for part in _STATE_PARTS:
        if state.get(part) is not None:
            save_state(state[part], directory, f"{part}_state")
    digests = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
        if path.is_file()
    }  # written last: `load_training_state` verifies every file against it
    write_json(directory / STEP_FILE, {"step": int(state["step"]), MANIFEST_KEY: digests})


def load_training_state(directory: Path) -> dict[str, Any]:
    """Read what `save_training_state` wrote; errors name the missing or unreadable file.

    Beyond reading, each part is checked for the form the engine restores: the step is an
    integer >= 0 (equal to the step of the checkpoint directory it sits in, `000500/`);
    optimizer, scheduler, RNG and loader states are objects; the optimizer's `param_groups`
    list integer `params` that its `state` keys belong to, with Adam's two moments of one
    shape; the RNG state is restorable (tried on private generators).
    """
    if not directory.is_dir():
        raise MissingError(f"{directory}: training state directory not found")
    step_file = directory / STEP_FILE
    step_record = _read_json(step_file)
    step = step_record.get("step") if isinstance(step_record, dict) else None
    extra = set(step_record) - {"step", MANIFEST_KEY} if isinstance(step_record, dict) else set()
    if not isinstance(step, int) or isinstance(step, bool) or step < 0 or extra:
        raise InputError(f'{step_file}: expected {{"step": <int >= 0>}}, got {step_record!r}')
    if MANIFEST_KEY in step_record:
        _check_manifest(directory, step_record[MANIFEST_KEY], step_file)
    parsed = _parse_save_name(directory.resolve().parent.name)
    if parsed is not None and parsed[0] != step:
        raise InputError(
            f"{step_file}: step {step} does not match its checkpoint directory "
            f"{directory.resolve().parent.name}"
        )
    state: dict[str, Any] = {"step": step}
    for part in _STATE_PARTS:
        optional = part == "grad_scaler"
        if optional and not (directory / f"{part}_state.json").exists():
            state[part] = None
            continue
        state[part] = load_state(directory, f"{part}_state")
        path = directory / f"{part}_state.json"
        if not isinstance(state[part], dict):
            raise InputError(f"{path}: expected an object, got {type(state[part]).__name__}")
    _check_optimizer_state(state["optimizer"], directory / "optimizer_state.json")
    _check_rng_state(state["rng"], directory / "rng_state.json")
    return state


MANIFEST_KEY = "sha256"
"""Optional entry of training_step.json: `{file name: SHA-256 hex}` of every other file of the
training state, verified by `load_training_state` (a flipped bit is then an error)."""


def _check_manifest(directory: Path, manifest: Any, step_file: Path) -> None:
    """Every file of the training state is listed in `manifest` with its SHA-256, and matches."""
    if not isinstance(manifest, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in manifest.items()
    ):
        raise InputError(f"{step_file}: {MANIFEST_KEY!r} must map file names to SHA-256 strings")
    present = {p.name for p in directory.iterdir() if p.is_file() and p.name != STEP_FILE}
    for name in sorted(present | set(manifest)):
        path = directory / name
        if name not in manifest:
            raise InputError(f"{path}: not listed in {step_file.name}'s {MANIFEST_KEY!r}")
        if name not in present:
            raise MissingError(f"{path}: file not found (listed in {step_file.name})")
        if hashlib.sha256(path.read_bytes()).hexdigest() != manifest[name]:
            raise InputError(
                f"{path}: content does not match its SHA-256 in {step_file.name} (the file is "
                "damaged)"
            )


def _check_optimizer_state(saved: dict[str, Any], path: Path) -> None:
    """`torch.optim.Optimizer.state_dict()` form: state {index: {name: value}} and
    param_groups [{"params": [index, ...], ...}] with every state index in a group."""
    groups, per_param = saved.get("param_groups"), saved.get("state")
    if not isinstance(groups, list) or not all(
        isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups
    ):
        raise InputError(f"{path}: 'param_groups' must be a list of groups with 'params' lists")
    indices = [i for g in groups for i in g["params"]]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        raise InputError(f"{path}: 'param_groups' params must be parameter indices (integers)")
    if len(set(indices)) != len(indices):
        raise InputError(f"{path}: a parameter index appears in two param_groups")
    if not isinstance(per_param, dict) or not all(isinstance(v, dict) for v in per_param.values()):
        raise InputError(f"{path}: 'state' must map parameter indices to objects")
    stray = sorted(set(per_param) - set(indices), key=str)
    if stray:
        raise InputError(f"{path}: 'state' holds parameter(s) {stray[:6]} that no group lists")
    for index, entry in per_param.items():
        moments = [entry.get(k) for k in ("exp_avg", "exp_avg_sq")]
        if all(isinstance(m, torch.Tensor) for m in moments) and (
            moments[0].shape != moments[1].shape
        ):
            raise InputError(
                f"{path}: parameter {index}: exp_avg {tuple(moments[0].shape)} and "
                f"exp_avg_sq {tuple(moments[1].shape)} differ in shape"
            )


def _check_rng_state(rng: dict[str, Any], path: Path) -> None:
    """What `nanovla.train.rng.capture_rng_state` saved, restorable into fresh generators."""
    known = {"python", "numpy", "torch", "torch_cuda"}
    missing = sorted({"python", "numpy", "torch"} - set(rng))
    unknown = sorted(set(rng) - known)
    if missing or unknown:
        raise InputError(f"{path}: RNG state keys missing {missing}, unknown {unknown}")
    checks: tuple[tuple[str, Callable[[Any], Any]], ...] = (
        ("python", lambda value: random.Random().setstate(value)),
        ("numpy", lambda value: np.random.RandomState().set_state(value)),
        ("torch", lambda value: torch.Generator().set_state(value)),
    )
    for key, restore in checks:
        try:
            restore(rng[key])
        except (TypeError, ValueError, KeyError, IndexError, RuntimeError, OverflowError) as err:
            raise InputError(f"{path}: {key!r} is not a restorable RNG state ({err})") from err
    cuda = rng.get("torch_cuda")
    if cuda is not None and not (
        isinstance(cuda, list) and all(isinstance(t, torch.Tensor) for t in cuda)
    ):
        raise InputError(f"{path}: 'torch_cuda' must be a list of generator states")
