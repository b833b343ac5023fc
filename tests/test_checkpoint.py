"""Checkpoints: the state codec, RNG round trip, atomic writes, pruning and bad resumes."""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_engine import ToyConfig, ToyLoader, ToyModel, tiny_config

from nanovla.constants import PRETRAINED_DIR, TRAINING_STATE_DIR
from nanovla.train import Trainer, latest_checkpoint, load_checkpoint_dir
from nanovla.train.checkpoint import (
    step_dirs,
    write_checkpoint,
)
from nanovla.train.rng import capture_rng_state, restore_rng_state
from nanovla.train.state import load_state, load_training_state, save_state, save_training_state


def _snapshot(directory: Path) -> dict[str, bytes]:
    """Every file (and link target) under `directory`, to prove nothing was touched."""
    files = {}
    for path in sorted(directory.rglob("*")):
        key = str(path.relative_to(directory))
        if path.is_symlink():
            files[key] = str(path.readlink()).encode()
        elif path.is_file():
            files[key] = path.read_bytes()
    return files


def test_state_codec_round_trips_nested_structures(tmp_path: Path) -> None:
    state = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(2, 3)}},
        "param_groups": [{"lr": 0.1 + 0.2, "betas": (0.9, 0.999), "params": [0, 1]}],
        "numpy": {"key": np.arange(5, dtype=np.uint32), "pos": 3},
        "__weird__": None,
        "view": torch.arange(6.0)[::2],  # a strided view of a bigger storage
    }
    save_state(state, tmp_path, "thing")
    loaded = load_state(tmp_path, "thing")
    assert list(loaded["state"]) == [0]  # int keys stay ints (the optimizer needs them)
    assert torch.equal(loaded["state"][0]["exp_avg"], state["state"][0]["exp_avg"])
    assert loaded["param_groups"][0]["betas"] == (0.9, 0.999)
    assert loaded["param_groups"][0]["lr"] == 0.1 + 0.2  # bit-exact float through JSON
    assert loaded["numpy"]["key"].dtype == np.uint32
    assert np.array_equal(loaded["numpy"]["key"], np.arange(5))
    assert loaded["__weird__"] is None
    assert torch.equal(loaded["view"], torch.tensor([0.0, 2.0, 4.0]))


