"""The report in a real browser: a tiny `nanovla train` writes RUN/report.html at its end, headless
Chromium (Debian's `chromium`; scripts/setup.sh installs it where apt-get is usable) loads it
from disk with the network off, and the screenshot must be non-blank and the DOM must hold the
success table's cells."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cli_run import nanovla
from PIL import Image

TINY_TRAIN = (
    "--episodes", "12", "--collect-envs", "6", "--batch-size", "16", "--val-fraction", "0.2",
    "--train.steps", "4", "--train.warmup-steps", "1", "--train.log-every", "1",
    "--train.eval-every", "2", "--eval-every-episodes", "1", "--train.num-threads", "1",
    "--no-progress", "--eval.episodes", "2", "--eval.gifs", "2", "--tasks", "reach", "push",
)  # fmt: skip
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """A headless-capable Chromium: $NANOVLA_CHROMIUM, else the first of BROWSERS on PATH."""
    given = os.environ.get("NANOVLA_CHROMIUM")
    if given:
        return shutil.which(given)
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def chromium(browser: str, page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium on the file `page` (no sandbox: CI runs as root; no network)."""
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--hide-scrollbars", f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9",
        "--window-size=1200,2600", *args, page.resolve().as_uri(),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def browser() -> str:
    found = find_browser()
    if found is None:
        pytest.skip(
            "no Chromium on PATH (tried " + ", ".join(BROWSERS) + "): `apt-get install chromium`"
            " (bash scripts/setup.sh does it where apt-get is usable), or set NANOVLA_CHROMIUM"
        )
    return found


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    result = nanovla("train", "--out", "run", *TINY_TRAIN, cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "train: wrote run/report.html" in result.stdout
    return root / "run" / "report.html"


def test_the_page_loads_in_chromium_with_its_table(browser, report, tmp_path):
    result = chromium(browser, report, tmp_path / "profile", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    table = re.search(r'<table id="success-table">.*?</table>', dom, re.S)
    assert table, dom[:2000]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", table.group(0), re.S)
    assert {"seen", "heldout", "ko"} <= set(cells)
    assert any(re.fullmatch(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\]", c) for c in cells), cells
    assert any(re.fullmatch(r"\d+/4", c) for c in cells), cells  # 2 episodes x 2 families


def test_the_screenshot_is_not_blank(browser, report, tmp_path):
    shot = tmp_path / "report.png"
    result = chromium(browser, report, tmp_path / "profile", f"--screenshot={shot}")
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float32)
    assert pixels.shape[:2] == (2600, 1200)
    assert pixels.std() > 20  # a blank or failed page is one flat color
    # the embedded curves and GIFs drew: pixels of strong color (text and tables are gray)
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    assert (saturation > 40).mean() > 0.003
    # text and images down the page, not only a header
    rows_with_ink = (pixels.min(axis=(1, 2)) < 128).reshape(26, 100).any(axis=1)
    assert rows_with_ink.sum() >= 15


def test_a_missing_outcome_is_re_run_from_the_checkpoint(report, tmp_path):
    """The tiny policy fails everything: with its GIFs gone, the report re-runs the evaluation
    episodes and writes the first failure of each family again: the same scene (first frame)
    and outcome (the weights loaded from the checkpoint may act a float's noise apart from the
    trained ones in memory, so the frames after the first need not be equal)."""
    import json

    from nanovla.report import build_report
    from nanovla.report.rollouts import first_frame

    run = tmp_path / "run"
    shutil.copytree(report.parent, run, symlinks=True)
    originals = {p.name: first_frame(p) for p in (run / "videos").glob("*_failure.gif")}
    assert {"reach_0_failure.gif", "push_0_failure.gif"} <= set(originals)
    for path in (run / "videos").glob("*.gif"):
        path.unlink()
    page, summary = build_report(run)
    for name in ("reach_0_failure.gif", "push_0_failure.gif"):
        np.testing.assert_array_equal(first_frame(run / "videos" / name), originals[name])
    assert page.count("data:image/gif;base64,") == 2
    assert not [line for line in summary.missing if "re-running" in line]
    # an eval.json the checkpoint does not reproduce gets no look-alike GIF, and says so
    result = json.loads((run / "eval.json").read_text())
    result["splits"]["seen"]["per_task"]["reach"] = 0.5
    (run / "eval.json").write_text(json.dumps(result))
    (run / "videos" / "reach_0_failure.gif").unlink()
    _, summary = build_report(run)
    assert not (run / "videos" / "reach_0_failure.gif").exists()
    assert any("reach: re-running the evaluation" in line and "0/2" in line and "1/2" in line for line in summary.missing)  # fmt: skip
