"""The rollout loop of `nanovla collect` and of DAgger: `record_episodes(world, writer, n)`.

The world is vectorized and auto-resets: when env i reports terminated | truncated at a step,
the observation returned by that step is already the first frame of env i's next episode. So
each env keeps its own episode buffer; a finished buffer becomes an `Episode` (kept if it
succeeded, or always with `--keep-failures`) and a fresh buffer starts from the returned frame.

Each recorded frame pairs the observation with the scripted expert's action for that state: the
`action` column is always the expert's label, whoever chose the executed action. Three drivers:
the expert itself (executed = recorded); DART (Laskey et al. 2017, `--expert-noise` > 0): the
world executes the expert's motion plus noise (`World.perturb`, grip left clean), so
demonstrations visit the off-course states a learner will reach, while the recorded label stays
clean; and an actor (a policy: `select_action(obs)`, optionally `reset(env_ids)`), whose actions
are executed while the expert labels the states it visits - the data DAgger aggregates. The
actor's `reset(env_ids)` is called for the envs whose episode ended, so a queued action chunk
never carries over into the next episode.

Exactly `--episodes` episodes are written, chosen in the order the episodes STARTED: each
rollout gets a serial number when it begins, finished rollouts wait until every earlier serial
has finished, and the first `--episodes` successful ones in serial order are kept. Keeping them in
the order they finish instead would favour short episodes (reach over pick_place), since those
finish first; this costs at most one extra episode length of stepping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from nanovla.constants import OBS_FAMILY, OBS_IMAGE, OBS_INSTRUCTION, OBS_STATE
from nanovla.data.format import ENV_STATE_KEY
from nanovla.data.writer import DatasetWriter, Episode
from nanovla.errors import InputError
from nanovla.progress import progress as progress_bar

DEFAULT_FPS = 10
"""Control rate written to info.json when the world does not state its own `fps`."""


class Actor(Protocol):
    """What drives a rollout instead of the expert: batched actions for the world's observation
    dict. An actor may also have `reset(env_ids=None)`, called with no argument after the world's
    reset and with the indices of the envs whose episode ended after each step (`reset_actor`;
    `nanovla.eval.rollout` drives policies through the same protocol)."""

    def select_action(self, obs: dict[str, Any]) -> np.ndarray: ...


def reset_actor(actor: Actor, env_ids: np.ndarray | None) -> None:
    """Call `actor.reset()` (all envs) or `actor.reset(env_ids)` when the actor has a reset."""
    reset = getattr(actor, "reset", None)
    if reset is None:
        return
    if env_ids is None:
        reset()
    else:
        reset(env_ids)


@dataclass
class CollectReport:
    """What a collection run did; `success_rate` is over all finished rollouts."""

    episodes: int = 0
    """episodes written"""
    frames: int = 0
    """frames written"""
    attempts: int = 0
    """rollouts that finished (kept or not)"""
    successes: int = 0
    """finished rollouts that succeeded"""
    seconds: float = 0.0
    """wall time of the rollouts"""
    per_family: dict[str, list[int]] = field(default_factory=dict)
    """family -> [successes, attempts]"""

    @property
    def success_rate(self) -> float:
        return self.successes / max(self.attempts, 1)

    def summary(self) -> str:
        families = ", ".join(f"{name} {s}/{n}" for name, (s, n) in sorted(self.per_family.items()))
        return (
            f"{self.episodes} episodes, {self.frames} frames in {self.seconds:.1f} s; "
            f"success {100 * self.success_rate:.1f}% ({self.successes}/{self.attempts} rollouts"
            f"{': ' + families if families else ''})"
        )


@dataclass
class _EpisodeBuffer:
    """Per-env frames of the episode in progress."""

    task: str
    family: str
    images: list[np.ndarray] = field(default_factory=list)
    states: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    extras: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(
        self, image: np.ndarray, state: np.ndarray, action: np.ndarray, extras: dict[str, Any]
    ) -> None:
        self.images.append(image)
        self.states.append(state)
        self.actions.append(action)
        for key, value in extras.items():
            self.extras.setdefault(key, []).append(value)

    def to_episode(self) -> Episode:
        return Episode(
            images=np.stack(self.images),  # (T, H, W, 3)
            states=np.stack(self.states).astype(np.float32),  # (T, D)
            actions=np.stack(self.actions).astype(np.float32),  # (T, A)
            task=self.task,
            extras={
                key: np.stack(values).astype(np.float32) for key, values in self.extras.items()
            },  # each (T, K)
        )


@dataclass
class _StartOrderKeeper:
    """Holds finished rollouts until every earlier-started one has finished, then keeps or drops
    them in start order (see the module docstring for why)."""

    writer: DatasetWriter
    report: CollectReport
    num_episodes: int
    keep_failures: bool
    bar: Any
    waiting: dict[int, tuple[_EpisodeBuffer, bool]] = field(default_factory=dict)
    """serial -> (finished rollout, success)"""
    next_serial: int = 0
    """the earliest-started rollout not yet decided"""

    def finish(self, serial: int, buffer: _EpisodeBuffer, success: bool) -> None:
        self.waiting[serial] = (buffer, success)
        report = self.report
        while self.next_serial in self.waiting and report.episodes < self.num_episodes:
            buffer, success = self.waiting.pop(self.next_serial)
            self.next_serial += 1
            report.attempts += 1
            report.successes += success
            tally = report.per_family.setdefault(buffer.family, [0, 0])
            tally[0], tally[1] = tally[0] + success, tally[1] + 1
            if success or self.keep_failures:
                self.writer.add_episode(buffer.to_episode())
                report.episodes += 1
                report.frames += len(buffer.actions)
                self.bar.update(1)
                self.bar.set_postfix(success=f"{100 * report.success_rate:.0f}%")


Labeler = Callable[[dict[str, Any]], np.ndarray]
"""`labeler(obs) -> (N, A)`: the action to record for each env's current state (default: the
world's scripted expert, `world.expert_action(noise=0.0)`; a trained policy can label too)."""


