"""Synthetic episodes for tests and benchmarks: random but structured, no world needed."""

from __future__ import annotations

import numpy as np

from nanovla.data.writer import Episode
from nanovla.errors import InputError


def synthetic_episodes(
    num_episodes: int,
    lengths: tuple[int, int] = (5, 12),
    image_size: int = 16,
    state_dim: int = 6,
    action_dim: int = 3,
    num_tasks: int = 3,
    seed: int = 0,
) -> list[Episode]:
    """`num_episodes` episodes with lengths drawn in [lo, hi], flat-shaded random frames.

    Actions encode (episode, frame) as `action[t] = [episode, t, ...noise]` so tests can check
    that chunks come from the right episode and step.
    """
    if num_episodes < 1 or lengths[0] < 1 or lengths[1] < lengths[0]:
        raise InputError(
            f"need num_episodes >= 1 and 1 <= lengths[0] <= lengths[1], got {num_episodes}, {lengths}"
        )
    if action_dim < 2:
        raise InputError(f"action_dim must be >= 2 to encode (episode, frame), got {action_dim}")
    rng = np.random.default_rng(seed)
    episodes = []
    for episode in range(num_episodes):
        length = int(rng.integers(lengths[0], lengths[1] + 1))
        images = np.repeat(
            rng.integers(0, 256, (length, 1, 1, 3), dtype=np.uint8), image_size, axis=1
        )
        images = np.repeat(images, image_size, axis=2).copy()  # (T, S, S, 3) flat colour
        corner = rng.integers(0, image_size // 2)
        images[:, corner : corner + image_size // 4, corner : corner + image_size // 4] = 255
        actions = rng.normal(size=(length, action_dim)).astype(np.float32)  # (T, A)
        actions[:, 0], actions[:, 1] = episode, np.arange(length)
        states = rng.normal(size=(length, state_dim)).astype(np.float32)  # (T, D)
        task = f"task number {episode % num_tasks}"
        episodes.append(Episode(images=images, states=states, actions=actions, task=task))
    return episodes
