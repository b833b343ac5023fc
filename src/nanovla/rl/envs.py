"""Vectorized environments for the RL algorithms: any gymnasium id, and the world natively.

`make_vec_env(env_id, num_envs, seed)` returns a `VecEnv`:

- a gymnasium id (`CartPole-v1`, `Pendulum-v1`, ...): `GymVecEnv`, N `gymnasium.make(id)` envs
  stepped in one loop (what gymnasium's SyncVectorEnv does, without its per-step copies);
- a world id (`nanovla/Reach-v0`, ... `nanovla/Suite-v0`): `WorldVecEnv`, one batched `World`
  (`make_world`) stepping all N envs with numpy. Observations are `state` (the 4 proprioceptive
  numbers and the current subgoal's object and place positions, `World.goal_positions`: 8
  floats, privileged, since proprioception alone does not say where the target is) or `image`
  (a dict of the (H, W, 3) uint8 frame and the 4 proprioceptive numbers). The reward is
  `shaped` (the world's potential-based decrease of the distance to go, plus the sparse success
  reward) or `sparse` (1 on the step the task succeeds).

Both reset ended episodes in the same step (gymnasium's SAME_STEP mode): `step` returns the next
episode's first observation where one ended, and the ended episode's last observation in
`final_obs`, so PPO can bootstrap the value of a time-limit truncation.

Exact resume needs the envs' state in the checkpoint. `capture_state(env)` walks the env (for
gymnasium: every wrapper down to `unwrapped`; for the world: the `World` and its scene
dataclasses) and keeps every attribute that is a numpy array, a number, a string, a list of
those, or a numpy `Generator` (its bit-generator state); `restore_state` sets them back. That is
the whole state of the classic-control envs and of the world. Envs that keep state elsewhere
(MuJoCo's C structs, Box2D bodies) still train, but a resumed run is not bit-identical there.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from nanovla.errors import InputError

WORLD_OBS = ("state", "image")
WORLD_REWARDS = ("shaped", "sparse")


class VecEnv(Protocol):
    """What the algorithms need from a batch of envs."""

    num_envs: int
    observation_space: gym.Space
    action_space: gym.Space

    def reset(self, seed: int) -> Any: ...

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, Any]: ...


def check_env_id(env_id: str) -> None:
    """InputError naming `--env` when gymnasium knows no such id."""
    from nanovla.world.gym_env import GYM_IDS, register_envs

    register_envs()
    if env_id in GYM_IDS:
        return
    try:
        gym.spec(env_id)
    except gym.error.Error as error:
        raise InputError(f"--env: unknown gymnasium id {env_id!r} ({error})") from error


def make_vec_env(
    env_id: str, num_envs: int, obs: str = "state", reward: str = "shaped", image_size: int = 64
) -> VecEnv:
    """N envs of `env_id` (see the module docs); `obs`, `reward`, `image_size`: the world's."""
    from nanovla.world.gym_env import GYM_IDS

    check_env_id(env_id)
    if num_envs < 1:
        raise InputError(f"--num-envs: must be >= 1, got {num_envs}")
    if env_id in GYM_IDS:
        return WorldVecEnv(GYM_IDS[env_id], num_envs, obs, reward, image_size)
    return GymVecEnv(env_id, num_envs)


class GymVecEnv:
    """N copies of one gymnasium env, auto-reset in the same step."""

    def __init__(self, env_id: str, num_envs: int) -> None:
        self.env_id, self.num_envs = env_id, num_envs
        self.envs = [gym.make(env_id) for _ in range(num_envs)]
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        if not isinstance(self.observation_space, gym.spaces.Box):
            raise InputError(
                f"--env: {env_id} has {type(self.observation_space).__name__} observations; "
                "the RL commands take Box (array) observations"
            )

    def reset(self, seed: int) -> np.ndarray:
        """First observations (N, ...) of envs seeded `seed`, `seed + 1`, ..."""
        return np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(self.envs)])

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(obs, reward, terminated, truncated, final_obs): obs is the next episode's first
        where one ended; final_obs is the ended episode's last there and obs elsewhere."""
        observations, finals = [], []
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        for i, env in enumerate(self.envs):
            obs, rewards[i], terminated[i], truncated[i], _ = env.step(actions[i])
            finals.append(obs)
            if terminated[i] or truncated[i]:
                obs, _ = env.reset()
            observations.append(obs)
        return np.stack(observations), rewards, terminated, truncated, np.stack(finals)


