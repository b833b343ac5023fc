"""Episodes on Meta-World goal configurations, many at once: the expert's or a policy's.

`run_episodes(goals, actor)` runs one episode per goal configuration on `num_envs` environment
slots: each step stacks the observations of the running episodes, asks the actor for all their
actions in one call (a policy's forward pass is batched), steps each env, and refills a slot as
soon as its episode ends. An episode ends at its first success (Meta-World's protocol counts
success if `info["success"]` is 1 at any step) or at the time limit (500 steps).

With `record=True` each episode keeps what a dataset needs: the observation at every step and
the expert's action for it (the label), whoever chose the executed action. `noise` > 0 adds
Gaussian noise to the executed action (DART, Laskey et al. 2017,
https://arxiv.org/abs/1703.09327): the demonstrations then visit the states a slightly wrong
learner drifts into, labelled with the expert's correction. The noise of episode i comes from
`np.random.default_rng([seed, i])`, so episodes do not depend on `num_envs` or on each other.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nanovla.envs.metaworld import GoalConfig, MetaWorldEnv
from nanovla.progress import progress as progress_bar

Actor = Callable[[np.ndarray, list[str]], np.ndarray]
"""(states (N, 39) float32, N instructions) -> actions (N, 4)"""


@dataclass
class EpisodeRecord:
    """One finished episode."""

    task: str
    goal_seed: int
    goal_index: int
    success: bool
    steps: int
    """steps taken (to the first success, or the time limit)"""
    states: np.ndarray | None = None
    """(T, 39) float32 observations, recorded episodes only"""
    actions: np.ndarray | None = None
    """(T, 4) float32 the expert's action at each observation, recorded episodes only"""
    images: np.ndarray | None = None
    """(T, H, W, 3) uint8 offscreen frames, when recorded with image_size > 0"""


@dataclass
class _Slot:
    index: int
    goal: GoalConfig
    env: MetaWorldEnv
    obs: np.ndarray
    rng: np.random.Generator
    states: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)


def run_episodes(
    goals: list[GoalConfig],
    actor: Actor | None = None,
    num_envs: int = 10,
    max_steps: int | None = None,
    noise: float = 0.0,
    seed: int = 0,
    record: bool = False,
    image_size: int = 0,
    progress: bool = True,
    desc: str = "episodes",
) -> list[EpisodeRecord]:
    """One episode per goal configuration, in the order of `goals`.

    actor: None = the scripted expert drives. max_steps: None = Meta-World's limit (500).
    """
    pool: dict[str, list[MetaWorldEnv]] = {}
    pending = deque((i, goals[i]) for i in _interleaved(goals))
    slots: list[_Slot | None] = [None] * max(1, min(num_envs, len(goals)))
    results: list[EpisodeRecord | None] = [None] * len(goals)
    bar = progress_bar(total=len(goals), desc=desc, unit="episode", enabled=progress)
    try:
        while pending or any(slots):
            for i, slot in enumerate(slots):
                if slot is None and pending:
                    slots[i] = _start(*pending.popleft(), pool, seed, image_size, record)
            active = [slot for slot in slots if slot is not None]
            actions = _actions(active, actor, record)  # (N, 4) executed, (N, 4) labels
            for slot, executed, label in zip(active, *actions):
                done = _advance(slot, executed, label, noise, record, max_steps)
                if done is not None:
                    results[slot.index] = done
                    pool.setdefault(slot.goal.task, []).append(slot.env)
                    slots[slots.index(slot)] = None
                    bar.update(1)
    finally:
        bar.close()
        for envs in pool.values():
            for env in envs:
                env.close()
    return [record for record in results if record is not None]


def _interleaved(goals: list[GoalConfig]) -> list[int]:
    """Indices of `goals` taking the tasks in turn (a, b, c, a, b, c, ...), so the slots hold
    a mix of tasks and each task needs few environments (building one costs ~0.2 s)."""
    rank: dict[str, int] = {}
    keys = []
    for goal in goals:
        keys.append(rank.get(goal.task, 0))
        rank[goal.task] = keys[-1] + 1
    return sorted(range(len(goals)), key=lambda i: keys[i])


def _start(
    index: int,
    goal: GoalConfig,
    pool: dict[str, list[MetaWorldEnv]],
    seed: int,
    image_size: int,
    record: bool,
) -> _Slot:
    """A slot running episode `index` on `goal`, with an env of its task from the pool."""
    free = pool.get(goal.task, [])
    env = free.pop() if free else MetaWorldEnv(goal.task, image_size=image_size if record else 0)
    obs = env.reset(goal)
    return _Slot(index, goal, env, obs, np.random.default_rng([seed, index]))


def _actions(
    active: list[_Slot], actor: Actor | None, record: bool
) -> tuple[np.ndarray, np.ndarray | list[None]]:
    """(executed actions before noise (N, 4), expert labels (N, 4) or Nones)."""
    labels: np.ndarray | list[None] = [None] * len(active)
    if actor is None or record:
        labels = np.stack([slot.env.expert_action(slot.obs) for slot in active])  # (N, 4)
    if actor is None:
        return labels, labels  # type: ignore[return-value]
    states = np.stack([slot.obs for slot in active])  # (N, 39)
    executed = np.asarray(actor(states, [slot.env.instruction for slot in active]), np.float32)
    return executed, labels


def _advance(
    slot: _Slot,
    action: np.ndarray,
    label: np.ndarray | None,
    noise: float,
    record: bool,
    max_steps: int | None,
) -> EpisodeRecord | None:
    """Step one slot; the finished episode's record, or None while it runs."""
    if record:
        slot.states.append(slot.obs)
        slot.labels.append(label)
        if slot.env.image_size:
            slot.frames.append(slot.env.render())
    if noise > 0:
        action = action + noise * slot.rng.standard_normal(action.shape).astype(np.float32)
    slot.obs, success, truncated = slot.env.step(action)
    limit = slot.env.max_steps if max_steps is None else min(max_steps, slot.env.max_steps)
    if not (success or truncated or slot.env.steps >= limit):
        return None
    done = EpisodeRecord(slot.goal.task, slot.goal.seed, slot.goal.index, success, slot.env.steps)
    if record:
        done.states = np.stack(slot.states).astype(np.float32)
        done.actions = np.stack(slot.labels).astype(np.float32)
        done.images = np.stack(slot.frames) if slot.frames else None
    return done
