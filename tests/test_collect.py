"""Collection: per-env buffers across auto-resets, success filtering, exact episode count, expert
labels under DART and policy drivers, actor resets, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nanovla.data import DatasetWriter, EpisodeDataset
from nanovla.data.collect import CollectConfig, collect
from nanovla.data.recording import record_episodes
from nanovla.eval.collect import CollectCommand, run
from nanovla.world import make_world


class CountingWorld:
    """A stand-in for the vectorized world: state = [env, step, episode serial, 0].

    Env i's episodes last 3 + (serial % 3) steps; an episode succeeds unless its serial is a
    multiple of 4. Like the real world it auto-resets: the observation returned at the last
    step is the next episode's first frame. `executed` logs (serial, action) of every step,
    `ended` the envs whose episode ended at each step.
    """

    def __init__(self, num_envs: int = 3) -> None:
        self.num_envs = num_envs
        self.serial = np.arange(num_envs)
        self.step_count = np.zeros(num_envs, dtype=np.int64)
        self.next_serial = num_envs
        self.executed: list[tuple[np.ndarray, np.ndarray]] = []
        self.ended: list[list[int]] = []

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
            "family": ["reach" if s % 2 else "push" for s in self.serial],
        }

    def reset(self, seed: int = 0) -> dict:
        return self._obs()

    def expert_action(self, noise: float = 0.0) -> np.ndarray:
        return np.stack([self.serial, self.step_count, -self.step_count], 1).astype(np.float32)

    def step(self, action: np.ndarray):
        self.executed.append((self.serial.copy(), np.array(action, copy=True)))
        self.step_count += 1
        done = self.step_count >= 3 + self.serial % 3
        success = done & (self.serial % 4 != 0)
        self.ended.append(np.flatnonzero(done).tolist())
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


def test_policy_driven_dataset_records_the_experts_label_of_each_visited_state(tmp_path: Path):
    writer = DatasetWriter(tmp_path / "ds", fps=10)

    class Constant:
        def select_action(self, obs: dict) -> np.ndarray:
            return np.full((len(obs["state"]), 3), 0.5, dtype=np.float32)

    world = CountingWorld()
    record_episodes(world, writer, 6, actor=Constant(), keep_failures=True, progress=False)
    writer.finalize()
    assert all(np.all(action == 0.5) for _, action in world.executed)  # the policy drove
    dataset = EpisodeDataset(tmp_path / "ds", progress=False)
    serials = dataset.states[dataset.episode_bounds[:, 0], 2]
    assert 0 in serials  # serial 0 failed but was kept
    # CountingWorld's expert says [serial, step, -step] in state [env, step, serial, 0].
    states = dataset.states
    expert = np.stack([states[:, 2], states[:, 1], -states[:, 1]], 1)
    np.testing.assert_array_equal(dataset.actions, expert)
    assert set(dataset.features) & {"action.expert"} == set()  # one label column, `action`


class ChunkingActor:
    """Plans a chunk of `steps` actions [serial, k, 0] from an env's observation and executes it
    over the next steps, like a Policy with n_action_steps > 1; logs its reset calls."""

    def __init__(self, steps: int = 4) -> None:
        self.steps, self.queue, self.resets = steps, None, []

    def select_action(self, obs: dict) -> np.ndarray:
        serial = obs["state"][:, 2]
        if self.queue is None:
            self.queue = [[] for _ in serial]
        for i, queue in enumerate(self.queue):
            if not queue:
                queue.extend([serial[i], k, 0.0] for k in range(self.steps))
        return np.array([queue.pop(0) for queue in self.queue], dtype=np.float32)

    def reset(self, env_ids: np.ndarray | None = None) -> None:
        self.resets.append(None if env_ids is None else sorted(np.asarray(env_ids).tolist()))
        if env_ids is None:
            self.queue = None
        else:
            for i in np.asarray(env_ids).tolist():
                self.queue[i] = []


def test_actor_is_reset_where_episodes_end_so_no_chunk_outlives_its_episode(tmp_path: Path):
    writer = DatasetWriter(tmp_path / "ds", fps=10)
    world, actor = CountingWorld(), ChunkingActor(steps=4)  # chunks outlast 3-step episodes
    record_episodes(world, writer, 8, actor=actor, keep_failures=True, progress=False)
    for serial, action in world.executed:  # each action was planned in the episode it ran in
        np.testing.assert_array_equal(action[:, 0], serial)
    expected = [None] + [ended for ended in world.ended if ended]
    assert actor.resets == expected  # once at the start, then exactly the envs that ended


def test_dart_executes_the_worlds_noise_path_and_records_clean_labels(tmp_path: Path) -> None:
    """collect's DART noise is `World.perturb`: the world executes what `nanovla world demo
    --noise` executes (the same seeded draws, the grip left clean), and records the clean label."""
    kwargs = dict(tasks="pick_place", num_envs=4, image_size=32, seed=3, expert_noise=0.4)
    world, twin = make_world(**kwargs), make_world(**kwargs)
    executed, step = [], world.step

    def logging_step(actions):
        executed.append(np.array(actions, copy=True))
        return step(actions)

    world.step = logging_step
    writer = DatasetWriter(tmp_path / "ds", fps=10)
    record_episodes(world, writer, 2, seed=3, progress=False)
    writer.finalize()
    twin.reset(seed=3)
    for actions in executed[:30]:
        clean = twin.expert_action(noise=0.0)
        demo = twin.expert_action()  # the demo's noisy expert, from the same state
        np.testing.assert_array_equal(actions, demo)
        assert not np.allclose(actions[:, :2], clean[:, :2])
        np.testing.assert_array_equal(actions[:, 2], clean[:, 2])  # grip is clean
        twin.step(actions)
    dataset = EpisodeDataset(tmp_path / "ds", progress=False)
    assert set(np.unique(dataset.actions[:, 2])) <= {-1.0, 1.0}  # clean grip labels


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
        run(CollectCommand(out=tmp_path / "new", policy=tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        run(CollectCommand(out=tmp_path / "new", policy=tmp_path / "empty"))
    assert not (tmp_path / "new").exists()


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
    # `nanovla collect` starts in a second instead of waiting seconds for torch on a busy machine:
    # torch and the models load only with --policy (data/ never imports a model).
    code = (
        "import sys, nanovla.data.collect, nanovla.eval.collect;"
        "assert 'torch' not in sys.modules, 'torch imported';"
        "assert not any(m.startswith('nanovla.models') for m in sys.modules), 'models imported'"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def test_train_demonstration_cache_key_tracks_collection_options_and_expert_version(monkeypatch):
    from nanovla import pipeline
    from nanovla.world import experts

    base = pipeline.TrainCommand()
    key = pipeline.dataset_dir(base)
    assert key.parent == Path("data") and key.name.startswith("reach-push-pick_place-6000ep-")
    assert pipeline.dataset_dir(pipeline.TrainCommand()) == key  # deterministic
    assert pipeline.dataset_dir(pipeline.TrainCommand(expert_noise=0.0)) != key
    assert pipeline.dataset_dir(pipeline.TrainCommand(targets="all")) != key
    assert pipeline.dataset_dir(pipeline.TrainCommand(seed=1)) != key
    # A changed expert must not reuse demonstrations recorded by the old one.
    monkeypatch.setattr(experts, "EXPERT_VERSION", experts.EXPERT_VERSION + 1)
    assert pipeline.dataset_dir(base) != key
    given = Path("somewhere/else")
    assert pipeline.dataset_dir(pipeline.TrainCommand(dataset=given)) == given