class WorldVecEnv:
    """The batched world behind the `VecEnv` face (see the module docs for obs and reward)."""

    def __init__(self, task: str, num_envs: int, obs: str, reward: str, image_size: int) -> None:
        from nanovla.world import make_world
        from nanovla.world.core import ACTION_DIM, STATE_DIM

        if obs not in WORLD_OBS:
            raise InputError(f"--world-obs: got {obs!r}; allowed: {', '.join(WORLD_OBS)}")
        if reward not in WORLD_REWARDS:
            raise InputError(f"--world-reward: got {reward!r}; allowed: {', '.join(WORLD_REWARDS)}")
        self.num_envs, self.obs_kind, self.reward_kind = num_envs, obs, reward
        self.world = make_world(task, num_envs, image_size, 0, render=obs == "image")
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        state = gym.spaces.Box(-np.inf, np.inf, (STATE_DIM + (4 if obs == "state" else 0),))
        if obs == "state":
            self.observation_space: gym.Space = state
        else:
            image = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
            self.observation_space = gym.spaces.Dict({"image": image, "state": state})

    def _observe(self, raw: dict) -> Any:
        if self.obs_kind == "state":
            goals = self.world.goal_positions()
            return np.concatenate([raw["state"], goals], axis=1).astype(np.float32)
        return {"image": raw["image"], "state": raw["state"]}

    def reset(self, seed: int) -> Any:
        """First observations of a world reseeded with `seed`."""
        return self._observe(self.world.reset(seed=seed))

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, Any]:
        """(obs, reward, terminated, truncated, final_obs) as `GymVecEnv.step`; the final
        observation of an ended episode carries its terminal frame where images are on."""
        raw, sparse, terminated, truncated, info = self.world.step(np.asarray(actions))
        reward = sparse.astype(np.float64)
        if self.reward_kind == "shaped":
            reward = reward + info["shaped_reward"]
        obs = self._observe(raw)
        final = _final_observation(self, obs, info, terminated | truncated)
        return obs, reward, terminated, truncated, final


def _final_observation(env: WorldVecEnv, obs: Any, info: dict, done: np.ndarray) -> Any:
    """The observation each env reached by this step, before any auto-reset. The world gives
    the terminal frame (`final_image`); its terminal proprioception is not kept, so the
    returned observation's stands in (it only enters a truncated episode's bootstrap)."""
    if not done.any() or env.obs_kind == "state":
        return obs
    return {"image": info.get("final_image", obs["image"]), "state": obs["state"]}


# ----------------------------------------------------------------------------- env state


def _children(obj: Any) -> dict[str, Any]:
    """The attributes of `obj` that `capture_state` looks into."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    return dict(vars(obj))


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str | np.generic):
        return True
    if isinstance(value, list | tuple):
        return all(v is None or isinstance(v, bool | int | float | str) for v in value)
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"


def _is_container(value: Any) -> bool:
    """Objects whose attributes hold env state: envs, wrappers, the world and its dataclasses."""
    from nanovla.world.core import World

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return True
    return isinstance(value, gym.Env | gym.Wrapper | World | GymVecEnv | WorldVecEnv | list)


def capture_state(obj: Any) -> dict[str, Any]:
    """Every plain attribute and numpy Generator state of `obj` and the envs inside it."""
    items = enumerate(obj) if isinstance(obj, list) else _children(obj).items()
    state: dict[str, Any] = {}
    for name, value in items:
        key = str(name)
        if isinstance(value, np.random.Generator):
            state[key] = {"generator": value.bit_generator.state}
        elif _is_plain(value):
            value = value.item() if isinstance(value, np.generic) else value
            state[key] = {"value": value.copy() if isinstance(value, np.ndarray) else value}
        elif _is_container(value) and not isinstance(value, type):
            state[key] = {"object": capture_state(value)}
    return state


def restore_state(obj: Any, state: dict[str, Any]) -> None:
    """Set back what `capture_state(obj)` returned on an env built the same way."""
    for key, entry in state.items():
        if isinstance(obj, list):
            target, name = obj[int(key)], None
        else:
            target, name = getattr(obj, key, None), key
        if "generator" in entry:
            if not isinstance(target, np.random.Generator):
                target = np.random.Generator(np.random.PCG64())
                setattr(obj, key, target)
            target.bit_generator.state = entry["generator"]
        elif "object" in entry:
            restore_state(target, entry["object"])
        elif name is not None:
            value = entry["value"]
            value = np.array(value, copy=True) if isinstance(value, np.ndarray) else value
            object.__setattr__(obj, name, value)
