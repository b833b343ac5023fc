"""Checkpoints on disk: layout, atomic writes, state codecs and loading.

```
<out_dir>/checkpoints/
  000500/
    pretrained_model/     config.json, model.safetensors (model.save_pretrained), train_config.json
    training_state/       optimizer_state.{safetensors,json}, scheduler_state.json,
                          rng_state.{safetensors,json}, loader_state.{safetensors,json},
                          grad_scaler_state.json (fp16 only), training_step.json
  001000/
  last -> 001000
```

Every state (optimizer, scheduler, RNG, loader) goes through one codec: its tensors (and numpy
arrays) are pulled out into `<name>.safetensors` under their dotted path, and the rest of the
structure is JSON in `<name>.json` with `{"__tensor__": key}` markers where the tensors were
(`.safetensors` is only written when there is at least one tensor). Tuples and dicts with
non-string keys (the optimizer's `state` is keyed by parameter index) are tagged so that loading
gives back exactly the object that was saved. Floats survive JSON bit-exactly (Python writes the
shortest repr that round-trips).

A checkpoint is written into `checkpoints/.tmp-<step>-<pid>/` and renamed into place, then
`last` is swapped with a temporary symlink + `os.replace`: an exception or a crash part-way
through never leaves a half-written directory that `last` points to. (Atomic against process
crashes and interrupts; files are not fsync'ed, so a power loss right after a save may still
lose it.)
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nanovla.errors import InputError, MissingError

CHECKPOINTS_DIR = "checkpoints"
LAST_LINK = "last"
PRETRAINED_DIR = "pretrained_model"
TRAINING_STATE_DIR = "training_state"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TRAIN_CONFIG_FILE = "train_config.json"
STEP_FILE = "training_step.json"

_STEP_DIR = re.compile(r"^\d{6,}$")
_TMP_PREFIX = ".tmp-"


def step_dir_name(step: int) -> str:
    """The directory name of the checkpoint taken after `step` optimizer steps: `000500`."""
    return f"{step:06d}"


# ---------------------------------------------------------------- JSON / state codec


def write_json(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON to `path`."""
    path.write_text(json.dumps(obj, indent=2) + "\n")


