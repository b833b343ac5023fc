"""Success statistics: a success rate is reported with its episode count and a 95% Wilson interval.

The Wilson score interval (Wilson, 1927) stays inside [0, 1] and keeps sensible width at 0% and
100%, where the normal-approximation interval collapses to a point — exactly where a policy
evaluated on 50 episodes often sits.
"""

from __future__ import annotations

import math

from nanovla.errors import InputError


def wilson_interval(
    successes: int, episodes: int, z: float = 1.959963984540054
) -> tuple[float, float]:
    """95% (by default) Wilson score interval for `successes` out of `episodes` trials.

    center = (p + z²/2n) / (1 + z²/n),  half = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)
    """
    if episodes < 1:
        raise InputError(f"episodes must be >= 1 for a confidence interval, got {episodes}")
    if not 0 <= successes <= episodes:
        raise InputError(f"successes must be in [0, episodes={episodes}], got {successes}")
    p = successes / episodes
    z2 = z * z
    denominator = 1.0 + z2 / episodes
    center = (p + z2 / (2 * episodes)) / denominator
    half = z * math.sqrt(p * (1 - p) / episodes + z2 / (4 * episodes * episodes)) / denominator
    # At 0 and n successes one bound is exactly 0 or 1; floating point would leave ~1e-17.
    lo = 0.0 if successes == 0 else max(0.0, center - half)
    hi = 1.0 if successes == episodes else min(1.0, center + half)
    return lo, hi
