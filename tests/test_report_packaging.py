"""`pip install .` (not editable) works: the wheel holds every module and data file of the
package, installs into a fresh venv, and `python -m nanovla --help` runs from outside the repo
with the installed copy (not the source tree)."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "nanovla"


def _run(*command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=240, env=env
    )  # fmt: skip
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result.stdout


def _package_files() -> set[str]:
    """What the wheel must hold: every module and data file under src/nanovla (caches aside)."""
    return {
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the project (the shared source tree gets no build/)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))  # fmt: skip
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    out = root / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source), cwd=root)  # fmt: skip
    (built,) = out.glob("nanovla-*.whl")
    return built


def test_the_wheel_holds_every_module_and_data_file(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    missing = sorted(_package_files() - names)
    assert not missing, f"not in {wheel.name}: {missing[:20]}"
    assert {"nanovla/report/__init__.py", "nanovla/data/video.py", "nanovla/__main__.py"} <= names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        assert "nanovla = nanovla.cli:main" in archive.read(entry_points).decode()


def test_installed_wheel_runs_from_outside_the_repo(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv), cwd=tmp_path)  # fmt: skip
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel), cwd=tmp_path)  # fmt: skip
    # The dependencies come from this test's environment, added after the venv's own
    # site-packages (so the installed nanovla, not the editable source tree, is imported).
    site = Path(_run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip())  # fmt: skip
    (site / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"
    where = _run(str(python), "-c", "import nanovla; print(nanovla.__file__)", cwd=tmp_path, env=env)  # fmt: skip
    assert Path(where.strip()).is_relative_to(venv), where
    usage = _run(str(python), "-m", "nanovla", "--help", cwd=tmp_path, env=env)
    assert "report" in usage and "train" in usage and "collect" in usage
    report = _run(str(python), "-m", "nanovla", "report", "--help", cwd=tmp_path, env=env)
    assert "RUN/report.html" in report
    script = _run(str(venv / "bin" / "nanovla"), "--version", cwd=tmp_path, env=env)
    assert script.startswith("nanovla ")
