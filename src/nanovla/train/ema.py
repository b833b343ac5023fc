"""Weight EMA: an exponential moving average of the weights, the one a run evaluates and keeps.

Polyak averaging (Polyak & Juditsky, 1992, https://doi.org/10.1137/0330046) in its exponential
form, as timm's `ModelEmaV3` and LeRobot's diffusion policy use it: after every optimizer step

    W_ema <- d_n * W_ema + (1 - d_n) * W,   d_n = min(decay, (1 + n) / (10 + n))

(W_ema = W at the first update, n = updates so far), so the averaged weights trail the raw
ones by about 1 / (1 - decay) steps and smooth away the step-to-step noise of the last part of
a cosine schedule.

The plumbing is torch's: `WeightEMA` is a `torch.optim.swa_utils.AveragedModel` (a deep copy of
the model, `n_averaged`) with a `multi_avg_fn` that lerps all tensors at once
(`torch._foreach_lerp_`, as `get_ema_multi_avg_fn` does). Departures: (1) the warmup of d_n
(timm's `ModelEmaV3` / TensorFlow's `num_updates` form): with a fixed decay of 0.999 the
average after 1000 steps would still hold 0.999^1000 = 37% of the random initial weights, so a
short run (or an early validation) would judge a policy no step ever produced; d_n reaches
`decay` after ~9 / (1 - decay) updates, and from there the rule is `get_ema_multi_avg_fn`'s.
(2) `AveragedModel.update_parameters` would lerp every parameter and buffer each step, a frozen
MiniLM's 22 M weights included; here only the tensors that can change (the trainable parameters
and the floating-point buffers, e.g. BatchNorm's running statistics) are averaged, and integer
buffers are copied. Averaging frozen weights that equal their copy would leave them unchanged.

A checkpoint keeps the average as a loadable policy, `pretrained_model/ema/` (config.json +
model.safetensors, `nanovla eval` takes it) plus `ema.json` (`n_averaged`, `decay`); `load`
restores both exactly, so a resumed run's EMA is bit-identical to an uninterrupted one's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from nanovla.errors import InputError, MissingError
from nanovla.io import read_json, write_json

EMA_DIR = "ema"
"""the EMA policy's folder inside a checkpoint's `pretrained_model/`"""
EMA_FILE = "ema.json"
"""`{"n_averaged": int, "decay": float}` beside the EMA policy's files"""


def ema_multi_avg_fn(decay: float) -> Any:
    """`AveragedModel`'s multi_avg_fn for the EMA with warmup: d_n = min(decay, (1+n)/(10+n))."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: Any) -> None:
        updates = int(n)
        d = min(decay, (1 + updates) / (10 + updates))
        torch._foreach_lerp_(averaged, current, 1.0 - d)

    return update


class WeightEMA(AveragedModel):
    """`AveragedModel(model, multi_avg_fn=ema_multi_avg_fn(decay))` that averages only what
    can change. `ema.module` is the averaged model; call `update_parameters(model)` after each
    optimizer step."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise InputError(f"EMA decay must be in [0, 1), got {decay}")
        super().__init__(model, multi_avg_fn=ema_multi_avg_fn(decay), use_buffers=True)
        self.decay = decay
        live = _changing(model)
        self._floats = [name for name, t in live.items() if t.is_floating_point()]
        self._others = [name for name in live if name not in self._floats]
        self.module.eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """One EMA step from `model`'s current weights (the first call copies them)."""
        live = _changing(model)
        averaged = _changing(self.module, names=live)
        if int(self.n_averaged) == 0:
            for name, tensor in averaged.items():
                tensor.copy_(live[name])
        else:
            ema = [averaged[name] for name in self._floats]
            self.multi_avg_fn(ema, [live[name] for name in self._floats], self.n_averaged)
            for name in self._others:
                averaged[name].copy_(live[name])
        self.n_averaged += 1
        for module in self.module.modules():  # weights changed in place: drop cached features
            clear = getattr(module, "clear_cache", None)  # (the instruction encoder's, computed
            if callable(clear):  # in eval mode by an earlier validation, would go stale)
                clear()

    def save(self, pretrained_dir: Path) -> Path:
        """Write the average into `pretrained_dir/ema/` (a policy folder + ema.json)."""
        directory = Path(pretrained_dir) / EMA_DIR
        self.module.save_pretrained(directory)
        write_json(directory / EMA_FILE, {"n_averaged": int(self.n_averaged), "decay": self.decay})
        return directory

    def load(self, pretrained_dir: Path) -> None:
        """Restore what `save` wrote into `pretrained_dir/ema/` (a resumed run's average)."""
        from nanovla.models.policy.pretrained import load_policy_files

        directory = Path(pretrained_dir) / EMA_DIR
        record_path = directory / EMA_FILE
        if not record_path.is_file():
            raise MissingError(
                f"{record_path} not found: the checkpoint holds no weight EMA (it was trained "
                "with --ema-decay 0); resume with the options it was started with"
            )
        record: dict[str, Any] = read_json(record_path)
        if record.get("decay") != self.decay or not isinstance(record.get("n_averaged"), int):
            raise InputError(f"{record_path}: expected decay {self.decay}, got {record!r}")
        _, state_dict, _ = load_policy_files(directory)
        self.module.load_state_dict(state_dict)
        self.n_averaged.fill_(record["n_averaged"])


def _changing(model: nn.Module, names: Any = None) -> dict[str, torch.Tensor]:
    """The tensors of `model` an optimizer step can change: trainable parameters and buffers
    (or, given `names`, the tensors of those names: the frozen copy's counterparts)."""
    if names is not None:
        everything = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        return {name: everything[name] for name in names}
    tensors = {name: p for name, p in model.named_parameters() if p.requires_grad}
    tensors.update(dict(model.named_buffers()))
    return tensors


class EMAHooks:
    """What a run adds to its `Trainer` for the EMA: the run record (anything with
    `.save(directory)`, e.g. `RunRecord`) in every checkpoint and beside the EMA policy folder
    (so `nanovla eval` of `pretrained_model/ema` judges the run's families and targets), the
    EMA update after every step, and a resumed run's saved average restored. `decay` <= 0: no
    EMA, the raw weights are judged. Used by `nanovla train` (`pipeline.RunHooks`) and by the
    imitation commands (`il/training.py`)."""

    def __init__(self, record: Any, decay: float) -> None:
        self.record, self.decay = record, decay
        self.ema: WeightEMA | None = None  # set by `attach` once the trainer's model exists

    def attach(self, trainer: Any) -> None:
        """Start the EMA from the trainer's model (a resumed run restores the saved average)."""
        from nanovla.constants import PRETRAINED_DIR

        if self.decay <= 0:
            return
        ema = self.ema = WeightEMA(trainer.model, self.decay)
        if trainer.resumed_from is not None:
            ema.load(trainer.resumed_from / PRETRAINED_DIR)
        trainer.on_step = lambda step: ema.update_parameters(trainer.model)

    def on_save(self, pretrained: Path) -> None:
        self.record.save(pretrained)
        if self.ema is not None:
            self.record.save(self.ema.save(pretrained))

    def judged(self, model: nn.Module) -> nn.Module:
        """The weights validation and evaluation judge: the EMA's, else `model`."""
        return model if self.ema is None else self.ema.module
