"""The batched world as BC -> RL fine-tuning steps it (`rl/finetune.py`, step 2 of its reading
order): images and training-template instructions (`make_world`; held-out paraphrases are never
seen), the shaped or sparse reward, and the critic's privileged vector (`vla_actor_critic.
CRITIC_DIM`: the state, the goal positions, the fraction of the step limit used, the family)."""

from __future__ import annotations

from typing import Any

import numpy as np

from nanovla.rl.vla_actor_critic import Vocabulary
from nanovla.world import make_world
from nanovla.world.tasks import TASK_FAMILIES, step_limits


class FinetuneEnv:
    """The batched world as `rl.ppo.collect` steps it (see the module docs)."""

    def __init__(
        self, families: tuple[str, ...], num_envs: int, image_size: int, instructions: str,
        reward: str, vocabulary: Vocabulary,
    ) -> None:  # fmt: skip
        self.world = make_world(list(families), num_envs, image_size, 0, instructions=instructions)
        self.num_envs, self.reward, self.vocabulary = num_envs, reward, vocabulary
        self.successes, self.episodes = 0, 0

    def _observe(self, raw: dict[str, Any]) -> dict[str, np.ndarray]:
        scene = self.world.state
        used = scene.episode_step / step_limits(scene)
        family = np.eye(len(TASK_FAMILIES), dtype=np.float32)[scene.family]
        critic = np.concatenate(
            [raw["state"], self.world.goal_positions(), used[:, None], family], axis=1
        )
        return {"image": raw["image"], "state": raw["state"], "critic": critic.astype(np.float32),
                "text": self.vocabulary.ids(list(raw["instruction"]))}  # fmt: skip

    def reset(self, seed: int) -> dict[str, np.ndarray]:
        """First observations of the world reseeded with `seed`."""
        return self._observe(self.world.reset(seed=seed))

    def step(self, actions: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, dict]:
        """(obs, reward, ended, no truncations, obs): the time limit ends an episode as a
        terminal state (module docs); successes and ended episodes are counted."""
        raw, sparse, terminated, truncated, info = self.world.step(actions)
        reward = sparse.astype(np.float64)
        if self.reward == "shaped":
            reward = reward + info["shaped_reward"]
        ended = terminated | truncated
        self.successes += int(terminated.sum())
        self.episodes += int(ended.sum())
        obs = self._observe(raw)
        return obs, reward, ended, np.zeros_like(ended), obs

    def take_success_rate(self) -> float | None:
        """Success rate of the episodes ended since the last call (None: none ended)."""
        rate = self.successes / self.episodes if self.episodes else None
        self.successes, self.episodes = 0, 0
        return rate
