"""Saving and loading a policy: ``config.json`` + ``model.safetensors`` + ``tokenizer.json``.

Layout (as a LeRobot ``pretrained_model/`` directory):

- ``config.json``: the PolicyConfig as JSON plus ``"type": "nanovla_policy"``;
- ``model.safetensors``: every parameter and buffer, normalisation stats included;
- ``tokenizer.json``: the instruction vocabulary (absent for the frozen MiniLM).

Each file is written to a temp name and renamed (`os.replace`), config.json last, so a crash
never leaves a truncated file and other files in the directory (e.g. the trainer's
train_config.json) are untouched. ``model.safetensors`` carries a SHA-256 of its tensors in its
metadata (``nanovla.sha256``), checked on load, so a flipped bit in the weights is an error
rather than a different policy. Every loading problem is one `InputError` / `MissingError`
naming the file (and the key); the config and the tokenizer are checked against the weights
by building the policy on the meta device first, so a corrupt config never allocates a model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from nanovla.errors import InputError, MissingError, NanovlaError
from nanovla.models.policy.configuration_policy import PolicyConfig
from nanovla.models.policy.normalize import ACTION, STATE
from nanovla.models.text.tokenizer import Tokenizer

CONFIG_NAME, WEIGHTS_NAME, TOKENIZER_NAME = "config.json", "model.safetensors", "tokenizer.json"
POLICY_TYPE = "nanovla_policy"
DIGEST_KEY = "nanovla.sha256"
"""safetensors metadata key holding `tensors_digest` of the file's tensors"""


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of name, dtype, shape and raw bytes of every tensor, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


SAFETENSORS_ERRORS = (SafetensorError, OSError, ValueError, RuntimeError, TypeError, OverflowError)
"""What safetensors raises on a damaged file (header JSON, offsets, dtypes, sizes)."""


def _one_line(error: BaseException) -> str:
    """A library error's message on one line (some span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file; unreadable -> InputError, absent -> MissingError.

    When the file's metadata holds a `DIGEST_KEY` entry (as `save_policy` writes), the tensors
    must match it: a damaged file is refused instead of loading different numbers.
    """
    return read_safetensors_metadata(path)[0]


def read_safetensors_metadata(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """`read_safetensors`, and the file's string metadata."""
    path = Path(path)
    if not path.is_file():
        raise MissingError(f"{path}: file not found")
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}
    except SAFETENSORS_ERRORS as error:
        raise InputError(f"{path}: not a readable safetensors file ({_one_line(error)})") from error
    expected = metadata.get(DIGEST_KEY)
    if expected is not None and tensors_digest(tensors) != expected:
        raise InputError(
            f"{path}: tensors do not match the file's {DIGEST_KEY} checksum (the file is damaged)"
        )
    return tensors, metadata


TOKENIZER_DIGEST_KEY = "nanovla.tokenizer_sha256"
"""model.safetensors metadata key holding `tokenizer_digest` of the policy's tokenizer.json"""


