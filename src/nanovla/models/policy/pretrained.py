"""Saving and loading a policy: ``config.json`` + ``model.safetensors`` + ``tokenizer.json``.

Layout (as a LeRobot ``pretrained_model/`` directory):

- ``config.json``: the PolicyConfig as JSON plus ``"type": "nanovla_policy"``;
- ``model.safetensors``: every parameter and buffer, normalisation stats included;
- ``tokenizer.json``: the instruction vocabulary (absent for the frozen MiniLM).

Each file is written to a temp name and renamed (`os.replace`), config.json last, so a crash
never leaves a truncated file and other files in the directory (e.g. the trainer's
train_config.json) are untouched. Every loading problem is one ValueError / FileNotFoundError
naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from nanovla.errors import InputError, MissingError
from nanovla.models.policy.configuration_policy import PolicyConfig
from nanovla.models.policy.normalize import ACTION, STATE
from nanovla.models.text.tokenizer import Tokenizer

CONFIG_NAME, WEIGHTS_NAME, TOKENIZER_NAME = "config.json", "model.safetensors", "tokenizer.json"
POLICY_TYPE = "nanovla_policy"


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def save_policy(policy: nn.Module, directory: str | os.PathLike) -> None:
    """Write `policy` (a `Policy`) into `directory` (created if needed), file by file atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state_dict = policy.state_dict()
    tensors = {name: value.detach().cpu().contiguous() for name, value in state_dict.items()}
    weights = directory / WEIGHTS_NAME
    save_file(tensors, str(_temp_name(weights)), metadata={"format": "pt"})
    os.replace(_temp_name(weights), weights)
    if policy.tokenizer is not None:
        policy.tokenizer.save(directory / TOKENIZER_NAME)
    config_path = directory / CONFIG_NAME
    payload = {"type": POLICY_TYPE, **policy.config.to_dict()}
    _temp_name(config_path).write_text(json.dumps(payload, indent=2), encoding="utf-8")
    os.replace(_temp_name(config_path), config_path)


def _read_config(path: Path) -> PolicyConfig:
    if not path.is_file():
        raise MissingError(f"policy config not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: corrupt JSON ({error})") from error
    if not isinstance(data, dict) or data.get("type") != POLICY_TYPE:
        raise InputError(f'{path}: not a nanovla policy config (needs "type": "{POLICY_TYPE}")')
    data = {key: value for key, value in data.items() if key != "type"}
    return PolicyConfig.from_dict(data, source=str(path))


def load_policy_files(
    directory: str | os.PathLike,
) -> tuple[PolicyConfig, dict[str, torch.Tensor], Tokenizer | None]:
    """(config, state dict, tokenizer or None) read from a `save_pretrained` directory."""
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
    try:
        state_dict = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(f"{weights}: corrupt safetensors file ({error})") from error
    return config, state_dict, tokenizer


def load_weights(
    policy: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str | os.PathLike
) -> None:
    """Strict load; missing/unexpected keys or shape mismatches -> one ValueError naming them."""
    expected = policy.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{key} {tuple(state_dict[key].shape)} != {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state_dict and state_dict[key].shape != value.shape
    ]
    problems = [
        f"{label}: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", mismatched))
        if keys
    ]
    if problems:
        weights = Path(source) / WEIGHTS_NAME if Path(source).is_dir() else Path(source)
        raise InputError(f"{weights}: weights do not match the config; " + "; ".join(problems))
    policy.load_state_dict(state_dict, strict=True)


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
