import json

import imageio.v3 as iio
import numpy as np
import pytest

from nanovla.eval import EvalConfig, evaluate, format_table, run_episodes
from nanovla.eval.evaluate import EVAL_SEED, scene_seed
from nanovla.eval.video import FAILURE_RGB, STRIP_HEIGHT, SUCCESS_RGB, mark_outcome
from nanovla.io import write_json
from nanovla.world import World, make_world


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


def _terminal_frames(family: str, episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(E, H, W, 3) terminal frame and (E,) success of each env's first expert episode, from a
    world that does not auto-reset (so the returned observation is the terminal one)."""
    world = World(family, num_envs=episodes, seed=seed, autoreset=False)
    world.reset(seed=seed)
    frames = np.zeros((episodes, 64, 64, 3), dtype=np.uint8)
    success = np.zeros(episodes, dtype=bool)
    done = np.zeros(episodes, dtype=bool)
    while not done.all():
        obs, _, terminated, truncated, info = world.step(world.expert_action())
        ended = (terminated | truncated) & ~done
        frames[ended], success[ended] = obs["image"][ended], info["success"][ended]
        done |= ended
    return frames, success


def test_world_reports_the_terminal_frame_before_auto_reset():
    seed, n = 31, 6
    terminal, _ = _terminal_frames("reach", n, seed)
    world = make_world("reach", num_envs=n, seed=seed)
    world.reset(seed=seed)
    seen = np.zeros(n, dtype=bool)
    while not seen.all():
        obs, _, terminated, truncated, info = world.step(world.expert_action())
        ended = terminated | truncated
        if not ended.any():
            assert "final_image" not in info
            continue
        first = ended & ~seen
        np.testing.assert_array_equal(info["final_image"][first], terminal[first])
        # envs still running show the returned frame; restarted ones show their next episode
        np.testing.assert_array_equal(info["final_image"][~ended], obs["image"][~ended])
        assert not np.array_equal(info["final_image"][first], obs["image"][first])
        seen |= ended


def test_recorded_episode_ends_on_its_terminal_frame():
    seed, n = 123, 8
    expert = TwinExpert("reach", episodes=n, seed=seed)
    result = run_episodes(expert, "reach", "train", episodes=n, seed=seed, record=n)
    terminal, success = _terminal_frames("reach", n, seed)
    np.testing.assert_array_equal(result.success, success)
    assert result.frames is not None and success.any()
    moved = []
    for i in range(n):
        end = int(result.length[i])
        np.testing.assert_array_equal(result.frames[end, i], terminal[i])
        assert (result.frames[end:, i] == terminal[i]).all()  # held while others finish
        moved.append(not np.array_equal(result.frames[end, i], result.frames[end - 1, i]))
    assert any(moved)  # the final move shows (a sub-pixel last step may not, in some episodes)


def test_gifs_show_the_terminal_frame_with_the_outcome_mark(tmp_path):
    episodes = 4
    seed = scene_seed(EVAL_SEED, "reach")
    config = EvalConfig(episodes=episodes, splits=("seen",), gifs=episodes)
    result = evaluate(
        TwinExpert("reach", episodes, seed), ("reach",), config, video_dir=tmp_path / "videos"
    )
    terminal, success = _terminal_frames("reach", episodes, seed)
    assert success.all() and len(result["videos"]) == episodes
    for index, path in enumerate(result["videos"]):
        assert path.endswith(f"reach_{index}_success.gif")
        gif = iio.imread(path)  # (T, 4 * 64 + caption + status strips, 4 * 64, 3)
        last, before = gif[-1].astype(int), gif[0].astype(int)
        assert np.abs(last[: 4 * 64 : 4, ::4] - terminal[index]).max() <= 8  # GIF palette
        status = last[-STRIP_HEIGHT:].reshape(-1, 3)
        assert (np.abs(status - SUCCESS_RGB).sum(1) <= 24).mean() > 0.8  # green strip
        assert before[-STRIP_HEIGHT:].max() <= 24  # no mark while the episode runs


def test_failed_episode_is_marked_red():
    frames = np.zeros((3, 8, 64, 3), dtype=np.uint8)
    marked = mark_outcome(frames, success=False, hold=4)
    assert marked.shape == (3 + 3, 8 + STRIP_HEIGHT, 64, 3)
    assert (marked[:2, 8:] == 0).all()  # black status strip while running
    status = marked[2:, 8:].reshape(len(marked) - 2, -1, 3)
    assert ((status == FAILURE_RGB).all(-1).mean(1) > 0.5).all()  # red, held for 4 frames
    assert (marked[2:] == marked[-1]).all()
    with pytest.raises(ValueError, match="hold"):
        mark_outcome(frames, success=True, hold=0)
