"""Training-state files: one codec for every state dict, and the `training_state/` directory.

Every state (optimizer, scheduler, RNG, loader) goes through one codec: its tensors (and numpy
arrays) are pulled out into `<name>.safetensors` under their dotted path, and the rest of the
structure is JSON in `<name>.json` with `{"__tensor__": key}` markers where the tensors were
(`.safetensors` is only written when there is at least one tensor). Tuples and dicts with
non-string keys (the optimizer's `state` is keyed by parameter index) are tagged so that loading
gives back exactly the object that was saved. Floats survive JSON bit-exactly (Python writes the
shortest repr that round-trips). `training_step.json` holds the step and the SHA-256 of every
other file of the directory; loading validates the structure before anything is restored.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from nanovla.constants import (
    STEP_FILE,
)
from nanovla.errors import InputError, MissingError
from nanovla.io import read_json, write_json
from nanovla.models.policy.pretrained import read_safetensors

_STEP_DIR = re.compile(r"^(\d{6,})(?:\.(\d+))?$")
"""`000500` (a step's first save) or `000500.2` (its second re-save); see `write_checkpoint`"""


def parse_save_name(name: str) -> tuple[int, int] | None:
    """`(step, generation)` of a save directory's name (`000500` -> (500, 0)), else None."""
    match = _STEP_DIR.match(name)
    return None if match is None else (int(match[1]), int(match[2] or 0))


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
    parsed = parse_save_name(directory.resolve().parent.name)
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
