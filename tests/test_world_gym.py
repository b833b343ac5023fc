"""The gymnasium single-env view passes gymnasium's own checker and follows its protocol."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import nanovla.world  # noqa: F401  (registers the ids)
from nanovla.world import GYM_IDS


@pytest.mark.parametrize("env_id", sorted(GYM_IDS))
def test_check_env_passes(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_episode_ends_without_auto_reset_and_reset_is_seeded():
    env = gym.make("nanovla/Reach-v0", render_mode="rgb_array")
    obs, info = env.reset(seed=3)
    again, _ = env.reset(seed=3)
    assert (
        np.array_equal(obs["image"], again["image"]) and obs["instruction"] == again["instruction"]
    )
    assert info["task"] == "reach" and env.render().shape == (64, 64, 3)
    for _ in range(40):
        obs, reward, terminated, truncated, info = env.step(env.unwrapped.expert_action())
        if terminated or truncated:
            break
    assert terminated and reward == 1.0 and info["success"]
    assert env.unwrapped.world.state.episode_step[0] > 0  # not silently reset
    with pytest.raises(ValueError, match="action"):
        env.step(np.zeros(2, dtype=np.float32))
