"""Faults inside the training engine: NaN/inf in a batch, a loss or the gradients (stop or skip),
the Ctrl-C message (checkpoint path + the command that resumes), and a full disk or read-only
directory while writing a checkpoint or the logs (an OSError naming the path, nothing left
half-written)."""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train_engine import (
    ToyConfig,
    ToyLoader,
    ToyModel,
    assert_bit_identical,
    tiny_config,
    weights,
)

from nanovla.train import Trainer, latest_checkpoint, read_metrics
from nanovla.train.checkpoint import step_dirs
from nanovla.train.engine import NonFiniteError
from nanovla.train.state import load_training_state


class PoisonLoader(ToyLoader):
    """ToyLoader whose batch number `at` (0-based call) holds `value` in one entry of `key`."""

    def __init__(self, at: int, value: float = math.nan, key: str = "x", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.at, self.value, self.key = at, value, key

    def next_batch(self) -> dict[str, torch.Tensor]:
        call = self.calls
        batch = super().next_batch()
        if call == self.at:
            batch[self.key] = batch[self.key].clone()
            batch[self.key][0, 0] = self.value
        return batch


class InfGradModel(ToyModel):
    """ToyModel whose loss is finite but whose gradient is inf at forward call `at`."""

    def __init__(self, config: ToyConfig, at: int) -> None:
        super().__init__(config)
        self.at, self.calls = at, 0

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        loss, metrics = super().forward(batch)
        self.calls += 1
        if self.calls - 1 == self.at:
            # sqrt'(0) = inf: the value stays finite, the gradient does not
            loss = loss + torch.sqrt(self.net[0].weight[0, 0] * 0.0)
        return loss, metrics


def _checkpoint_steps(out: Path) -> list[int]:
    return [load_training_state(d / "training_state")["step"] for d in step_dirs(out)]


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda: (ToyModel(ToyConfig()), PoisonLoader(at=4)), "'x' holds 1 NaN/inf values"),
        (lambda: (ToyModel(ToyConfig()), PoisonLoader(at=4, value=math.inf, key="y")), "'y'"),
        (lambda: (InfGradModel(ToyConfig(), at=4), ToyLoader()), "non-finite gradients in net.0"),
    ],
    ids=["nan-in-batch", "inf-in-target", "inf-gradient"],
)
def test_nonfinite_stops_at_that_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, make: Any, what: str
) -> None:
    model, loader = make()
    config = tiny_config(save_every=2, keep_last=0)
    trainer = Trainer(model, loader, config, tmp_path)
    with pytest.raises(NonFiniteError) as caught:
        trainer.fit()
    message = str(caught.value)
    assert message.startswith("step 5: ") and what in message, message
    assert str(tmp_path / "checkpoints" / "000004") in message  # the last good one, named
    assert "\n" not in message
    assert trainer.step == 4 and _checkpoint_steps(tmp_path) == [2, 4]
    assert latest_checkpoint(tmp_path).name == "000004"
    # the weights were not touched by the bad step: they equal a clean 4-step run's
    reference = ToyModel(ToyConfig())
    four = Trainer(reference, ToyLoader(), tiny_config(steps=8), tmp_path / "four")
    for _ in range(4):
        four._run_step(_Window(), False)
    assert_bit_identical(weights(model), weights(reference))
    assert all(torch.isfinite(v).all() for v in weights(model).values())


class _Window:
    """What `_run_step` needs of a TrainWindow when nothing is logged."""

    losses: list = []

    def add(self, *args: Any) -> None: ...

    def note(self, **kwargs: Any) -> None: ...


def test_nonfinite_skip_drops_the_step_and_carries_on(tmp_path: Path, capsys) -> None:
    model = ToyModel(ToyConfig())
    config = tiny_config(on_nonfinite="skip", log_every=1)
    result = Trainer(model, PoisonLoader(at=2), config, tmp_path).fit()
    assert result["step"] == 8 and result["skipped_steps"] == 1
    out = capsys.readouterr().err
    assert "step 3: the loss is nan" in out and "step skipped" in out
    assert all(torch.isfinite(v).all() for v in weights(model).values())
    logged = [r["step"] for r in read_metrics(tmp_path / "logs" / "metrics.jsonl")]
    assert logged == [1, 2, 4, 5, 6, 7, 8]  # the skipped step logs no (NaN) loss
    assert all(
        math.isfinite(r["train/loss"]) for r in read_metrics(tmp_path / "logs/metrics.jsonl")
    )


def test_on_nonfinite_is_checked() -> None:
    with pytest.raises(ValueError, match="on_nonfinite must be stop or skip"):
        tiny_config(on_nonfinite="ignore")


