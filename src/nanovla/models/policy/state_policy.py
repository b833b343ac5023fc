"""`StatePolicy`: a language-conditioned policy on a state vector (no camera).

    state (B,D) -> standardise ----------------------------+
    instruction list[str] -> InstructionEncoder -> t (B,Dt) +-> concat -> [Linear -> FiLM(t) -> GELU] x L
                                                                -> Linear -> tanh -> (B,k,A) in [-1,1]
                                                                -> unnormalise with the action min/max

The instruction both enters the first layer and scales and shifts every hidden layer (FiLM,
Perez et al. 2018, https://arxiv.org/abs/1709.07871): one network serves many tasks, and the
words pick the behaviour. It has the VLA `Policy`'s face: `forward(batch) -> (loss, metrics)`
on loader batches (`observation.state`, `action` (B,k,A), `action_is_pad`, `task`; an
`observation.image` in the batch is ignored), `select_action(obs)` on observations with
`state` and `instruction`, `save_pretrained` / `from_pretrained` (config.json +
model.safetensors with the normalisation statistics + tokenizer.json), `from_dataset`.

Why its own model rather than a mode of `Policy`: the VLA's encoder, fusion and normaliser are
built around an image grid; a state-only switch would touch each of them, while this MLP is
the whole network for simulators that expose their state (Meta-World). Departures from
`Policy`: chunked actions are trained but only the first action is executed (no action queue).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from nanovla.codec import from_json, to_json
from nanovla.errors import InputError, MissingError
from nanovla.models.policy.language import InstructionEncoder
from nanovla.models.policy.loss import masked_regression_loss
from nanovla.models.policy.pretrained import (
    DIGEST_KEY,
    read_safetensors,
    tensors_digest,
)
from nanovla.models.text.tokenizer import Tokenizer

STATE, ACTION = "observation.state", "action"
POLICY_TYPE = "nanovla_state_policy"
_MIN_STD, _MIN_RANGE = 1e-3, 1e-6


@dataclass
class StatePolicyConfig:
    """A state + instruction -> action chunk MLP. Options you will most likely change first."""

    hidden_dim: int = 256
    """width of each hidden layer"""
    layers: int = 3
    """hidden layers, each modulated by the instruction (FiLM)"""
    chunk: int = 1
    """actions predicted per frame (1 = plain single-step BC); the first is executed"""
    dropout: float = 0.0
    """dropout after each hidden layer (0 = off)"""
    loss: Literal["smooth_l1", "mse"] = "mse"
    """regression loss on [-1, 1]-normalised actions"""
    loss_beta: float = 0.1
    """smooth_l1 switch point between quadratic and linear, in normalised action units"""
    text: Literal["lstm", "transformer", "minilm"] = "lstm"
    """language encoder (see `PolicyConfig.text`): trained LSTM, small Transformer, or the
    frozen pretrained MiniLM (needs nanovla[minilm])"""
    tokenizer_level: Literal["word", "char", "particle"] = "word"
    """instruction tokenizer for lstm/transformer"""
    text_dim: int = 64
    """output size of the trainable text encoders (MiniLM is always 384)"""
    text_embed_dim: int = 32
    """token embedding size of the trainable text encoders"""
    text_hidden_dim: int = 64
    """LSTM hidden size; the Transformer's d_model"""
    word_dropout: float = 0.0
    """training only: probability that an instruction token becomes <unk>"""
    word_insertion: float = 0.0
    """training only: probability that an instruction gets one random vocabulary word inserted
    (the VLA policy's `PolicyConfig.word_insertion`)"""
    state_dim: int = 39
    """state size D (set from the dataset by `from_dataset`)"""
    action_dim: int = 4
    """action size A (set from the dataset by `from_dataset`)"""
    action_names: tuple[str, ...] = ()
    """one name per action dimension for metric keys (l1_dx, ...); empty = dim0, dim1, ..."""

    def __post_init__(self) -> None:
        for name in ("hidden_dim", "layers", "chunk", "state_dim", "action_dim", "text_dim"):
            if getattr(self, name) < 1:
                raise InputError(
                    f"StatePolicyConfig.{name} must be >= 1, got {getattr(self, name)}"
                )
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.word_dropout < 1.0:
            raise InputError("StatePolicyConfig.dropout and word_dropout must be in [0, 1)")
        if not 0.0 <= self.word_insertion <= 1.0:
            raise InputError(
                f"StatePolicyConfig.word_insertion must be in [0, 1], got {self.word_insertion}"
            )
        if self.loss not in ("smooth_l1", "mse") or self.loss_beta <= 0:
            raise InputError(
                f"StatePolicyConfig.loss must be smooth_l1 or mse with loss_beta > 0, got "
                f"{self.loss!r}, {self.loss_beta}"
            )
        if len(self.action_names) not in (0, self.action_dim):
            raise InputError(
                f"StatePolicyConfig.action_names must be empty or have {self.action_dim} entries"
            )

    @property
    def action_labels(self) -> tuple[str, ...]:
        return self.action_names or tuple(f"dim{i}" for i in range(self.action_dim))

    def to_dict(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], source: str = "StatePolicyConfig"
    ) -> StatePolicyConfig:
        return from_json(cls, data, source)


