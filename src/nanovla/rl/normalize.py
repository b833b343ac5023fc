"""Running observation and reward normalization, as SB3's VecNormalize and gymnasium's
NormalizeObservation / NormalizeReward do it.

- `RunningMeanStd`: mean and variance of everything seen so far, merged batch by batch with the
  parallel form of Welford's algorithm (Chan, Golub & LeVeque 1979,
  https://doi.org/10.1007/978-3-642-51461-6_3): for the old (mean m_a, var v_a, count n_a) and a
  batch (m_b, v_b, n_b), n = n_a + n_b, delta = m_b - m_a, m = m_a + delta n_b / n,
  M2 = v_a n_a + v_b n_b + delta^2 n_a n_b / n, v = M2 / n. It is an `nn.Module` whose float64
  buffers travel in the policy's `model.safetensors`, so a saved policy normalizes its inputs
  exactly as in training.
- `normalize(x) = clip((x - mean) / sqrt(var + eps), -clip, clip)`.
- `RewardScaler`: rewards are divided by the standard deviation of the discounted return
  R_t = gamma R_{t-1} + r_t (reset where an episode ends), not centred; this keeps the sign of
  the reward and the relative size of the advantages (Engstrom et al. 2020, "Implementation
  Matters in Deep Policy Gradients", https://arxiv.org/abs/2005.12729, section 3). Its state
  (statistics and the running returns of each env) goes into the training state, since only
  training uses it.

Departures: the statistics start at count eps = 1e-4 with mean 0 and variance 1 (as SB3), so
the first normalized batch is finite; the running statistics are updated only while training
(`update` is called by the algorithm, never by `normalize`), so evaluation and resume leave
them untouched.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

EPS = 1e-8
"""added to the variance before the square root"""
INITIAL_COUNT = 1e-4
"""the pseudo-count the statistics start from (mean 0, variance 1)"""


class RunningMeanStd(nn.Module):
    """Running mean and variance over the leading (batch) dimension of inputs of `shape`."""

    def __init__(self, shape: tuple[int, ...] = (), clip: float = 10.0) -> None:
        super().__init__()
        self.clip = float(clip)
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(INITIAL_COUNT, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge the batch `x` (B, *shape) into the statistics (parallel Welford)."""
        x = x.detach().to(torch.float64).reshape(-1, *self.mean.shape)
        batch_mean = x.mean(0)
        batch_var = x.var(0, unbiased=False)
        n_b = float(x.shape[0])
        n_a = self.count.clone()
        total = n_a + n_b
        delta = batch_mean - self.mean
        m2 = self.var * n_a + batch_var * n_b + delta * delta * n_a * n_b / total
        self.mean.add_(delta * n_b / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / sqrt(var + eps), clipped to [-clip, clip], in x's dtype."""
        scaled = (x.to(torch.float64) - self.mean) / torch.sqrt(self.var + EPS)
        return scaled.clamp(-self.clip, self.clip).to(x.dtype)

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        """The inverse of `normalize` inside the clip range: y sqrt(var + eps) + mean."""
        return (y.to(torch.float64) * torch.sqrt(self.var + EPS) + self.mean).to(y.dtype)


class RewardScaler:
    """Divides rewards by the running std of each env's discounted return (not centred)."""

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0) -> None:
        self.gamma = float(gamma)
        self.stats = RunningMeanStd((), clip)
        self.returns = np.zeros(num_envs, dtype=np.float64)

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """Update with this step's rewards (N,) and return them scaled; `dones` (N,) (the
        episode ended on this step) restart the discounted returns after the update."""
        self.returns = self.returns * self.gamma + rewards
        self.stats.update(torch.from_numpy(self.returns))
        self.returns[dones] = 0.0
        scale = float(torch.sqrt(self.stats.var + EPS))
        return np.clip(rewards / scale, -self.stats.clip, self.stats.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        """Statistics and running returns (exact: float64)."""
        return {
            "mean": self.stats.mean.clone(),
            "var": self.stats.var.clone(),
            "count": self.stats.count.clone(),
            "returns": self.returns.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back what `state_dict` returned."""
        self.stats.mean.copy_(state["mean"])
        self.stats.var.copy_(state["var"])
        self.stats.count.copy_(state["count"])
        self.returns = np.array(state["returns"], dtype=np.float64)