def tokenizer_digest(tokenizer: Tokenizer) -> str:
    """SHA-256 (hex) of the tokenizer's content (`to_dict` as canonical JSON)."""
    text = json.dumps(tokenizer.to_dict(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _sort_header(path: Path) -> None:
    """Rewrite a safetensors header with sorted keys, in place and at the same length.

    safetensors writes its metadata map in an order that changes from process to process, so two
    identical policies would give files that differ in a few header bytes; sorted, the same
    weights always give the same bytes. Only the order of the JSON keys changes (the header is
    re-padded with spaces, as safetensors pads it), never a tensor's bytes or offsets.
    """
    with open(path, "r+b") as file:
        size = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(size))
        text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        if len(text) > size:  # cannot happen for the same keys and values; keep the file as is
            return
        file.seek(8)
        file.write(text + b" " * (size - len(text)))


def save_policy(policy: nn.Module, directory: str | os.PathLike) -> None:
    """Write `policy` (a `Policy`) into `directory` (created if needed), file by file atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state_dict = policy.state_dict()
    tensors = {name: value.detach().cpu().contiguous() for name, value in state_dict.items()}
    weights = directory / WEIGHTS_NAME
    metadata = {"format": "pt", DIGEST_KEY: tensors_digest(tensors)}
    if policy.tokenizer is not None:  # its embedding rows are only right with this vocabulary
        metadata[TOKENIZER_DIGEST_KEY] = tokenizer_digest(policy.tokenizer)
    save_file(tensors, str(_temp_name(weights)), metadata=metadata)
    _sort_header(_temp_name(weights))
    os.replace(_temp_name(weights), weights)
    if policy.tokenizer is not None:
        policy.tokenizer.save(directory / TOKENIZER_NAME)
    config_path = directory / CONFIG_NAME
    payload = {"type": POLICY_TYPE, **policy.config.to_dict()}
    _temp_name(config_path).write_text(json.dumps(payload, indent=2), encoding="utf-8")
    os.replace(_temp_name(config_path), config_path)


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise MissingError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise InputError(f"{path}: corrupt JSON ({' '.join(str(error).split())})") from error


def _read_config(path: Path) -> PolicyConfig:
    data = _read_json(path, "policy config")
    if not isinstance(data, dict) or data.get("type") != POLICY_TYPE:
        raise InputError(f'{path}: not a nanovla policy config (needs "type": "{POLICY_TYPE}")')
    data = {key: value for key, value in data.items() if key != "type"}
    return PolicyConfig.from_dict(data, source=str(path))


def load_policy_files(
    directory: str | os.PathLike,
) -> tuple[PolicyConfig, dict[str, torch.Tensor], Tokenizer | None]:
    """(config, state dict, tokenizer or None) read from a `save_pretrained` directory.

    The three files are checked against each other: the tokenizer against the checksum in
    the weights' metadata, and the policy the config and tokenizer describe is built on the
    meta device (no memory; not for text="minilm") and must have exactly the weights' keys,
    shapes and dtypes; otherwise an InputError names the file and the keys.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingError(f"policy directory not found: {directory}")
    config = _read_config(directory / CONFIG_NAME)
    tokenizer = None
    if config.text != "minilm":
        tokenizer = Tokenizer.load(directory / TOKENIZER_NAME)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise MissingError(f"policy weights not found: {weights}")
    state_dict, metadata = read_safetensors_metadata(weights)
    expected = metadata.get(TOKENIZER_DIGEST_KEY)
    if tokenizer is not None and expected is not None and tokenizer_digest(tokenizer) != expected:
        raise InputError(
            f"{directory / TOKENIZER_NAME}: not the tokenizer these weights were trained with "
            f"(its checksum differs from {TOKENIZER_DIGEST_KEY} in {weights.name})"
        )
    _check_fits(config, tokenizer, state_dict, directory)
    return config, state_dict, tokenizer


def _check_fits(
    config: PolicyConfig,
    tokenizer: Tokenizer | None,
    state_dict: Mapping[str, torch.Tensor],
    directory: Path,
) -> None:
    """Build the policy on the meta device and compare its state dict with `state_dict`."""
    from nanovla.models.policy.modeling_policy import Policy  # modeling imports this module

    if config.text == "minilm":
        # transformers refuses to load MiniLM's packaged weights under a meta device; such a
        # policy is checked by `load_weights` after it is built (sizes of its own layers are
        # then not bounded before allocation).
        return
    try:
        with torch.device("meta"):
            skeleton = Policy(config, tokenizer=tokenizer)
    except NanovlaError as error:
        raise InputError(f"{directory / CONFIG_NAME}: {_one_line(error)}") from error
    except (RuntimeError, ValueError, TypeError, OverflowError, KeyError) as error:
        raise InputError(
            f"{directory / CONFIG_NAME}: does not describe a policy that can be built "
            f"({_one_line(error)})"
        ) from error
    _compare(skeleton.state_dict(), state_dict, directory / WEIGHTS_NAME, directory / CONFIG_NAME)


def load_weights(
    policy: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str | os.PathLike
) -> None:
    """Strict load; missing/unexpected keys, shape or dtype mismatches -> one InputError
    naming them."""
    weights = Path(source) / WEIGHTS_NAME if Path(source).is_dir() else Path(source)
    _compare(policy.state_dict(), state_dict, weights)
    policy.load_state_dict(state_dict, strict=True)


def _compare(
    expected: Mapping[str, torch.Tensor],
    state_dict: Mapping[str, torch.Tensor],
    weights: Path,
    config: Path | None = None,
) -> None:
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{key} {tuple(state_dict[key].shape)} != {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state_dict and state_dict[key].shape != value.shape
    ]
    dtypes = [
        f"{key} {state_dict[key].dtype} != {value.dtype}"
        for key, value in expected.items()
        if key in state_dict and state_dict[key].dtype != value.dtype
    ]
    problems = [
        f"{label}: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape", mismatched),
            ("dtype", dtypes),
        )
        if keys
    ]
    if problems:
        which = f"the config ({config})" if config is not None else "the config"
        raise InputError(f"{weights}: weights do not match {which}; " + "; ".join(problems))


GOAL = "observation.environment_state"


def config_for_stats(config: PolicyConfig, stats: Mapping[str, Any]) -> PolicyConfig:
    """`config` with state_dim / action_dim taken from the dataset's stats (action names kept
    only if their count still matches)."""
    sizes = {}
    for feature, key, field in ((STATE, "mean", "state_dim"), (ACTION, "min", "action_dim")):
        if feature not in stats or key not in stats[feature]:
            raise InputError(f"dataset stats have no {feature!r}/{key!r} entry")
        sizes[field] = int(np.asarray(stats[feature][key]).size)
    changes: dict[str, Any] = dict(sizes)
    goal = stats.get(GOAL, {}).get("mean")
    changes["goal_dim"] = 0 if goal is None else int(np.asarray(goal).size)
    if len(config.action_names) not in (0, sizes["action_dim"]):
        changes["action_names"] = ()
    if len(config.loss_weights) not in (0, sizes["action_dim"]):
        raise InputError(
            f"PolicyConfig.loss_weights has {len(config.loss_weights)} entries but the dataset's "
            f"actions have {sizes['action_dim']} dimensions"
        )
    return dataclasses.replace(config, **changes)