@dataclass
class Mixing:
    """How an actor-driven rollout mixes in the labeler (DAgger's beta-mixing) and what extra
    per-frame features it records."""

    expert_probability: float = 0.0
    """per env and step, execute the label instead of the actor's action with this probability
    (DAgger's beta; the actor still sees every step, so its action queue stays in step)"""
    executed_key: str | None = None
    """record the executed action as this extra feature (e.g. "action.executed")"""
    constants: dict[str, float] = field(default_factory=dict)
    """extra (T, 1) features holding one value for every frame (e.g. {"dagger.round": 2})"""


def _executed_actions(
    world: Any, obs: dict[str, Any], labels: np.ndarray, actor: Actor | None, mixing: Mixing,
    rng: np.random.Generator,
) -> np.ndarray:  # fmt: skip
    """The (N, A) actions the world executes this step (see `record_episodes`)."""
    if actor is None:
        noise = float(getattr(world, "expert_noise", 0.0))
        # DART: execute a noisy motion, record the clean expert label
        return world.perturb(labels) if noise > 0 else labels
    executed = np.asarray(actor.select_action(obs), dtype=np.float32)
    if mixing.expert_probability > 0:
        take = rng.random(len(executed)) < mixing.expert_probability  # (N,)
        executed = np.where(take[:, None], labels, executed)
    return executed


def _frame_extras(world: Any, executed: np.ndarray, mixing: Mixing) -> list[dict[str, np.ndarray]]:
    """Per env, the extra features recorded with this step's frame."""
    goals = world.goal_positions() if hasattr(world, "goal_positions") else None  # (N, 4)
    extras: list[dict[str, np.ndarray]] = [{} for _ in range(len(executed))]
    for i, frame in enumerate(extras):
        if goals is not None:
            frame[ENV_STATE_KEY] = goals[i]
        if mixing.executed_key is not None:
            frame[mixing.executed_key] = executed[i]
        for key, value in mixing.constants.items():
            frame[key] = np.array([value], dtype=np.float32)
    return extras


def record_episodes(
    world: Any,
    writer: DatasetWriter,
    num_episodes: int,
    actor: Actor | None = None,
    keep_failures: bool = False,
    seed: int = 0,
    max_attempts: int | None = None,
    progress: bool = True,
    labeler: Labeler | None = None,
    mixing: Mixing | None = None,
) -> CollectReport:
    """Roll out `world` until `num_episodes` episodes are added to `writer`.

    `world` is a `nanovla.world.World` or anything with its `num_envs`, `reset(seed=)`, `step`,
    `expert_action(noise=)` (and `perturb` when its `expert_noise` > 0; `goal_positions` when it
    has one). `actor` picks the executed actions (None: the expert, DART-perturbed when the
    world's `expert_noise` > 0); the recorded `action` is the label of each visited state
    (`labeler`, default the world's clean expert) either way. `mixing` (actor-driven only)
    executes the label instead with a probability and records extra features.
    Raises InputError when `max_attempts` rollouts finish without enough episodes to keep.
    """
    report, start = CollectReport(), time.perf_counter()
    mixing = mixing or Mixing()
    rng = np.random.default_rng([seed, 0xDA66E])  # the beta-mixing coin flips
    obs = world.reset(seed=seed)
    if actor is not None:
        reset_actor(actor, None)
    buffers = [
        _EpisodeBuffer(obs[OBS_INSTRUCTION][i], obs[OBS_FAMILY][i]) for i in range(world.num_envs)
    ]
    serials = list(range(world.num_envs))  # serial number of the rollout each env is running
    next_serial = world.num_envs
    bar = progress_bar(total=num_episodes, desc="collect", unit="episode", enabled=progress)
    keeper = _StartOrderKeeper(writer, report, num_episodes, keep_failures, bar)
    while report.episodes < num_episodes:
        if labeler is None:
            labels = np.asarray(world.expert_action(noise=0.0), dtype=np.float32)  # (N, A)
        else:
            labels = np.asarray(labeler(obs), dtype=np.float32)
        executed = _executed_actions(world, obs, labels, actor, mixing, rng)
        extras = _frame_extras(world, executed, mixing)
        for i, buffer in enumerate(buffers):
            buffer.add(obs[OBS_IMAGE][i], obs[OBS_STATE][i], labels[i], extras[i])
        obs, _, terminated, truncated, info = world.step(executed)
        ended = np.flatnonzero(np.asarray(terminated) | np.asarray(truncated))
        for i in ended.tolist():
            keeper.finish(serials[i], buffers[i], bool(info["success"][i]))
            buffers[i] = _EpisodeBuffer(obs[OBS_INSTRUCTION][i], obs[OBS_FAMILY][i])
            serials[i], next_serial = next_serial, next_serial + 1
        if actor is not None and len(ended):
            # Ended envs already show their next episode: drop any action chunk queued for them.
            reset_actor(actor, ended)
        if max_attempts is not None and report.attempts >= max_attempts:
            if report.episodes < num_episodes:
                bar.close()
                raise InputError(
                    f"only {report.episodes} of {num_episodes} episodes kept after "
                    f"{report.attempts} rollouts (success {100 * report.success_rate:.1f}%); "
                    "use --keep-failures or a better policy"
                )
    bar.close()
    report.seconds = time.perf_counter() - start
    return report