class FiLMLayer(nn.Module):
    """h -> GELU((W h + b) * (1 + gamma(t)) + beta(t)), then dropout."""

    def __init__(self, in_dim: int, out_dim: int, text_dim: int, dropout: float) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.film = nn.Linear(text_dim, 2 * out_dim)
        nn.init.zeros_(self.film.weight)  # start as a plain MLP layer
        nn.init.zeros_(self.film.bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(text).chunk(2, dim=-1)  # (B, out) each
        return self.dropout(nn.functional.gelu(self.linear(h) * (1 + gamma) + beta))


class StatePolicy(nn.Module):
    """State + instruction policy: `forward(batch) -> (loss, metrics)`, `select_action(obs)`."""

    def __init__(
        self,
        config: StatePolicyConfig,
        dataset_stats: Mapping[str, Any] | None = None,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        nan = float("nan")
        for name, size in (("state", config.state_dim), ("action", config.action_dim)):
            self.register_buffer(f"{name}_a", torch.full((size,), nan))  # mean / min
            self.register_buffer(f"{name}_b", torch.full((size,), nan))  # std / max
        if dataset_stats is not None:
            self.set_stats(dataset_stats)
        self.language = InstructionEncoder(config, tokenizer)  # reads the text fields only
        width, text_dim = config.hidden_dim, self.language.out_dim
        sizes = [config.state_dim + text_dim] + [width] * config.layers
        self.layers = nn.ModuleList(
            FiLMLayer(a, b, text_dim, config.dropout) for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.out = nn.Linear(width, config.chunk * config.action_dim)

    @property
    def tokenizer(self) -> Tokenizer | None:
        return self.language.tokenizer

    def set_stats(self, stats: Mapping[str, Any]) -> None:
        """Copy state mean/std and action min/max from dataset stats (meta/stats.json form)."""
        with torch.no_grad():
            for name, feature, (a, b) in (
                ("state", STATE, ("mean", "std")),
                ("action", ACTION, ("min", "max")),
            ):
                for suffix, key in (("a", a), ("b", b)):
                    buffer = getattr(self, f"{name}_{suffix}")
                    try:
                        value = torch.as_tensor(np.asarray(stats[feature][key], np.float32))
                    except KeyError:
                        raise InputError(f"dataset stats have no {feature!r}/{key!r}") from None
                    if value.numel() != buffer.numel():
                        raise InputError(
                            f"dataset stats {feature!r}/{key!r} have {value.numel()} values, "
                            f"the policy needs {buffer.numel()}"
                        )
                    buffer.copy_(value.reshape(-1))
            self.state_b.clamp_(min=_MIN_STD)

    # ----------------------------------------------------------------------------- the network
    def predict_chunk(self, state: torch.Tensor, instructions: list[str]) -> torch.Tensor:
        """Raw state (B, D), B strings -> normalised action chunk (B, k, A) in [-1, 1]."""
        if not bool(torch.isfinite(self.state_a).all()):
            raise InputError("the policy has no normalization stats: use StatePolicy.from_dataset")
        if state.ndim != 2 or state.shape[1] != self.config.state_dim:
            raise InputError(
                f"{STATE} must be (B, {self.config.state_dim}), got {tuple(state.shape)}"
            )
        if len(instructions) != state.shape[0]:
            raise InputError(f"got {len(instructions)} instructions for {state.shape[0]} states")
        text = self.language(instructions, device=state.device)  # (B, Dt)
        h = torch.cat([(state - self.state_a) / self.state_b, text], dim=-1)  # (B, D + Dt)
        for layer in self.layers:
            h = layer(h, text)  # (B, H)
        out = torch.tanh(self.out(h))  # (B, k * A)
        return out.view(len(state), self.config.chunk, self.config.action_dim)

    def normalize_action(self, action: torch.Tensor) -> torch.Tensor:
        span = (self.action_b - self.action_a).clamp_min(_MIN_RANGE)
        return 2.0 * (action - self.action_a) / span - 1.0

    def unnormalize_action(self, action: torch.Tensor) -> torch.Tensor:
        span = (self.action_b - self.action_a).clamp_min(_MIN_RANGE)
        return (action + 1.0) * 0.5 * span + self.action_a

    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training step on a loader batch -> (loss, metrics: loss, l1, l1_<name>)."""
        missing = [key for key in (STATE, ACTION, "action_is_pad", "task") if key not in batch]
        if missing:
            raise InputError(f"batch is missing keys {missing}")
        action, is_pad = batch[ACTION], batch["action_is_pad"]  # (B, k, A), (B, k)
        expected = (self.config.chunk, self.config.action_dim)
        if action.ndim != 3 or tuple(action.shape[1:]) != expected:
            raise InputError(f"batch[{ACTION!r}] must be (B, {expected[0]}, {expected[1]})")
        pred = self.predict_chunk(batch[STATE].float(), list(batch["task"]))  # (B, k, A)
        weights = torch.ones(self.config.action_dim, device=pred.device)
        target = self.normalize_action(action)
        loss = masked_regression_loss(
            pred, target, is_pad, weights, self.config.loss, self.config.loss_beta
        )
        with torch.no_grad():
            error = (self.unnormalize_action(pred) - action).abs()  # (B, k, A)
            valid = (~is_pad).to(error.dtype).unsqueeze(-1)  # (B, k, 1)
            per_dim = (error * valid).sum((0, 1)) / valid.sum().clamp_min(1.0)  # (A,)
        metrics = {"loss": loss.detach(), "l1": per_dim.mean()}
        for i, name in enumerate(self.config.action_labels):
            metrics[f"l1_{name}"] = per_dim[i]
        return loss, metrics

    @torch.inference_mode()
    def select_action(self, obs: Mapping[str, Any]) -> np.ndarray:
        """obs `state` (N, D) and `instruction` (N strings) -> actions (N, A) float32 numpy
        (one unbatched observation, state (D,) and a str, gives (A,)). Leaves eval mode on."""
        if self.training:
            self.eval()
        if "state" not in obs or "instruction" not in obs:
            raise InputError("observation needs 'state' and 'instruction'")
        state = np.asarray(obs["state"], dtype=np.float32)
        single = state.ndim == 1
        texts = [obs["instruction"]] if single else list(obs["instruction"])
        tensor = torch.from_numpy(state[None] if single else state).to(self.state_a.device)
        actions = self.unnormalize_action(self.predict_chunk(tensor, texts)[:, 0])  # (N, A)
        actions = actions.float().cpu().numpy()
        return actions[0] if single else actions

    def reset(self, env_ids: Any = None) -> None:
        """Nothing to forget (no action queue); here for the `Policy` face."""

    # --------------------------------------------------------------------------- save / load
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """config.json, model.safetensors (weights + stats, with a SHA-256) and tokenizer.json."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        weights, temp = directory / "model.safetensors", directory / ".model.safetensors.tmp"
        save_file(
            tensors, str(temp), metadata={"format": "pt", DIGEST_KEY: tensors_digest(tensors)}
        )
        os.replace(temp, weights)
        if self.tokenizer is not None:
            self.tokenizer.save(directory / "tokenizer.json")
        config, temp = directory / "config.json", directory / ".config.json.tmp"
        temp.write_text(json.dumps({"type": POLICY_TYPE, **self.config.to_dict()}, indent=2))
        os.replace(temp, config)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> StatePolicy:
        """Rebuild a policy written by `save_pretrained`, in eval mode."""
        directory = Path(directory)
        path = directory / "config.json"
        if not path.is_file():
            raise MissingError(f"policy config not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InputError(f"{path}: corrupt JSON ({error})") from error
        if not isinstance(data, dict) or data.pop("type", None) != POLICY_TYPE:
            raise InputError(f'{path}: not a state policy config (needs "type": "{POLICY_TYPE}")')
        config = StatePolicyConfig.from_dict(data, source=str(path))
        tokenizer = (
            None if config.text == "minilm" else Tokenizer.load(directory / "tokenizer.json")
        )
        policy = cls(config, tokenizer=tokenizer)
        state_dict = read_safetensors(directory / "model.safetensors")
        expected = policy.state_dict()
        if set(state_dict) != set(expected) or any(
            state_dict[k].shape != v.shape for k, v in expected.items()
        ):
            raise InputError(f"{directory / 'model.safetensors'}: weights do not match {path}")
        policy.load_state_dict(state_dict)
        return policy.eval()

    @classmethod
    def from_dataset(cls, config: StatePolicyConfig, dataset: Any) -> StatePolicy:
        """Policy for `dataset`: its state/action sizes and stats, a tokenizer of its tasks."""
        stats = dataset.stats
        sizes = {
            "state_dim": int(np.asarray(stats[STATE]["mean"]).size),
            "action_dim": int(np.asarray(stats[ACTION]["min"]).size),
        }
        if len(config.action_names) != sizes["action_dim"]:
            sizes["action_names"] = ()  # type: ignore[assignment]
        config = dataclasses.replace(config, **sizes)
        tokenizer = None
        if config.text != "minilm":
            tokenizer = Tokenizer.from_texts(dataset.tasks, level=config.tokenizer_level)
        return cls(config, dataset_stats=stats, tokenizer=tokenizer)