def read_json(path: Path) -> Any:
    """Read a JSON file; FileNotFoundError / ValueError name the file."""
    if not path.is_file():
        raise MissingError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({err})") from err


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


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `flatten_state`: rebuild the object from its skeleton and tensors."""
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    if not isinstance(skeleton, dict):
        return skeleton
    if len(skeleton) == 1:
        ((tag, value),) = skeleton.items()
        if tag in ("__tensor__", "__ndarray__"):
            if value not in tensors:
                raise InputError(f"state tensor {value!r} is missing from the .safetensors file")
            tensor = tensors[value]
            return tensor.numpy() if tag == "__ndarray__" else tensor
        if tag == "__tuple__":
            return tuple(unflatten_state(v, tensors) for v in value)
        if tag == "__items__":
            return {k: unflatten_state(v, tensors) for k, v in value}
    return {k: unflatten_state(v, tensors) for k, v in skeleton.items()}


def save_state(obj: Any, directory: Path, name: str) -> None:
    """Write `obj` as `directory/<name>.json` (+ `<name>.safetensors` when it holds tensors)."""
    tensors, skeleton = flatten_state(obj)
    if tensors:
        save_file(tensors, str(directory / f"{name}.safetensors"))
    write_json(directory / f"{name}.json", skeleton)


def load_state(directory: Path, name: str) -> Any:
    """Read what `save_state(obj, directory, name)` wrote; errors name the file."""
    skeleton = read_json(directory / f"{name}.json")
    tensor_file = directory / f"{name}.safetensors"
    tensors = _load_safetensors(tensor_file) if tensor_file.exists() else {}
    try:
        return unflatten_state(skeleton, tensors)
    except ValueError as err:
        raise InputError(f"{tensor_file}: {err}") from err


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise MissingError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable safetensors file ({err})") from err


# ---------------------------------------------------------------- RNG state


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, numpy's global RNG and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU + every CUDA device) RNG states, ready for `save_state`."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(legacy=False),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_initialized():  # an unused CUDA RNG still holds its seed
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back what `capture_rng_state` returned (also after a `save_state`/`load_state`)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "torch_cuda" in state:
        torch.cuda.set_rng_state_all(state["torch_cuda"])


# ---------------------------------------------------------------- layout and atomic writes


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """`out_dir/checkpoints/last` resolved to its step directory, or None when there is none."""
    last = Path(out_dir) / CHECKPOINTS_DIR / LAST_LINK
    if not last.exists():
        return None
    return last.resolve()


def step_dirs(out_dir: str | Path) -> list[Path]:
    """The complete step checkpoints under `out_dir/checkpoints`, oldest first."""
    root = Path(out_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP_DIR.match(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(p.name))


def write_checkpoint(
    out_dir: str | Path, step: int, write: Callable[[Path], None], keep_last: int = 0
) -> Path:
    """Atomically create `out_dir/checkpoints/<step:06d>/` and point `last` at it.

    `write(tmp_dir)` fills a temporary directory; only when it returns is the directory renamed
    into place (replacing an older save of the same step) and `last` swapped. If `write` raises,
    the temporary directory is removed and the exception propagates, with `last` untouched.
    Then only the newest `keep_last` step directories are kept (0 = keep all; the one `last`
    points to is never removed). Returns the step directory.
    """
    root = Path(out_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f"{_TMP_PREFIX}*"):  # left by a process that crashed mid-save
        shutil.rmtree(stale, ignore_errors=True)
    name = step_dir_name(step)
    tmp = root / f"{_TMP_PREFIX}{name}-{os.getpid()}"
    tmp.mkdir()
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = root / name
    if final.exists():  # a second save of the same step (e.g. Ctrl-C right after a save)
        old = root / f"{_TMP_PREFIX}old-{name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _point_last_at(root, name)
    if keep_last > 0:
        _prune(out_dir, keep_last)
    return final


def _point_last_at(root: Path, name: str) -> None:
    link_tmp = root / f"{_TMP_PREFIX}{LAST_LINK}-{os.getpid()}"
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    os.symlink(name, link_tmp)  # relative: the run directory can be moved
    os.replace(link_tmp, root / LAST_LINK)


def _prune(out_dir: str | Path, keep_last: int) -> None:
    last = latest_checkpoint(out_dir)
    dirs = step_dirs(out_dir)
    for old in dirs[: max(len(dirs) - keep_last, 0)]:
        if last is None or old.resolve() != last:
            shutil.rmtree(old, ignore_errors=True)


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
    config = read_json(directory / CONFIG_FILE)
    if not isinstance(config, dict):
        raise InputError(
            f"{directory / CONFIG_FILE}: expected a JSON object, got {type(config).__name__}"
        )
    return config, _load_safetensors(directory / WEIGHTS_FILE)


# ---------------------------------------------------------------- model config on resume


def model_config_dict(model: torch.nn.Module) -> dict[str, Any]:
    """`model.config` as a JSON-normalized dict (tuples become lists, as in config.json).

    A config with its own `to_dict()` (the policy's) is asked for it, since that is what its
    `save_pretrained` writes; otherwise a dataclass goes through `dataclasses.asdict`.
    """
    config = getattr(model, "config", None)
    if callable(getattr(config, "to_dict", None)):
        raw = config.to_dict()
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        raw = dataclasses.asdict(config)
    elif isinstance(config, dict):
        raw = config
    else:
        raise InputError(
            f"model.config must be a config dataclass (got {type(config).__name__}); the engine "
            "compares it with a checkpoint's config.json on resume"
        )
    return json_normalize(raw)


def json_normalize(obj: Any) -> Any:
    """What `obj` reads back as after a trip through JSON (paths and other objects as str)."""
    return json.loads(json.dumps(obj, default=str))


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
    write_json(directory / STEP_FILE, {"step": int(state["step"])})
    for part in _STATE_PARTS:
        if state.get(part) is not None:
            save_state(state[part], directory, f"{part}_state")


def load_training_state(directory: Path) -> dict[str, Any]:
    """Read what `save_training_state` wrote; errors name the missing or unreadable file."""
    if not directory.is_dir():
        raise MissingError(f"{directory}: training state directory not found")
    step_record = read_json(directory / STEP_FILE)
    if not isinstance(step_record, dict) or not isinstance(step_record.get("step"), int):
        raise InputError(f'{directory / STEP_FILE}: expected {{"step": <int>}}')
    state: dict[str, Any] = {"step": step_record["step"]}
    for part in _STATE_PARTS:
        optional = part == "grad_scaler"
        if optional and not (directory / f"{part}_state.json").exists():
            state[part] = None
            continue
        state[part] = load_state(directory, f"{part}_state")
    return state
