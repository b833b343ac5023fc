"""Collection: per-env buffers across auto-resets, success filtering, exact episode count, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nanovla.data import DatasetWriter, EpisodeDataset
from nanovla.data.collect import EXPERT_ACTION_KEY, CollectConfig, collect, record_episodes


class CountingWorld:
    """A stand-in for the vectorized world: state = [env, step, episode serial, 0].

    Env i's episodes last 3 + (serial % 3) steps; an episode succeeds unless its serial is a
    multiple of 4. Like the real world it auto-resets: the observation returned at the last
    step is the next episode's first frame.
    """

    def __init__(self, num_envs: int = 3) -> None:
        self.num_envs = num_envs
        self.serial = np.arange(num_envs)
        self.step_count = np.zeros(num_envs, dtype=np.int64)
        self.next_serial = num_envs

    def _obs(self) -> dict:
        state = np.stack(
            [np.arange(self.num_envs), self.step_count, self.serial, 0 * self.serial], 1
        )
        image = np.zeros((self.num_envs, 8, 8, 3), dtype=np.uint8)
        image[:, 0, 0, 0], image[:, 0, 0, 1] = self.step_count, self.serial
        return {
            "image": image,
            "state": state.astype(np.float32),
            "instruction": [f"episode {s}" for s in self.serial],
            "task": ["reach" if s % 2 else "push" for s in self.serial],
        }

    def reset(self, seed: int = 0) -> dict:
        return self._obs()

    def expert_action(self) -> np.ndarray:
        return np.stack([self.serial, self.step_count, -self.step_count], 1).astype(np.float32)

    def step(self, action: np.ndarray):
        self.step_count += 1
        done = self.step_count >= 3 + self.serial % 3
        success = done & (self.serial % 4 != 0)
        for i in np.flatnonzero(done):
            self.serial[i], self.step_count[i] = self.next_serial, 0
            self.next_serial += 1
        zeros = np.zeros(self.num_envs)
        return self._obs(), zeros, done, np.zeros_like(done), {"success": success}


def test_records_whole_successful_episodes(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "ds", fps=10)
    report = record_episodes(CountingWorld(), writer, num_episodes=7, progress=False)
    writer.finalize()
    dataset = EpisodeDataset(tmp_path / "ds", progress=False)
    assert dataset.num_episodes == report.episodes == 7 and report.frames == dataset.num_frames
    assert report.successes < report.attempts  # serials 0, 4, ... failed and were dropped
    serials = dataset.states[dataset.episode_bounds[:, 0], 2]
    # The first 7 successful rollouts in the order they STARTED, not the order they finished.
    np.testing.assert_array_equal(serials, [1, 2, 3, 5, 6, 7, 9])
    for lo, hi in dataset.episode_bounds:
        states = dataset.states[lo:hi]  # (T, 4): [env, step, serial, 0]
        serial = int(states[0, 2])
        assert serial % 4 != 0 and hi - lo == 3 + serial % 3
        np.testing.assert_array_equal(states[:, 1], np.arange(hi - lo))  # starts at the reset frame
        np.testing.assert_array_equal(states[:, 2], serial)  # never mixes two episodes
        np.testing.assert_array_equal(
            dataset.actions[lo:hi, 1], states[:, 1]
        )  # action of that frame
        assert dataset.images[lo, 0, 0, 1] == serial
        assert dataset.tasks[int(dataset.task_index[lo])] == f"episode {serial}"
    assert report.per_family["push"][1] + report.per_family["reach"][1] == report.attempts


def test_keep_failures_and_policy_actions(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "ds", fps=10)

    def policy(obs: dict) -> np.ndarray:
        return np.full((len(obs["state"]), 3), 0.5, dtype=np.float32)

    record_episodes(CountingWorld(), writer, 6, act=policy, keep_failures=True, progress=False)
    writer.finalize()
    dataset = EpisodeDataset(tmp_path / "ds", progress=False)
    serials = dataset.states[dataset.episode_bounds[:, 0], 2]
    assert 0 in serials  # serial 0 failed but was kept
    assert np.all(dataset.actions == 0.5)
    assert EXPERT_ACTION_KEY in dataset.features and EXPERT_ACTION_KEY in dataset.stats


class FailingWorld(CountingWorld):
    """Every rollout fails."""

    def step(self, action: np.ndarray):
        obs, reward, done, truncated, _ = super().step(action)
        return obs, reward, done, truncated, {"success": np.zeros_like(done)}


def test_gives_up_when_nothing_succeeds(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "ds", fps=10)
    with pytest.raises(ValueError, match="only 0 of 2 episodes kept after 5 rollouts"):
        record_episodes(FailingWorld(), writer, 2, max_attempts=5, progress=False)
    assert not (tmp_path / "ds").exists()


def test_config_errors(tmp_path: Path) -> None:
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="exists: already exists"):
        collect(CollectConfig(out=tmp_path / "exists", episodes=1))
    with pytest.raises(ValueError, match="--episodes must be >= 1"):
        collect(CollectConfig(out=tmp_path / "new", episodes=0))
    with pytest.raises(FileNotFoundError, match="--policy checkpoint"):
        collect(CollectConfig(out=tmp_path / "new", policy=tmp_path / "missing"))


def _world_available() -> bool:
    try:
        from nanovla.world import make_world  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _world_available(), reason="nanovla.world.make_world not built yet")
def test_collect_cli_smoke(tmp_path: Path) -> None:
    out = tmp_path / "reach"
    command = [
        sys.executable,
        "-m",
        "nanovla.cli",
        "collect",
        "--task",
        "reach",
        "--episodes",
        "4",
        "--num-envs",
        "4",
        "--image-size",
        "32",
        "--out",
        str(out),
        "--no-progress",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr
    assert "4 episodes" in run.stdout and "success" in run.stdout
    dataset = EpisodeDataset(out, progress=False)
    assert dataset.num_episodes == 4 and dataset.image_shape == (32, 32, 3)
    again = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_collect_does_not_import_torch() -> None:
    # `nanovla collect` starts in a second instead of waiting seconds for torch on a busy machine.
    code = "import sys, nanovla.data.collect; assert 'torch' not in sys.modules, 'torch imported'"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def test_train_demonstration_cache_key_tracks_collection_options_and_expert_version(monkeypatch):
    from nanovla.train import cli as train_cli

    base = train_cli.TrainCommand()
    key = train_cli.dataset_dir(base)
    assert key.parent == Path("data") and key.name.startswith("reach-push-pick_place-6000ep-")
    assert train_cli.dataset_dir(train_cli.TrainCommand()) == key  # deterministic
    assert train_cli.dataset_dir(train_cli.TrainCommand(expert_noise=0.0)) != key
    assert train_cli.dataset_dir(train_cli.TrainCommand(seed=1)) != key
    # A changed expert must not reuse demonstrations recorded by the old one.
    monkeypatch.setattr(train_cli, "EXPERT_VERSION", train_cli.EXPERT_VERSION + 1)
    assert train_cli.dataset_dir(base) != key
    given = Path("somewhere/else")
    assert train_cli.dataset_dir(train_cli.TrainCommand(dataset=given)) == given
