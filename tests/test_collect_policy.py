"""`nanovla collect --policy`: a saved Policy with action chunks drives, the expert labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nanovla.data import EpisodeDataset
from nanovla.data.collect import CollectConfig, collect
from nanovla.eval import collect as collect_command
from nanovla.models.policy import Policy, PolicyConfig
from nanovla.world import World


def test_policy_with_action_chunks_drives_collection_and_is_reset_where_episodes_end(
    tmp_path: Path, monkeypatch
) -> None:
    small = dict(task="reach", num_envs=3, image_size=32, seed=5, progress=False)
    demos = collect(CollectConfig(episodes=3, out=tmp_path / "demos", **small))
    torch.manual_seed(0)
    config = PolicyConfig(image_size=32, chunk=4, n_action_steps=3)
    Policy.from_dataset(config, EpisodeDataset(demos, progress=False)).save_pretrained(
        tmp_path / "policy"
    )
    calls: list[list[int] | None] = []
    reset = Policy.reset

    def spy(self: Policy, env_ids=None) -> None:
        calls.append(None if env_ids is None else sorted(np.asarray(env_ids).tolist()))
        reset(self, env_ids)

    monkeypatch.setattr(Policy, "reset", spy)
    ended: list[list[int]] = []
    step = World.step

    def logging_step(self: World, actions: np.ndarray):
        out = step(self, actions)
        ended.append(np.flatnonzero(out[2] | out[3]).tolist())
        return out

    monkeypatch.setattr(World, "step", logging_step)
    argv = ["--task", "reach", "--num-envs", "3", "--image-size", "32", "--seed", "5"]
    argv += ["--episodes", "4", "--keep-failures", "--no-progress"]
    argv += ["--out", str(tmp_path / "dagger"), "--policy", str(tmp_path / "policy")]
    assert collect_command.main(argv) == 0

    dataset = EpisodeDataset(tmp_path / "dagger", progress=False)
    assert dataset.num_episodes == 4 and "action.expert" not in dataset.features
    # The recorded label is the reach expert's (it keeps the gripper open), not the untrained
    # policy's action, and the policy's wandering visited other states than the expert's.
    assert np.all(dataset.actions[:, 2] == -1.0)
    expert = EpisodeDataset(demos, progress=False)
    assert not np.array_equal(dataset.states[: expert.num_frames], expert.states)
    # Reset once after the world's reset, then after each step for exactly the envs whose
    # episode ended, so no queued chunk runs into a new episode.
    assert calls == [None] + [envs for envs in ended if envs] and len(calls) >= 3