# ---------------------------------------------------------------- Ctrl-C says where and how


def test_ctrl_c_prints_the_checkpoint_and_the_command_that_resumes(tmp_path: Path, capsys) -> None:
    hint = f"nanovla train --out {tmp_path} --resume"
    trainer = Trainer(
        ToyModel(ToyConfig()), ToyLoader(sigint_at=4), tiny_config(), tmp_path, resume_hint=hint
    )
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    out = capsys.readouterr().err
    saved = tmp_path / "checkpoints" / "000005"
    assert f"checkpoint of step 5 saved to {saved}; resume with: {hint}" in out
    # a KeyboardInterrupt the engine did not defer (raised by the loader) says the same
    with pytest.raises(KeyboardInterrupt):
        Trainer(
            ToyModel(ToyConfig()),
            ToyLoader(interrupt_at=2),
            tiny_config(),
            tmp_path / "b",
            resume_hint="RESUME",
        ).fit()
    assert (
        "checkpoint saved to" in (out := capsys.readouterr().err) and "resume with: RESUME" in out
    )


# ---------------------------------------------------------------- a full disk, a read-only dir


def _full_disk_for(monkeypatch: pytest.MonkeyPatch, target: str, number: int, marker: str):
    """Make `target` (a dotted function name) raise OSError(number) when one of its arguments
    names a path containing `marker`, as a full disk does: without a filename, as a failed
    write() raises it."""
    module, name = target.rsplit(".", 1)
    real = getattr(__import__(module, fromlist=[name]), name)

    def fake(*args: Any, **kwargs: Any) -> Any:
        if any(marker in str(arg) for arg in args if isinstance(arg, str | Path)):
            raise OSError(number, os.strerror(number))
        return real(*args, **kwargs)

    monkeypatch.setattr(target, fake)


@pytest.mark.parametrize(
    ("target", "number"),
    [
        ("nanovla.train.state.save_file", errno.ENOSPC),  # a state's safetensors
        ("nanovla.io.write_text", errno.EDQUOT),  # a JSON file of the checkpoint
    ],
    ids=["enospc-safetensors", "edquot-json"],
)
def test_a_full_disk_during_a_save_names_the_checkpoint_and_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, number: int
) -> None:
    _full_disk_for(monkeypatch, target, number, marker=".tmp-000008")
    trainer = Trainer(ToyModel(ToyConfig()), ToyLoader(), tiny_config(save_every=4), tmp_path)
    with pytest.raises(OSError) as caught:
        trainer.fit()  # saves step 4, then fails to save step 8
    assert caught.value.errno == number
    assert "checkpoints" in str(caught.value.filename)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["000004", "last"]  # no temporary left
    assert latest_checkpoint(tmp_path).name == "000004"
    assert load_training_state(root / "last" / "training_state")["step"] == 4


def test_a_read_only_checkpoints_directory_names_it(tmp_path: Path, monkeypatch) -> None:
    trainer = Trainer(ToyModel(ToyConfig()), ToyLoader(), tiny_config(), tmp_path)
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.name.startswith(".tmp-"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(OSError) as caught:
        trainer.fit()
    assert caught.value.errno == errno.EROFS and ".tmp-000008" in caught.value.filename
    assert latest_checkpoint(tmp_path) is None
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == []


def test_a_full_disk_while_logging_names_the_log_file(tmp_path: Path, monkeypatch) -> None:
    trainer = Trainer(ToyModel(ToyConfig()), ToyLoader(), tiny_config(save_every=2), tmp_path)
    real_log = __import__("nanovla.train.logger", fromlist=["MetricsLogger"]).MetricsLogger.log
    calls = [0]

    def log(self: Any, step: int, metrics: dict) -> None:
        calls[0] += 1
        if calls[0] == 3:  # the step-6 record: checkpoints of steps 2 and 4 exist
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_log(self, step, metrics)

    monkeypatch.setattr("nanovla.train.logger.MetricsLogger.log", log)
    with pytest.raises(OSError) as caught:
        trainer.fit()
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tmp_path / "logs" / "metrics.jsonl")
    assert latest_checkpoint(tmp_path).name == "000004"


def test_safetensors_disk_errors_become_oserrors(tmp_path: Path) -> None:
    """safetensors reports a failed write as SafetensorError("... (os error 28)")."""
    from nanovla.train.guards import safetensors_errors as _safetensors_errors

    with pytest.raises(OSError) as caught:
        with _safetensors_errors(tmp_path / "model.safetensors"):
            from safetensors import SafetensorError

            # the text safetensors 0.x gives on a full tmpfs
            raise SafetensorError(
                "Error while serializing: I/O error: No space left on device (os error 28)"
            )
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tmp_path / "model.safetensors")
