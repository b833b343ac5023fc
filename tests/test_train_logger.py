"""The logger's optional dependencies: TensorBoard and matplotlib missing give one line naming
the extra to install, and training still completes (JSONL is always written)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_train_engine import ToyConfig, ToyLoader, ToyModel, tiny_config

from nanovla.train import MetricsLogger, Trainer, plot_loss, read_metrics
from nanovla.train import logger as logger_module


@pytest.fixture
def fresh_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget which optional-dependency notes this process has already printed."""
    monkeypatch.setattr(logger_module, "_said", set(), raising=False)


def _block_import(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """`import <module>` raises ImportError (a None entry in sys.modules does that)."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_missing_tensorboard_says_so_once_and_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, fresh_notes
) -> None:
    _block_import(monkeypatch, "torch.utils.tensorboard")
    with MetricsLogger(tmp_path, tensorboard=True) as log:
        log.log(1, {"train/loss": 0.5})
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "TensorBoard logging is off" in lines[0]
    assert "pip install 'nanovla[tensorboard]'" in lines[0]
    assert read_metrics(tmp_path / "logs" / "metrics.jsonl") == [{"step": 1, "train/loss": 0.5}]
    assert not list((tmp_path / "logs").glob("events.out.tfevents.*"))
    with MetricsLogger(tmp_path / "again", tensorboard=True):
        pass
    assert capsys.readouterr().err == ""  # once per process


def test_tensorboard_off_prints_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, fresh_notes
) -> None:
    _block_import(monkeypatch, "torch.utils.tensorboard")
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        log.log(1, {"train/loss": 0.5})
    assert capsys.readouterr().err == ""


def test_missing_matplotlib_skips_the_plot_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, fresh_notes
) -> None:
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        log.log(2, {"train/loss": 0.5, "train/lr": 1e-3})
    _block_import(monkeypatch, "matplotlib", "matplotlib.pyplot")
    png = tmp_path / "plots" / "loss.png"
    assert plot_loss(tmp_path / "logs" / "metrics.jsonl", png) is None
    assert not png.exists()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "pip install 'nanovla[plots]'" in lines[0]
    assert "loss plot skipped" in lines[0]


def test_training_without_matplotlib_completes_without_a_plot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, fresh_notes
) -> None:
    _block_import(monkeypatch, "matplotlib", "matplotlib.pyplot")
    result = Trainer(ToyModel(ToyConfig()), ToyLoader(), tiny_config(), tmp_path).fit()
    assert result["step"] == 8.0
    assert (tmp_path / "checkpoints" / "last").is_symlink()
    assert not (tmp_path / "plots" / "loss.png").exists()
    assert "nanovla[plots]" in capsys.readouterr().err


def test_importing_the_engine_does_not_import_matplotlib() -> None:
    code = "import sys, nanovla.train; assert 'matplotlib' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
