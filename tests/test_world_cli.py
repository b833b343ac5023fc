"""`nanovla world show|demo` end to end with tiny settings."""

import shutil
import subprocess
import sys
from pathlib import Path

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


def test_default_outputs_go_under_an_ignored_outputs_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["show", "--task", "reach", "--seed", "2"]) == 0
    assert main(["demo", "--task", "reach", "--episodes", "1", "--seed", "5"]) == 0
    assert "wrote outputs/scene-reach-2.png" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]  # nothing else in the cwd
    names = sorted(p.name for p in (tmp_path / "outputs").iterdir())
    assert names == ["demo-reach-5.gif", "scene-reach-2.png"]


def test_gitignore_covers_the_outputs_dir():
    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    for path in ("outputs/scene-reach-2.png", "outputs/demo-sort-0.gif"):
        check = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", path], timeout=30)
        assert check.returncode == 0, f"{path} is not ignored by .gitignore"


def test_missing_matplotlib_names_the_extra_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    assert nanovla(["world", "show", "--out", str(tmp_path / "scene.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pip install 'nanovla[plots]'" in err
    assert not (tmp_path / "scene.png").exists()
    from nanovla.errors import InputError
    from nanovla.labs.common import pyplot

    with pytest.raises(InputError, match=r"pip install 'nanovla\[labs\]'"):
        pyplot()


@pytest.mark.parametrize(
    "command, default",
    [("show", "outputs/scene-<task>-<seed>.png"), ("demo", "outputs/demo-<task>-<seed>.gif")],
)
def test_help_shows_the_one_default_of_out(command, default, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out_line = next(line for line in capsys.readouterr().out.splitlines() if "--out" in line)
    assert f"(default: {default})" in out_line and "(default: None)" not in out_line
