import json

import numpy as np
import pytest

from nanovla.eval import EvalConfig, evaluate, format_table, run_episodes
from nanovla.io import write_json
from nanovla.world import make_world


class TwinExpert:
    """Acts as the scripted expert by stepping a twin world built with the same seed.

    The world is deterministic, so the twin stays in lockstep with the evaluated world; this lets
    a test check that evaluation counts the expert's successes as the world reports them.
    """

    def __init__(self, family: str, episodes: int, seed: int, instructions: str = "train"):
        self.world = make_world(family, num_envs=episodes, seed=seed, instructions=instructions)
        self.world.reset(seed=seed)
        self.resets: list[np.ndarray] = []

    def select_action(self, obs):
        action = self.world.expert_action()
        self.world.step(action)
        return action

    def reset(self, env_ids=None):
        if env_ids is not None:
            self.resets.append(np.asarray(env_ids))


class SeededRandom:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def select_action(self, obs):
        return self.rng.uniform(-1, 1, (len(obs["instruction"]), 3)).astype(np.float32)


def test_expert_rollouts_count_as_successes():
    expert = TwinExpert("reach", episodes=16, seed=123)
    result = run_episodes(expert, "reach", "train", episodes=16, seed=123, record=2)
    assert result.success.mean() >= 0.95
    limit = make_world("reach").max_steps["reach"]
    assert np.all((result.length >= 1) & (result.length <= limit))
    assert result.frames is not None and result.frames.shape[1:] == (2, 64, 64, 3)
    assert len(result.frames) == result.length.max() + 1
    # every env was reset once, at the step its first episode ended
    assert sorted(np.concatenate(expert.resets).tolist()) == list(range(16))


def test_rollouts_are_fixed_by_the_seed():
    first = run_episodes(SeededRandom(0), "reach", "train", episodes=8, seed=5)
    second = run_episodes(SeededRandom(0), "reach", "train", episodes=8, seed=5)
    assert first.instructions == second.instructions
    np.testing.assert_array_equal(first.success, second.success)
    np.testing.assert_array_equal(first.length, second.length)


def test_evaluate_schema_table_and_videos(tmp_path):
    config = EvalConfig(episodes=4, splits=("seen", "ko"), gifs=1)
    result = evaluate(SeededRandom(1), ("reach",), config, video_dir=tmp_path / "videos")
    assert result["episodes_per_task"] == 4
    for split in ("seen", "ko"):
        summary = result["splits"][split]
        lo, hi = summary["ci95"]
        assert 0 <= lo <= summary["success"] <= hi <= 1
        assert set(summary["per_task"]) == {"reach"}
        assert summary["episodes"] == 4
    assert len(result["videos"]) == 1 and (tmp_path / "videos").is_dir()
    table = format_table(result)
    assert "seen" in table and "ko" in table and "(" in table
    path = write_json(tmp_path / "eval.json", result)
    assert json.loads(path.read_text())["splits"]["seen"]["episodes"] == 4


def test_evaluate_rejects_unknown_split():
    with pytest.raises(ValueError, match="unknown eval split"):
        evaluate(SeededRandom(0), ("reach",), EvalConfig(splits=("unseen",)))
