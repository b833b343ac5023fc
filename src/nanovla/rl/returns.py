"""Returns and advantages over (T, N) rollouts: reward-to-go and GAE(lambda).

Both walk the T steps backwards once, vectorized over the N envs. `dones[t]` is 1 where the
episode ended *on* step t (terminated or truncated), so nothing flows back across it.

- `reward_to_go` (REINFORCE): G_t = r_t + gamma (1 - done_t) G_{t+1}, G_T = 0: the discounted
  sum of the rewards from t to the end of t's episode (Sutton & Barto 2018, eq. 13.8).
- `gae` (PPO): delta_t = r_t + gamma (1 - done_t) V(s_{t+1}) - V(s_t),
  A_t = delta_t + gamma lambda (1 - done_t) A_{t+1}; returns R_t = A_t + V(s_t) are the value
  targets (Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized
  Advantage Estimation", https://arxiv.org/abs/1506.02438, eq. 16). V(s_{t+1}) is `values[t+1]`,
  `last_value` after the last step. A time-limit truncation is not a terminal state: the caller
  adds gamma V(final observation) to that step's reward (as SB3 does) before calling, so the
  `dones` cut here only stops the sum at the episode boundary.
"""

from __future__ import annotations

import torch


def reward_to_go(rewards: torch.Tensor, dones: torch.Tensor, gamma: float) -> torch.Tensor:
    """(T, N) discounted reward-to-go of rewards (T, N), episodes ending where dones (T, N)."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        running = rewards[t] + gamma * (1.0 - dones[t]) * running
        returns[t] = running
    return returns


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns), both (T, N), of rewards / values / dones (T, N) and the value of
    the observation after the last step, last_value (N,)."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(rewards.shape[0])):
        alive = 1.0 - dones[t]
        delta = rewards[t] + gamma * alive * next_value - values[t]
        running = delta + gamma * lam * alive * running
        advantages[t] = running
        next_value = values[t]
    return advantages, advantages + values
