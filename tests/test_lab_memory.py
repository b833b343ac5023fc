"""`nanovla lab memory`: gradient checkpointing lowers the measured peak and changes no number;
the table, metrics.json, the plot and the profiler tables are written; bad options are refused.

Tiny settings: ViT-Ti/16 at 96 px, batch 16 (activations then outweigh parameters, gradients
and AdamW state, as they do at 224 px), one timed step per variant.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nanovla.errors import InputError
from nanovla.labs import cli as labs_cli
from nanovla.labs.memory import MemoryConfig, run

TINY = dict(model="vit_tiny_patch16_224", img_size=96, batch_size=16, steps=1, threads=1)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("lab-memory")
    config = MemoryConfig(out=out, device="cpu", variants=("fp32", "fp32+ckpt"), **TINY)
    return {"out": out, "metrics": run(config)}


def test_checkpointing_lowers_the_peak_and_keeps_the_loss(lab: dict) -> None:
    plain, ckpt = lab["metrics"]["variants"]["fp32"], lab["metrics"]["variants"]["fp32+ckpt"]
    assert ckpt["peak_mib"] < 0.8 * plain["peak_mib"]
    assert plain["activations"] > 4 * ckpt["activations"]
    assert ckpt["first_loss"] == plain["first_loss"]  # recomputation gives the same forward
    params_mib = 5_495_626 * 4 / 2**20  # ViT-Ti/16 with a 10-class head at 96 px, fp32
    assert plain["parameters"] == pytest.approx(params_mib, rel=0.01)
    assert plain["optimizer"] == pytest.approx(2 * params_mib, rel=0.01)  # AdamW: 2 moments


def test_outputs_are_written(lab: dict, capsys: pytest.CaptureFixture) -> None:
    out: Path = lab["out"]
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved["variants"]) == {"fp32", "fp32+ckpt"} and saved["device"] == "cpu"
    assert saved["config"]["model"] == "vit_tiny_patch16_224"
    png = (out / "memory.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    table = (out / "profile_fp32.txt").read_text()
    assert "Self CPU Mem" in table and "aten::" in table


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"variants": ("fp8",)}, "--variants: unknown"),
        ({"model": "no_such_model"}, "--model 'no_such_model'"),
        ({"batch_size": 0}, "--batch-size"),
    ],
)
def test_bad_options_are_refused_by_name(tmp_path: Path, change: dict, message: str) -> None:
    config = MemoryConfig(out=tmp_path / "out", **{**TINY, **change})
    with pytest.raises(InputError, match=message):
        run(config)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_registered_with_its_options(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        labs_cli.main(["memory", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--model", "--img-size", "--batch-size", "--variants", "--device"):
        assert option in help_text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_is_the_allocator_peak(tmp_path: Path) -> None:
    config = MemoryConfig(out=tmp_path, device="cuda", variants=("fp32", "bf16+ckpt"), **TINY)
    variants = run(config)["variants"]
    for row in variants.values():
        assert row["peak_mib"] > row["static"] > 0
    assert variants["bf16+ckpt"]["peak_mib"] < variants["fp32"]["peak_mib"]
