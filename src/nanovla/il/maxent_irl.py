"""Maximum-entropy inverse reinforcement learning on a grid abstraction of the tabletop.

Paper: Ziebart, Maas, Bagnell & Dey, "Maximum Entropy Inverse Reinforcement Learning", AAAI 2008,
https://cdn.aaai.org/AAAI/2008/AAAI08-227.pdf (soft value iteration as in Ziebart's 2010 thesis;
the MLP reward as in Wulfmeier, Ondruska & Posner 2015, https://arxiv.org/abs/1507.04888).

What lives where: the discrete MDP of reach / push (cells, state indexing, transitions, named
state features phi(s)), the experts' discretized trajectories and the execution of a plan in the
continuous world are `irl_grid`; the `nanovla irl` command (irl.json, reward.png) is
`irl_command`. This file is the algorithm, read top to bottom:

1. The reward is r(s) = w . phi(s) (`reward="linear"`), or a small MLP of phi(s)
   (`reward="mlp"`), over the grid MDP's features (`irl_grid.build_mdp`).
2. `soft_value_iteration`: exact finite-horizon soft Bellman backups over every state at once,
   V_t(s) = logsumexp_a [r(s) + V_{t+1}(s'(s, a))], V_{T-1} = r; the MaxEnt policy is
   pi_t(a|s) = exp(Q_t(s, a) - V_t(s)).
3. `state_visitation`: the forward pass, D_{t+1}(s') = sum_{s,a} D_t(s) pi_t(a|s) [s'(s,a)=s'],
   from the demonstrations' start distribution; expected feature counts = sum_t D_t . phi.
4. `fit_reward`: maximize the demonstrations' log-likelihood w . mu_E - sum_s D_0(s) V_0(s)
   (exact for deterministic MDPs), whose gradient is mu_E - E_pi[phi] (expert feature counts
   minus expected feature counts), with torch's L-BFGS (linear) or Adam (MLP). The
   demonstrations are the world's scripted expert discretized (`irl_grid.expert_demonstrations`).
5. `greedy_policy`: the recovered reward's optimal policy (greedy in the soft Q_0, the longest
   look-ahead), which `irl_grid.world_success` executes in the world on the evaluation scenes
   `nanovla eval` uses.
6. `known_reward_check`: demonstrations sampled from the MaxEnt policy of a known true reward on
   the same MDP (`sample_demonstrations`), to measure whether the fit recovers it (feature
   match, reward correlation).

Departures from the seed's `MaximumEntropyIRL` sketch (which keeps `nn.Linear(state_dim, 1)`,
computes "an optimal policy", samples trajectories from it and steps the weights by the feature
difference): the reward is linear in named features of a discrete abstraction (an MLP of those
features is the option), because exact soft value iteration needs an enumerable state space; the
expected feature counts come from the exact forward pass over state-visitation frequencies, not
from sampled trajectories (no sampling noise in the gradient); the policy is the MaxEnt (soft)
policy, not a hard-optimal one, since that is what makes the gradient mu_E - E[phi] exact; the
weights are fitted by L-BFGS on the exact log-likelihood rather than by fixed-step ascent; and
the learned reward is checked by planning with it in the continuous world, not just printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nanovla.errors import InputError
from nanovla.il.irl_grid import MOVES, Demonstrations, GridMDP
from nanovla.progress import progress

KNOWN_WEIGHTS = {
    "reach": {"gripper_to_target": -2.0, "at_target": 1.0},
    "push": {
        "object_to_zone": -3.0,
        "in_zone": 1.0,
        "gripper_to_object": -1.0,
        "object_at_wall": -0.5,
    },
}
"""the true rewards of the known-reward check (`known_reward_check`)"""


# ----------------------------------------------------------------------------- 2-3. soft VI
def _logsumexp(q: np.ndarray) -> np.ndarray:
    top = q.max(axis=1)
    return top + np.log(np.exp(q - top[:, None]).sum(axis=1))


def soft_value_iteration(reward: np.ndarray, next_state: np.ndarray, horizon: int) -> np.ndarray:
    """(T, S) soft values V_t(s) = log sum over the T - t step action sequences from s of
    exp(sum of rewards along them), for reward (S,), next_state (S, A), horizon T."""
    values = np.empty((horizon, reward.shape[0]))
    values[-1] = reward
    for t in range(horizon - 2, -1, -1):
        values[t] = _logsumexp(reward[:, None] + values[t + 1][next_state])
    return values


def soft_policy(
    reward: np.ndarray, next_state: np.ndarray, values: np.ndarray, t: int
) -> np.ndarray:
    """(S, A) MaxEnt policy pi_t(a|s) = exp(Q_t(s, a) - V_t(s)) for t < T - 1."""
    q = reward[:, None] + values[t + 1][next_state]
    return np.exp(q - values[t][:, None])


def state_visitation(
    reward: np.ndarray, next_state: np.ndarray, values: np.ndarray, start: np.ndarray
) -> np.ndarray:
    """(S,) expected visits sum_t D_t(s) under the MaxEnt policy from the start distribution
    `start` (S,) over the horizon of `values` (T, S)."""
    num_states = next_state.shape[0]
    density, visits = start.astype(np.float64), start.astype(np.float64)
    flat_next = next_state.ravel()
    for t in range(values.shape[0] - 1):
        flow = density[:, None] * soft_policy(reward, next_state, values, t)
        density = np.bincount(flat_next, weights=flow.ravel(), minlength=num_states)
        visits = visits + density
    return visits


def sample_demonstrations(
    mdp: GridMDP, reward: np.ndarray, start: np.ndarray, count: int, horizon: int, seed: int
) -> Demonstrations:
    """`count` trajectories sampled from the MaxEnt policy of `reward` from the start
    distribution `start` (vectorized over trajectories)."""
    rng = np.random.default_rng(seed)
    values = soft_value_iteration(reward, mdp.next_state, horizon)
    states = np.empty((count, horizon), dtype=np.int64)
    states[:, 0] = rng.choice(mdp.num_states, size=count, p=start)
    for t in range(horizon - 1):
        policy = soft_policy(reward, mdp.next_state, values, t)[states[:, t]]  # (count, A)
        cumulative = policy.cumsum(axis=1)
        draw = rng.random(count)[:, None] * cumulative[:, -1:]
        action = (cumulative < draw).sum(axis=1).clip(0, len(MOVES) - 1)
        states[:, t + 1] = mdp.next_state[states[:, t], action]
    return Demonstrations(states)


# ----------------------------------------------------------------------------- 4. the fit
@dataclass
class FitResult:
    """A fitted reward: per-state values (S,), the linear weights (None for the MLP), the
    expert's and the fitted MaxEnt policy's feature counts (F,), and their relative gap
    ||mu_E - mu_pi|| / ||mu_E||."""

    reward: np.ndarray
    weights: np.ndarray | None
    expert_counts: np.ndarray
    model_counts: np.ndarray
    feature_gap: float
    iterations: int


def feature_gap(expert_counts: np.ndarray, model_counts: np.ndarray) -> float:
    """||mu_E - mu_pi||_2 / ||mu_E||_2: the relative feature-expectation mismatch."""
    return float(
        np.linalg.norm(expert_counts - model_counts) / max(np.linalg.norm(expert_counts), 1e-12)
    )


def expected_counts(
    mdp: GridMDP, reward: np.ndarray, start: np.ndarray, horizon: int
) -> np.ndarray:
    """(F,) feature counts sum_t E[phi(s_t)] under the MaxEnt policy of `reward`."""
    values = soft_value_iteration(reward, mdp.next_state, horizon)
    return state_visitation(reward, mdp.next_state, values, start) @ mdp.features


def fit_reward(
    mdp: GridMDP,
    demos: Demonstrations,
    reward: str = "linear",
    iterations: int = 60,
    l2: float = 1e-4,
    hidden: int = 32,
    lr: float = 0.05,
    seed: int = 0,
    show_progress: bool = True,
) -> FitResult:
    """Maximum-entropy IRL: fit a reward (linear in `mdp.features`, or an MLP of them) to the
    demonstrations by maximizing their log-likelihood minus `l2`/2 ||params||^2.

    Linear: torch L-BFGS (strong Wolfe line search) for `iterations` steps on the exact
    objective w . mu_E - D_0 . V_0 with gradient mu_E - E_pi[phi]. MLP: Adam (`lr`) for
    `iterations` steps on the deep MaxEnt gradient sum_s (D_E(s) - D_pi(s)) dr(s)/dtheta."""
    import torch

    if reward not in ("linear", "mlp"):
        raise InputError(f"--reward: choose linear or mlp, got {reward!r}")
    if iterations < 1:
        raise InputError(f"--iterations: must be >= 1, got {iterations}")
    if not l2 >= 0:
        raise InputError(f"--l2: must be >= 0, got {l2}")
    horizon = demos.states.shape[1]
    start = demos.start_distribution(mdp.num_states)
    expert_visits = np.bincount(demos.states.ravel(), minlength=mdp.num_states) / len(demos.states)
    bar = progress(total=iterations, desc=f"irl {mdp.task}", unit="it", enabled=show_progress)
    torch.manual_seed(seed)
    if reward == "linear":
        w = _fit_linear(mdp, expert_visits, start, horizon, iterations, l2, bar)
        r = mdp.features @ w
    else:
        w = None
        r = _fit_mlp(mdp, expert_visits, start, horizon, iterations, l2, hidden, lr, bar)
    bar.close()
    expert_counts = expert_visits @ mdp.features
    model_counts = expected_counts(mdp, r, start, horizon)
    gap = feature_gap(expert_counts, model_counts)
    return FitResult(r, w, expert_counts, model_counts, gap, iterations)


def _fit_linear(
    mdp: GridMDP,
    expert_visits: np.ndarray,
    start: np.ndarray,
    horizon: int,
    iterations: int,
    l2: float,
    bar: Any,
) -> np.ndarray:
    """(F,) weights w maximizing w . mu_E - D_0 . V_0 - l2/2 ||w||^2, by torch's L-BFGS."""
    import torch

    expert_counts = expert_visits @ mdp.features
    weights = torch.zeros(mdp.features.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weights], lr=1, max_iter=iterations, tolerance_grad=1e-9, tolerance_change=1e-12,
        history_size=20, line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        w = weights.detach().numpy()
        r = mdp.features @ w
        values = soft_value_iteration(r, mdp.next_state, horizon)
        model = state_visitation(r, mdp.next_state, values, start) @ mdp.features
        nll = -(w @ expert_counts - start @ values[0]) + 0.5 * l2 * w @ w
        weights.grad = torch.from_numpy(-(expert_counts - model) + l2 * w)
        bar.update(1)
        return torch.tensor(nll, dtype=torch.float64)

    optimizer.step(closure)
    return weights.detach().numpy().copy()


