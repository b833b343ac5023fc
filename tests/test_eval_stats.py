import math

import numpy as np
import pytest

from nanovla.eval.stats import wilson_interval
from nanovla.eval.video import upscale, write_video


def _wilson_reference(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    # Independent form: roots of (p - phat)^2 = z^2 p (1 - p) / n.
    phat = k / n
    a = 1 + z * z / n
    b = -(2 * phat + z * z / n)
    c = phat * phat
    disc = math.sqrt(b * b - 4 * a * c)
    return (-b - disc) / (2 * a), (-b + disc) / (2 * a)


@pytest.mark.parametrize("k,n", [(0, 50), (50, 50), (47, 50), (1, 3), (25, 50), (7, 200)])
def test_wilson_matches_the_quadratic_roots(k, n):
    lo, hi = wilson_interval(k, n)
    ref_lo, ref_hi = _wilson_reference(k, n)
    assert lo == pytest.approx(max(ref_lo, 0.0), abs=1e-12)
    assert hi == pytest.approx(min(ref_hi, 1.0), abs=1e-12)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_known_value():
    # 47/50: a textbook value of the 95% Wilson interval.
    lo, hi = wilson_interval(47, 50)
    assert lo == pytest.approx(0.8378, abs=1e-4) and hi == pytest.approx(0.9794, abs=1e-4)


def test_wilson_never_collapses_at_the_edges():
    lo, hi = wilson_interval(50, 50)
    assert hi == 1.0 and lo < 0.95


@pytest.mark.parametrize("k,n", [(1, 0), (-1, 10), (11, 10)])
def test_wilson_rejects_bad_counts(k, n):
    with pytest.raises(ValueError, match="episodes|successes"):
        wilson_interval(k, n)


def test_video_upscale_and_write(tmp_path):
    frames = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    frames[:, 2, 3] = 255
    big = upscale(frames, 4)
    assert big.shape == (3, 32, 32, 3) and big[0, 8:12, 12:16].min() == 255
    path = write_video(frames, tmp_path / "clip.gif", scale=2, caption="reach the red box")
    assert path.is_file() and not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(ValueError, match="gif or .mp4"):
        write_video(frames, tmp_path / "clip.avi")