def test_state_codec_names_what_it_cannot_store(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'loader.fn' has type function"):
        save_state({"loader": {"fn": lambda: 0}}, tmp_path, "bad")
    with pytest.raises(ValueError, match="collide at 'a.b'"):
        save_state({"a": {"b": torch.zeros(1)}, "a.b": torch.ones(1)}, tmp_path, "bad")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_rng_state_survives_disk(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.randn()  # leave numpy with a cached gaussian half-way
    save_state(capture_rng_state(), tmp_path, "rng_state")
    expected = (random.random(), np.random.randn(3), torch.rand(3))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng_state(load_state(tmp_path, "rng_state"))
    got = (random.random(), np.random.randn(3), torch.rand(3))
    assert got[0] == expected[0]
    assert np.array_equal(got[1], expected[1]) and torch.equal(got[2], expected[2])


def _write_files(contents: str):
    def write(directory: Path) -> None:
        (directory / "payload.txt").write_text(contents)

    return write


def test_write_checkpoint_is_atomic_when_writing_fails(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, 5, _write_files("good"))

    def crash(directory: Path) -> None:
        (directory / "payload.txt").write_text("half")
        raise OSError("disk full")

    before = _snapshot(tmp_path)
    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(tmp_path, 10, crash)
    assert _snapshot(tmp_path) == before  # no 000010, no temp dir, `last` untouched
    assert latest_checkpoint(tmp_path) == (tmp_path / "checkpoints" / "000005").resolve()


def test_trainer_crash_mid_save_keeps_last(tmp_path: Path, monkeypatch) -> None:
    model = ToyModel(ToyConfig())
    config = tiny_config(save_every=4)
    trainer = Trainer(model, ToyLoader(), config, tmp_path)
    real_save = model.save_pretrained

    def save_then_crash(directory: Path) -> None:
        if trainer.step == 8:
            real_save(directory)  # weights are on disk when the "crash" comes
            raise RuntimeError("killed")
        real_save(directory)

    monkeypatch.setattr(model, "save_pretrained", save_then_crash)
    with pytest.raises(RuntimeError, match="killed"):
        trainer.fit()
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["000004", "last"]
    assert latest_checkpoint(tmp_path).name == "000004"
    config_dict, state_dict = load_checkpoint_dir(root / "last")
    assert config_dict["hidden"] == 16 and "net.0.weight" in state_dict


def test_keep_last_prunes_old_steps_and_same_step_replaces(tmp_path: Path) -> None:
    for step in (1, 2, 3, 4):
        write_checkpoint(tmp_path, step, _write_files(f"step {step}"), keep_last=2)
    write_checkpoint(tmp_path, 4, _write_files("again"), keep_last=2)
    root = tmp_path / "checkpoints"
    # a re-save gets a new name, so `last` never names a directory that is being replaced
    assert sorted(p.name for p in root.iterdir()) == ["000003", "000004.1", "last"]
    assert (root / "last" / "payload.txt").read_text() == "again"
    write_checkpoint(tmp_path, 4, _write_files("third"), keep_last=2)
    assert sorted(p.name for p in root.iterdir()) == ["000003", "000004.2", "last"]
    assert [p.name for p in step_dirs(tmp_path)] == ["000003", "000004.2"]
    write_checkpoint(tmp_path, 5, _write_files("step 5"), keep_last=2)
    assert sorted(p.name for p in root.iterdir()) == ["000004.2", "000005", "last"]


def test_latest_checkpoint_is_none_without_one(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None


def test_load_checkpoint_dir_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_checkpoint_dir(tmp_path / "nowhere")
    pretrained = tmp_path / "ckpt" / "pretrained_model"
    ToyModel(ToyConfig()).save_pretrained(pretrained)
    (pretrained / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="model.safetensors"):
        load_checkpoint_dir(tmp_path / "ckpt")
    (pretrained / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        load_checkpoint_dir(pretrained)


def test_resume_without_checkpoint_names_the_path_and_writes_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match=r"run/checkpoints/last: no checkpoint"):
        Trainer(ToyModel(ToyConfig()), ToyLoader(), tiny_config(resume=True), run)
    assert not run.exists()


def test_resume_with_other_model_config_names_file_and_keys(tmp_path: Path) -> None:
    Trainer(ToyModel(ToyConfig()), ToyLoader(), tiny_config(), tmp_path).fit()
    before = _snapshot(tmp_path)
    other = ToyModel(ToyConfig(hidden=32, dropout=0.1))
    with pytest.raises(ValueError) as info:
        Trainer(other, ToyLoader(), tiny_config(), tmp_path, resume=True)
    message = str(info.value)
    assert "000008/pretrained_model/config.json" in message
    assert "hidden (checkpoint 16, model 32)" in message and "dropout" in message
    assert "in_dim" not in message
    assert _snapshot(tmp_path) == before


def test_resume_with_corrupt_training_state_touches_nothing(tmp_path: Path) -> None:
    Trainer(ToyModel(ToyConfig()), ToyLoader(), tiny_config(), tmp_path).fit()
    state_file = tmp_path / "checkpoints" / "last" / "training_state" / "training_step.json"
    state_file.write_text(json.dumps({"step": "eight"}))
    model = ToyModel(ToyConfig(), init_seed=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="training_step.json"):
        Trainer(model, ToyLoader(), tiny_config(), tmp_path, resume=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fresh_run_refuses_a_directory_holding_a_run(tmp_path: Path) -> None:
    Trainer(ToyModel(ToyConfig()), ToyLoader(), tiny_config(), tmp_path).fit()
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match="already holds a run; resume it"):
        Trainer(ToyModel(ToyConfig()), ToyLoader(), tiny_config(), tmp_path)
    assert _snapshot(tmp_path) == before


def test_resume_refused_by_the_loader_or_optimizer_names_the_file(tmp_path: Path) -> None:
    Trainer(ToyModel(ToyConfig()), ToyLoader(), tiny_config(), tmp_path).fit()

    class OtherLoader(ToyLoader):
        def load_state_dict(self, state: dict) -> None:
            raise ValueError("loader state is for a split of 200 frames")

    with pytest.raises(ValueError, match=r"loader_state.json: the loader refused it: .*200"):
        Trainer(ToyModel(ToyConfig()), OtherLoader(), tiny_config(), tmp_path, resume=True)
    frozen = ToyModel(ToyConfig())
    frozen.net[0].requires_grad_(False)
    with pytest.raises(ValueError, match=r"optimizer_state.json: parameter groups of sizes"):
        Trainer(frozen, ToyLoader(), tiny_config(), tmp_path, resume=True)


# ------------------------------------------------------------------ crash at any instant


class SimulatedCrash(Exception):
    """The process "dies" here: raised by every patched file operation from the k-th on."""


def _real_checkpoint_writer(step: int, marker: int) -> Callable[[Path], None]:
    """Fills a checkpoint as the engine does: model files + a full training state."""

    def write(directory: Path) -> None:
        model = ToyModel(ToyConfig(), init_seed=marker)
        model.save_pretrained(directory / PRETRAINED_DIR)
        optimizer = torch.optim.AdamW(model.parameters())
        state = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": {"last_epoch": step},
            "rng": capture_rng_state(),
            "loader": {"marker": marker},
        }
        save_training_state(directory / TRAINING_STATE_DIR, state)

    return write


def _crash_from_call(monkeypatch: pytest.MonkeyPatch, k: int) -> list[str]:
    """Patch os.replace, os.symlink and shutil.rmtree so that their k-th call (1-based) and
    every later one raise SimulatedCrash: nothing after the crash point happens. The crashing
    rmtree first deletes one file, as a kill part-way through a deletion would. Returns the
    list of calls made."""
    calls: list[str] = []
    for module, name in ((os, "replace"), (os, "symlink"), (shutil, "rmtree")):
        real = getattr(module, name)

        def fake(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            if len(calls) < k:
                return _real(*args, **kwargs)
            if _name == "rmtree" and len(calls) == k:
                files = sorted(p for p in Path(args[0]).rglob("*") if p.is_file())
                if files:
                    files[0].unlink()
            raise SimulatedCrash(f"crash at call {len(calls)} ({_name})")

        monkeypatch.setattr(module, name, fake)
    return calls


def _assert_loadable(checkpoint: Path, step: int) -> None:
    config, weights = load_checkpoint_dir(checkpoint)
    assert config["hidden"] == 16 and "net.0.weight" in weights
    assert load_training_state(checkpoint / TRAINING_STATE_DIR)["step"] == step


def _setup_run(out: Path) -> None:
    write_checkpoint(out, 1, _real_checkpoint_writer(1, marker=1), keep_last=2)
    write_checkpoint(out, 2, _real_checkpoint_writer(2, marker=2), keep_last=2)


@pytest.mark.parametrize("step", [2, 3], ids=["re-save-same-step", "new-step-with-pruning"])
def test_a_crash_at_any_point_of_a_save_leaves_a_loadable_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: int
) -> None:
    # a clean run of the save under test counts the file operations it makes
    with monkeypatch.context() as patch:
        _setup_run(tmp_path / "count")
        calls = _crash_from_call(patch, k=10**9)
        write_checkpoint(tmp_path / "count", step, _real_checkpoint_writer(step, 7), keep_last=1)
    assert {"replace", "symlink"} <= set(calls)  # the crash points include the swap of `last`
    for k in range(1, len(calls) + 1):
        out = tmp_path / f"crash{k}"
        _setup_run(out)
        with monkeypatch.context() as patch:
            _crash_from_call(patch, k)
            with pytest.raises(SimulatedCrash):
                write_checkpoint(out, step, _real_checkpoint_writer(step, 7), keep_last=1)
        last = latest_checkpoint(out)
        assert last is not None, f"crash at call {k}: `last` names nothing"
        assert not last.name.startswith(".tmp-"), f"crash at call {k}: `last` names {last.name}"
        _assert_loadable(last, step=int(last.name.split(".")[0]))
        for directory in step_dirs(out):  # every step directory listed is complete
            _assert_loadable(directory, step=int(directory.name.split(".")[0]))
        # the next save cleans up after the crash
        write_checkpoint(out, 4, _real_checkpoint_writer(4, 8), keep_last=1)
        root = out / "checkpoints"
        leftovers = [p.name for p in root.iterdir() if p.name.startswith(".tmp-")]
        assert leftovers == [], f"crash at call {k}: {leftovers} left behind"
        assert sorted(p.name for p in root.iterdir()) == ["000004", "last"], f"crash at {k}"
        _assert_loadable(latest_checkpoint(out), step=4)


def test_a_config_key_added_after_the_checkpoint_is_no_difference_at_its_default():
    from nanovla.train.checkpoint import config_differences

    saved = {"width": 8}
    defaults = {"width": 4, "insertion": 0.0}
    assert config_differences({"width": 8, "insertion": 0.0}, saved, defaults) == []
    assert config_differences({"width": 8, "insertion": 0.3}, saved, defaults) == [
        "insertion (missing in checkpoint, model has 0.3)"
    ]
    assert config_differences({"width": 8, "insertion": 0.0}, saved) == [
        "insertion (missing in checkpoint, model has 0.0)"
    ]