def _fit_mlp(
    mdp: GridMDP,
    expert_visits: np.ndarray,
    start: np.ndarray,
    horizon: int,
    iterations: int,
    l2: float,
    hidden: int,
    lr: float,
    bar: Any,
) -> np.ndarray:
    """(S,) per-state reward of an MLP of phi(s) fitted by Adam on the deep MaxEnt gradient."""
    import torch

    features = torch.from_numpy(mdp.features)
    net = torch.nn.Sequential(
        torch.nn.Linear(features.shape[1], hidden),
        torch.nn.Tanh(),
        torch.nn.Linear(hidden, 1),
    ).double()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=l2)
    for _ in range(iterations):
        r_t = net(features).squeeze(1)
        r = r_t.detach().numpy()
        values = soft_value_iteration(r, mdp.next_state, horizon)
        model_visits = state_visitation(r, mdp.next_state, values, start)
        # d(log-likelihood)/dr(s) = D_E(s) - D_pi(s): ascend it through the network.
        direction = torch.from_numpy(expert_visits - model_visits)
        optimizer.zero_grad()
        (-(direction * r_t).sum()).backward()
        optimizer.step()
        bar.update(1)
    with torch.no_grad():
        return net(features).squeeze(1).numpy().copy()


# ----------------------------------------------------------------------------- 5. the plan
def greedy_policy(mdp: GridMDP, reward: np.ndarray, horizon: int) -> np.ndarray:
    """(S,) the action maximizing Q_0(s, a) = r(s) + V_1(s'(s, a)) (ties: the first in MOVES)."""
    values = soft_value_iteration(reward, mdp.next_state, horizon)
    return (reward[:, None] + values[1][mdp.next_state]).argmax(axis=1)


