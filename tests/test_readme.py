"""The README cannot drift: every command of its tour and its Python snippet run here.

The tour's commands are taken from the README as written and run in order in one scratch
directory (later ones use what earlier ones made), each with tiny settings appended (for
options given twice the last one wins), through `python -m nanovla.cli` instead of the
activated venv's `nanovla`. Then the README's Python snippet runs in that directory.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}

TINY_TRAIN = (
    "--episodes", "12", "--collect-envs", "6", "--batch-size", "16", "--train.steps", "4",
    "--train.warmup-steps", "1", "--train.log-every", "2", "--train.eval-every", "2",
    "--eval-every-episodes", "1", "--train.num-threads", "1", "--eval.episodes", "2",
    "--eval.gifs", "1", "--tasks", "reach", "push",
)  # fmt: skip
TINY_TRANSLATE = (
    "--train-size", "200", "--eval-size", "8", "--steps", "20", "--d-model", "32", "--heads", "2",
    "--layers", "1", "--d-ff", "64", "--warmup", "5", "--beam-size", "2", "--threads", "1",
)  # fmt: skip
TINY_METAWORLD = (
    "--tasks", "reach-v3", "--episodes", "1", "--max-steps", "60", "--eval-episodes", "1",
    "--train.steps", "10", "--batch-size", "16", "--noise", "0", "--no-expert-baseline",
)  # fmt: skip
TINY_CLIP = (
    "--steps", "3", "--warmup-steps", "1", "--batch-size", "16", "--train-images", "64",
    "--eval-images", "20", "--gallery", "12", "--threads", "1",
)  # fmt: skip
TINY_DETECT = (
    "--train-frames", "16", "--test-frames", "8", "--image-size", "32", "--epochs", "1",
    "--batch-size", "8", "--widths", "4", "8", "8", "8", "--fpn-width", "8", "--num-envs", "8",
    "--latency-repeats", "2", "--threads", "1", "--onnx-exporter", "torchscript",
)  # fmt: skip
TINY_MEMORY = (
    "--model", "vit_tiny_patch16_224", "--img-size", "32", "--batch-size", "2", "--steps", "1",
    "--variants", "fp32", "fp32+ckpt", "--threads", "1",
)  # fmt: skip
TINY: dict[str, tuple[str, ...]] = {
    "world show": (),
    "world demo": ("--episodes", "1"),
    "collect": ("--episodes", "6", "--num-envs", "3"),
    "train": TINY_TRAIN,
    "train --resume": ("--train.steps", "6"),
    "eval": ("--eval.episodes", "2"),
    "report": (),
    "lab classify": ("--epochs", "1", "--train-limit", "200"),
    "irl": ("--demos", "40", "--episodes", "20", "--known-demos", "40"),
    "metaworld": TINY_METAWORLD,
    "lab translate": TINY_TRANSLATE,
    "lab clip": TINY_CLIP,
    "lab detect": TINY_DETECT,
    "lab memory": TINY_MEMORY,
    "translate": (),
}
"""tiny settings appended to each kind of tour command"""


def _block(heading: str, language: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"README: no ```{language} block after {heading!r}"
    return match.group(1)


def tour_commands() -> list[list[str]]:
    """The `nanovla ...` lines of the README's tour, as argument lists."""
    commands = []
    for line in _block("## A tour", "bash").splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "nanovla":
            commands.append(words[1:])
    return commands


def _kind(args: list[str]) -> str:
    if args[0] == "train":
        return "train --resume" if "--resume" in args else "train"
    if args[0] in ("world", "lab"):
        return f"{args[0]} {args[1]}"
    return args[0]


def test_the_tour_tells_how_to_get_nanovla_on_the_path():
    tour = _block("## A tour", "bash")
    assert "source .venv/bin/activate" in tour
    assert len(tour_commands()) >= 6


def test_every_readme_command_and_the_python_snippet_run(tmp_path):
    for args in tour_commands():
        kind = _kind(args)
        assert kind in TINY, f"README command {args} has no tiny settings in this test"
        result = subprocess.run(
            [sys.executable, "-m", "nanovla.cli", *args, *TINY[kind]],
            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, f"nanovla {' '.join(args)}:\n{result.stderr[-3000:]}"
    leftovers = {p.name for p in tmp_path.iterdir()} - {"outputs", "runs", "data"}
    assert not leftovers, f"the tour left files outside outputs/, runs/, data/: {leftovers}"
    snippet = _block("In Python", "python")
    result = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("command", ["bash scripts/setup.sh", "bash scripts/test.sh"])
def test_the_two_commands_exist(command):
    text = README.read_text(encoding="utf-8")
    assert command in text
    assert (README.parent / command.split()[1]).is_file()
