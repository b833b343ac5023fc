"""Batched rollouts of a policy on fixed, seeded initial states.

One world of `episodes` envs is reset with a seed, so episode i always starts from the same
scene for the same number of episodes (the world samples the scenes of all its envs together:
30 episodes are not the first 30 of 100, so compare checkpoints at equal episode counts); every
env runs until its *first* episode ends (the world auto-resets, later episodes are ignored). This is the evaluation protocol: the same seed gives the same initial states for every
checkpoint, so two policies are compared on identical episodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nanovla.data.recording import Actor, reset_actor
from nanovla.errors import InputError
from nanovla.world import make_world

ActsOnObservations = Actor
"""What evaluation needs from a policy: `data.recording.Actor` (batched `select_action`, optional
`reset(env_ids)`)."""


@dataclass
class RolloutResult:
    """Outcome of one batch of episodes (E = number of episodes, G = recorded envs)."""

    success: np.ndarray
    """(E,) bool: whether episode i succeeded"""
    length: np.ndarray
    """(E,) int: steps episode i took"""
    instructions: list[str]
    """instruction of each episode, as the policy read it"""
    frames: np.ndarray | None
    """(T, G, H, W, 3) uint8 frames of the first G episodes: frame 0 is the initial scene,
    frame `length[g]` episode g's terminal frame (before the auto-reset), held from there on"""


def run_episodes(
    policy: ActsOnObservations,
    family: str,
    instructions: str | list[str],
    episodes: int,
    seed: int,
    image_size: int = 64,
    record: int = 0,
    targets: str = "all",
) -> RolloutResult:
    """Roll `policy` out for `episodes` seeded episodes of one task family, all envs in lockstep.

    `record` > 0 keeps the frames of the first `record` episodes for GIFs.
    """
    if episodes < 1:
        raise InputError(f"episodes must be >= 1, got {episodes}")
    world = make_world(
        family,
        num_envs=episodes,
        image_size=image_size,
        seed=seed,
        instructions=instructions,
        targets=targets,
    )
    obs = world.reset(seed=seed)
    reset_actor(policy, None)
    episode_instructions = list(obs["instruction"])
    done = np.zeros(episodes, dtype=bool)
    success = np.zeros(episodes, dtype=bool)
    length = np.zeros(episodes, dtype=np.int64)
    record = min(record, episodes)
    frames = [obs["image"][:record].copy()] if record else []
    # The world truncates every episode at its step limit, so this bound is never the one hit.
    for step in range(1, world.max_steps[family] + 2):
        action = policy.select_action(obs)
        obs, _, terminated, truncated, info = world.step(action)
        ended = (terminated | truncated) & ~done
        success[ended] = np.asarray(info["success"])[ended]
        length[ended] = step
        done |= ended
        if ended.any():
            # Ended envs already show their next episode: clear any queued action chunk.
            reset_actor(policy, np.flatnonzero(ended))
        if record:
            # An ended env's returned frame already shows its next episode: take the terminal
            # frame the world reports, then hold it while the other episodes finish.
            frame = info.get("final_image", obs["image"])[:record].copy()
            finished_before = (done & ~ended)[:record]
            frame[finished_before] = frames[-1][finished_before]
            frames.append(frame)
        if done.all():
            break
    if not done.all():
        raise RuntimeError(f"world {family!r} did not end every episode within its step limit")
    return RolloutResult(
        success=success,
        length=length,
        instructions=episode_instructions,
        frames=np.stack(frames) if record else None,
    )
