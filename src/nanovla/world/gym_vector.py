"""Natively batched gymnasium vector env: `gymnasium.make_vec("nanovla/PickPlace-v0", num_envs=N)`.

One `World` steps all N envs with numpy (no N sub-environments). It auto-resets in gymnasium's
SAME_STEP mode: where an episode ends, the returned observation is already the next episode's
first, and the last observation of the ended episode is in `infos["final_obs"]` (an object array,
None where no episode ended) with `infos["final_info"]["success"]`. `reset` returns the task
`family` of each env in its infos.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from nanovla.constants import OBS_FAMILY
from nanovla.errors import InputError
from nanovla.world.core import ACTION_DIM, World
from nanovla.world.gym_env import observation_space


class TabletopVectorEnv(gym.vector.VectorEnv):
    """N tabletop envs behind gymnasium's VectorEnv API (observations batched as arrays; the
    instructions as a tuple of strings)."""

    metadata = {
        "autoreset_mode": AutoresetMode.SAME_STEP,
        "render_modes": ["rgb_array"],
        "render_fps": 10,
    }

    def __init__(
        self,
        num_envs: int = 1,
        task: str = "suite",
        image_size: int = 64,
        instructions: str | list[str] = "train",
        targets: str = "all",
        render_mode: str | None = None,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise InputError(f"render_mode: got {render_mode!r}; allowed: None, 'rgb_array'")
        self.world = World(task, num_envs, image_size, 0, instructions, targets, autoreset=False)
        self.num_envs, self.render_mode = self.world.num_envs, render_mode
        self.single_observation_space = observation_space(self.world)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    @staticmethod
    def _batched(obs: dict) -> dict[str, Any]:
        return {
            "image": obs["image"],
            "state": obs["state"],
            "instruction": tuple(obs["instruction"]),
        }

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        obs = self.world.reset(seed=seed)
        return self._batched(obs), {OBS_FAMILY: np.array(obs[OBS_FAMILY])}

    def step(self, actions: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, dict]:
        obs, reward, terminated, truncated, info = self.world.step(actions)
        everyone = np.ones(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {"success": info["success"], "_success": everyone}
        infos["shaped_reward"], infos["_shaped_reward"] = info["shaped_reward"], everyone
        done = terminated | truncated
        if done.any():
            final = np.full(self.num_envs, None, dtype=object)
            for env in np.flatnonzero(done):  # per ended episode only, as gymnasium does
                final[env] = {key: obs[key][env] for key in ("image", "state", "instruction")}
            infos["final_obs"], infos["_final_obs"] = final, done
            infos["final_info"] = {"success": info["success"], "_success": done}
            self.world.restart(np.flatnonzero(done))
            obs = self.world.observe()
        infos["episode_step"] = self.world.state.episode_step.copy()
        infos["_episode_step"] = everyone
        return self._batched(obs), reward, terminated, truncated, infos

    def render(self) -> np.ndarray | None:
        """(N, H, W, 3) frames in rgb_array mode, else None."""
        return self.world.render() if self.render_mode == "rgb_array" else None

    def expert_action(self) -> np.ndarray:
        """(N, 3) float32 scripted-expert actions for the current states."""
        return self.world.expert_action()
