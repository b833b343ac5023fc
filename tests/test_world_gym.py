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
    assert info["family"] == "reach" and env.render().shape == (64, 64, 3)
    for _ in range(40):
        obs, reward, terminated, truncated, info = env.step(env.unwrapped.expert_action())
        if terminated or truncated:
            break
    assert terminated and reward == 1.0 and info["success"] and info["family"] == "reach"
    assert env.unwrapped.world.state.episode_step[0] > 0  # not silently reset
    with pytest.raises(ValueError, match="action"):
        env.step(np.zeros(2, dtype=np.float32))


def test_make_vec_gives_the_batched_world_with_same_step_autoreset():
    env = gym.make_vec("nanovla/PickPlace-v0", num_envs=6, vectorization_mode="vector_entry_point")
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs) and obs["image"].shape == (6, 64, 64, 3)
    assert list(info["family"]) == ["pick_place"] * 6
    ended = None
    for _ in range(60):
        obs, reward, terminated, truncated, infos = env.step(env.expert_action())
        assert env.observation_space.contains(obs)
        if terminated.any():
            ended = np.flatnonzero(terminated)
            break
    assert ended is not None and np.all(reward[ended] == 1.0)
    assert np.all(infos["_final_obs"] == (terminated | truncated))
    assert np.all(infos["final_info"]["success"][ended]) and np.all(
        infos["episode_step"][ended] == 0
    )
    final_state = infos["final_obs"][ended[0]]["state"]
    assert not np.allclose(final_state, obs["state"][ended[0]])  # the new episode's first obs
    env.close()
