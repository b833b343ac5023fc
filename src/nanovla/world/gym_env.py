"""Single-env gymnasium view of the world, registered as nanovla/<Task>-v0.

Observation: Dict(image (H, W, 3) uint8, state (4,) float32, instruction Text). Action: Box
[-1, 1]^3 (dx, dy, grip). Unlike the batched `World`, this view follows the gymnasium protocol: it
does not reset itself; call `reset()` after `terminated` or `truncated` (the world's step limit
sets `truncated`, so no TimeLimit wrapper is registered). `gymnasium.make_vec(id, num_envs=N)`
gives the natively batched `TabletopVectorEnv` (see gym_vector.py) instead of N copies. `info`
carries the episode's task `family` (from `reset` and `step`), `success` and `shaped_reward`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from nanovla.constants import OBS_FAMILY
from nanovla.errors import InputError
from nanovla.world.core import ACTION_DIM, STATE_DIM, World
from nanovla.world.instructions import BOWL_KO, COLORS_KO, KINDS_KO, SIZES_KO, ZONES_KO
from nanovla.world.scene import COLORS, KINDS, SIZES, ZONES

GYM_IDS: dict[str, str] = {
    "nanovla/Reach-v0": "reach",
    "nanovla/Push-v0": "push",
    "nanovla/PickPlace-v0": "pick_place",
    "nanovla/Sort-v0": "sort",
    "nanovla/Suite-v0": "suite",
}
MAX_INSTRUCTION_CHARS = 256


def _charset(templates: dict[str, tuple[str, ...]]) -> str:
    """Every character an instruction of these templates can contain."""
    words = [*COLORS, *KINDS, *SIZES, *ZONES, "the", "bowl"]
    words += [*COLORS_KO, *KINDS_KO, *SIZES_KO, *ZONES_KO, BOWL_KO, "을를이가은는과와으로"]
    text = "".join(words) + "".join(t for pool in templates.values() for t in pool)
    return "".join(sorted(set(text)))


def observation_space(world: World) -> gym.spaces.Dict:
    """The single-env observation space of `world`."""
    size = world.image_size
    return gym.spaces.Dict(
        {
            "image": gym.spaces.Box(0, 255, (size, size, 3), np.uint8),
            "state": gym.spaces.Box(-1.0, 2.0, (STATE_DIM,), np.float32),
            "instruction": gym.spaces.Text(
                MAX_INSTRUCTION_CHARS, charset=_charset(world.templates)
            ),
        }
    )


class TabletopEnv(gym.Env):
    """One tabletop env (a `World` with num_envs=1 and no auto-reset) behind the gymnasium API."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        task: str = "suite",
        image_size: int = 64,
        instructions: str | list[str] = "train",
        targets: str = "all",
        render_mode: str | None = None,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise InputError(f"render_mode: got {render_mode!r}; allowed: None, 'rgb_array'")
        self.world = World(task, 1, image_size, 0, instructions, targets, autoreset=False)
        self.render_mode = render_mode
        self.observation_space = observation_space(self.world)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)

    def _single(self, obs: dict) -> dict[str, Any]:
        return {
            "image": obs["image"][0],
            "state": obs["state"][0],
            "instruction": obs["instruction"][0],
        }

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        obs = self.world.reset(seed=seed)
        return self._single(obs), {OBS_FAMILY: obs[OBS_FAMILY][0]}

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (ACTION_DIM,):
            raise InputError(
                f"action: expected shape ({ACTION_DIM},) = (dx, dy, grip), got {action.shape}"
            )
        obs, reward, terminated, truncated, info = self.world.step(action[None])
        info = {
            "success": bool(info["success"][0]),
            "shaped_reward": float(info["shaped_reward"][0]),
            OBS_FAMILY: obs[OBS_FAMILY][0],
        }
        return self._single(obs), float(reward[0]), bool(terminated[0]), bool(truncated[0]), info

    def render(self) -> np.ndarray | None:
        return self.world.render()[0] if self.render_mode == "rgb_array" else None

    def expert_action(self) -> np.ndarray:
        """(3,) float32 scripted-expert action for the current state."""
        return self.world.expert_action()[0]


def register_envs() -> None:
    """Registers GYM_IDS with gymnasium (idempotent)."""
    for env_id, task in GYM_IDS.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="nanovla.world.gym_env:TabletopEnv",
                vector_entry_point="nanovla.world.gym_vector:TabletopVectorEnv",
                kwargs={"task": task},
            )
