"""Action distributions of the RL policies: categorical, diagonal Gaussian, tanh-squashed Gaussian.

Each is a small class with one face (`sample`, `log_prob`, `entropy`, `mode`), written out so
that the formulas are on the page (torch.distributions gives the same numbers; the tests check
it, and these skip its argument validation and broadcasting, which cost time in the rollout loop):

- `Categorical(logits)`: discrete actions. log pi(a) = log_softmax(logits)[a],
  H = -sum_a p(a) log p(a).
- `DiagGaussian(mean, log_std)`: continuous actions, independent per dimension.
  log N(u; mu, s) = -((u - mu)^2 / (2 s^2)) - log s - log(2 pi) / 2, summed over dimensions;
  H = sum (1/2 + log(2 pi)/2 + log s). The action given to the env is the sample *clipped*
  to the action box (CleanRL's and SB3's default): the log-probability is that of the
  unclipped sample, which is what was drawn, so the policy gradient stays unbiased, but the
  env sees the same action for every sample beyond a bound.
- `TanhGaussian(mean, log_std)`: the sample u ~ N(mu, s) is squashed, a = tanh(u), so every
  action lies inside (-1, 1) (then scaled affinely to the box). By the change of variables
  p(a) = N(u) / |det da/du| = N(u) / prod (1 - tanh(u)^2), so
  log p(a) = log N(u) - sum log(1 - tanh(u)^2), with the stable form
  log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)) (as in SAC, Haarnoja et al. 2018,
  https://arxiv.org/abs/1801.01290, appendix C). The constant log-determinant of the affine
  scaling to the box is left out: it cancels in every ratio and gradient.

Departures: the rollout stores the raw sample u (not the squashed action), so `log_prob` never
takes atanh of an action at the boundary; `TanhGaussian.entropy` returns the entropy of the
Gaussian before squashing (the squashed one has no closed form; an entropy *bonus* on u is what
SB3 also uses when no estimate is given); the deterministic action of a `TanhGaussian` is
tanh(mu) (`mode` returns the raw mu, squashed like every raw sample), the mode of u squashed,
not the mode of the squashed density.

Policy gradient background: Williams (1992) REINFORCE, https://doi.org/10.1007/BF00992696.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
LOG_2 = math.log(2.0)


class Categorical:
    """A batch of categorical distributions over `logits.shape[-1]` actions."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.log_p = torch.log_softmax(logits, dim=-1)

    def sample(self) -> torch.Tensor:
        """(B,) int64 action indices drawn with torch's global RNG."""
        return torch.multinomial(self.log_p.exp(), 1).squeeze(-1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """(B,) log pi(a) of integer actions (B,)."""
        return self.log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> torch.Tensor:
        """(B,) -sum_a p(a) log p(a)."""
        return -(self.log_p.exp() * self.log_p).sum(-1)

    def mode(self) -> torch.Tensor:
        """(B,) the most probable action."""
        return self.log_p.argmax(-1)


class DiagGaussian:
    """A batch of diagonal Gaussians N(mean, exp(log_std)^2) over (B, D) actions."""

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor) -> None:
        self.mean = mean
        self.log_std = log_std.expand_as(mean)
        self.std = self.log_std.exp()

    def sample(self) -> torch.Tensor:
        """(B, D) raw samples u = mean + std * eps, eps ~ N(0, I)."""
        return self.mean + self.std * torch.randn_like(self.mean)

    def gaussian_log_prob(self, u: torch.Tensor) -> torch.Tensor:
        """(B,) log N(u; mean, std) summed over dimensions."""
        z = (u - self.mean) / self.std
        return (-0.5 * z * z - self.log_std - LOG_SQRT_2PI).sum(-1)

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        """(B,) log-density of the raw samples `u` (what was drawn, before any clipping)."""
        return self.gaussian_log_prob(u)

    def entropy(self) -> torch.Tensor:
        """(B,) sum over dimensions of 1/2 + log(2 pi)/2 + log std."""
        return (0.5 + LOG_SQRT_2PI + self.log_std).sum(-1)

    def mode(self) -> torch.Tensor:
        """(B, D) the mean."""
        return self.mean


def tanh_log_det(u: torch.Tensor) -> torch.Tensor:
    """log(1 - tanh(u)^2), elementwise, in the form that does not underflow for large |u|."""
    return 2.0 * (LOG_2 - u - F.softplus(-2.0 * u))


class TanhGaussian(DiagGaussian):
    """N(mean, std) over raw u, squashed by tanh: the density of a = tanh(u) in (-1, 1)^D."""

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        """(B,) log p(tanh(u)) = log N(u) - sum log(1 - tanh(u)^2) (the change of variables)."""
        return self.gaussian_log_prob(u) - tanh_log_det(u).sum(-1)

    def mode(self) -> torch.Tensor:
        """(B, D) the raw mean (squashed by the policy's `env_action`, like every raw sample)."""
        return self.mean