# ----------------------------------------------------------------------------- 6. known reward
def reward_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two per-state rewards (invariant to shifts and positive scales)."""
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-300))


def known_reward_check(
    mdp: GridMDP,
    true_weights: np.ndarray,
    start: np.ndarray,
    demos: int,
    horizon: int,
    seed: int = 0,
    **fit_options: Any,
) -> dict[str, Any]:
    """Samples `demos` trajectories from the MaxEnt policy of the reward `true_weights` . phi
    (from the start distribution `start`), fits a reward to them and compares: the fitted
    reward's MaxEnt policy's feature counts against the demonstrations' (`feature_gap`), and
    the fitted against the true per-state reward (`reward_correlation`)."""
    true_reward = mdp.features @ true_weights
    sampled = sample_demonstrations(mdp, true_reward, start, demos, horizon, seed)
    fit = fit_reward(mdp, sampled, seed=seed, **fit_options)
    result: dict[str, Any] = {
        "demos": demos,
        "true_weights": dict(zip(mdp.feature_names, true_weights.tolist(), strict=True)),
        "feature_gap": fit.feature_gap,
        "reward_correlation": reward_correlation(fit.reward, true_reward),
    }
    if fit.weights is not None:
        result["recovered_weights"] = dict(
            zip(mdp.feature_names, fit.weights.tolist(), strict=True)
        )
    return result
