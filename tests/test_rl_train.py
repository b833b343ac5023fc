"""nanovla.rl training in-process with tiny settings: PPO improves CartPole's return, the world
envs train, env state survives capture/restore, a NaN from an env stops the run by name."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from nanovla.rl import ppo, reinforce
from nanovla.rl.envs import GymVecEnv, capture_state, make_vec_env, restore_state
from nanovla.rl.policy import ActorCritic, config_for
from nanovla.rl.run import NonFiniteEnvError
from nanovla.train.checkpoint import latest_checkpoint
from nanovla.train.logger import read_metrics

TINY = dict(eval_episodes=2, progress=False, tensorboard=False)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ppo_improves_cartpole_return(tmp_path):
    cmd = ppo.PPOCommand(env="CartPole-v1", out=tmp_path / "run", total_steps=12_288, **TINY)
    result = ppo.train(cmd)
    returns = [r["charts/episodic_return"] for r in read_metrics(cmd.out / "logs/metrics.jsonl")
               if "charts/episodic_return" in r]  # fmt: skip
    first, last = np.mean(returns[:5]), np.mean(returns[-5:])
    assert first < 40 < 100 < last  # a random policy balances ~20 steps
    assert result["mean_return"] > 100
    keys = set().union(*read_metrics(cmd.out / "logs/metrics.jsonl"))
    assert {"losses/approx_kl", "losses/clipfrac", "losses/value_loss", "charts/SPS"} <= keys


def test_ppo_gaussian_tanh_state_std_runs_on_pendulum(tmp_path):
    cmd = ppo.PPOCommand(env="Pendulum-v1", out=tmp_path / "run", total_steps=512, num_envs=2,
                         num_steps=128, minibatch_size=64, update_epochs=2, squash="tanh",
                         log_std="state", normalize_obs=True, normalize_reward=True, **TINY)  # fmt: skip
    result = ppo.train(cmd)
    assert result["episodes"] == 2 and np.isfinite(result["mean_return"])
    agent = ActorCritic.from_pretrained(latest_checkpoint(cmd.out) / "pretrained_model")
    assert agent.obs_norm.count.item() > 500  # the observation statistics travel in the weights
    actions = agent.act(np.zeros((3, 3), dtype=np.float32))
    assert actions.shape == (3, 1) and np.abs(actions).max() <= 2.0


def test_reinforce_learns_cartpole_with_and_without_baseline(tmp_path):
    for baseline in (True, False):
        out = tmp_path / f"b{baseline}"
        cmd = reinforce.ReinforceCommand(env="CartPole-v1", out=out, total_steps=15_000,
                                         baseline=baseline, **TINY)  # fmt: skip
        reinforce.train(cmd)
        records = read_metrics(out / "logs/metrics.jsonl")
        returns = [r["charts/episodic_return"] for r in records if "charts/episodic_return" in r]
        assert np.mean(returns[-3:]) > np.mean(returns[:3]) + 20
        assert all(r["charts/episodes"] == 16 for r in records if "charts/episodes" in r)


@pytest.mark.parametrize("world_obs", ["state", "image"])
def test_ppo_runs_on_the_world(tmp_path, world_obs):
    cmd = ppo.PPOCommand(env="nanovla/Reach-v0", out=tmp_path / "run", total_steps=64,
                         num_envs=4, num_steps=16, minibatch_size=32, update_epochs=1,
                         world_obs=world_obs, image_size=32, **TINY)  # fmt: skip
    result = ppo.train(cmd)
    assert result["env"] == "nanovla/Reach-v0" and np.isfinite(result["mean_return"])
    assert 0.0 <= result["success_rate"] <= 1.0


def _roll(env, steps: int, seed: int = 3) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        actions = rng.uniform(-1, 1, size=(env.num_envs, *env.action_space.shape))
        if isinstance(env.action_space, gym.spaces.Discrete):
            actions = rng.integers(0, env.action_space.n, size=env.num_envs)
        obs, reward, *_ = env.step(
            actions.astype(np.float32) if actions.dtype.kind == "f" else actions
        )
        out.append((np.array(obs["state"] if isinstance(obs, dict) else obs), reward.copy()))
    return out


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "nanovla/Push-v0"])
def test_env_state_capture_and_restore(env_id):
    env = make_vec_env(env_id, 3)
    env.reset(seed=5)
    _roll(env, 30)
    saved = capture_state(env)
    after = _roll(env, 250)
    other = make_vec_env(env_id, 3)
    other.reset(seed=99)
    restore_state(other, saved)
    again = _roll(other, 250)
    for (obs_a, rew_a), (obs_b, rew_b) in zip(after, again):
        assert np.array_equal(obs_a, obs_b) and np.array_equal(rew_a, rew_b)


class NaNAfter(gym.Env):
    """CartPole-like toy env whose observation turns NaN at its 40th step."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.full(2, np.nan if self.t >= 40 else 0.1, np.float32)
        return obs, 1.0, False, self.t >= 1000, {}


def test_nan_from_the_env_stops_the_run_and_keeps_the_checkpoint(tmp_path):
    if "NaNAfter-v0" not in gym.registry:
        gym.register("NaNAfter-v0", entry_point=NaNAfter)
    cmd = ppo.PPOCommand(env="NaNAfter-v0", out=tmp_path / "run", total_steps=160, num_envs=1,
                         num_steps=16, minibatch_size=16, update_epochs=1, save_every=1, **TINY)  # fmt: skip
    with pytest.raises(
        NonFiniteEnvError, match=r"NaNAfter-v0.*NaN/inf observations at env step 40"
    ):
        ppo.train(cmd)
    assert latest_checkpoint(cmd.out).name == "000002"  # updates 1, 2 saved; 3 hit the NaN


def test_gym_vec_env_returns_final_observation_on_truncation():
    env = GymVecEnv("Pendulum-v1", 2)
    env.reset(seed=0)
    for _ in range(200):
        obs, _, terminated, truncated, final = env.step(np.zeros((2, 1), np.float32))
    assert truncated.all() and not terminated.any() and not np.array_equal(obs, final)
    agent = ActorCritic(config_for(env, (8,), "tanh", "clip", "param", 0.0, False))
    assert agent.act(obs).shape == (2, 1)
