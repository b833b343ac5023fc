"""`nanovla world show|demo` end to end with tiny settings."""

import subprocess
import sys

import imageio.v3 as iio
import pytest

from nanovla.cli import main as nanovla
from nanovla.world.cli import main


def test_show_writes_png_and_prints_both_languages(tmp_path):
    out = tmp_path / "scene.png"
    argv = ["world", "show", "--task", "pick_place", "--seed", "3", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "nanovla.cli", *argv], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert out.exists() and iio.imread(out).ndim == 3
    assert "english:" in result.stdout and "korean:" in result.stdout
    korean_line = next(line for line in result.stdout.splitlines() if line.startswith("korean:"))
    assert any("\uac00" <= ch <= "\ud7a3" for ch in korean_line)


def test_demo_writes_gif_of_solved_episodes(tmp_path, capsys):
    out = tmp_path / "demo.gif"
    assert main(["demo", "--task", "reach", "--episodes", "2", "--out", str(out)]) == 0
    frames = iio.imread(out)
    assert frames.shape[0] > 4 and frames.shape[2] >= 64 * 4
    assert "2/2 episodes solved" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["show", "--out", "scene.jpg"], "--out"),
        (["show", "--task", "fly"], "tasks"),
        (["show", "--image-size", "8"], "image_size"),
        (["demo", "--episodes", "0"], "--episodes"),
    ],
)
def test_bad_input_is_one_line_error(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert nanovla(["world", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nanovla world: error:") and message in err and "\n" not in err


def test_help_explains_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    assert "nearest-neighbour upscaling" in capsys.readouterr().out
