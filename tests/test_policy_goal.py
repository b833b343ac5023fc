"""The auxiliary grounding target: demonstrations record subgoal positions, the policy learns them."""

import numpy as np
import pytest
import torch

from nanovla.data import BatchLoader, EpisodeDataset
from nanovla.data.collect import CollectConfig, collect
from nanovla.data.format import ENV_STATE_KEY
from nanovla.models.policy import Policy, PolicyConfig
from nanovla.world import make_world


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> EpisodeDataset:
    out = tmp_path_factory.mktemp("goal") / "data"
    collect(CollectConfig(task="reach,push", episodes=6, num_envs=6, out=out, progress=False))
    return EpisodeDataset(out, progress=False)


def test_world_goal_positions_name_the_target_and_place():
    world = make_world(("reach", "pick_place"), num_envs=16, seed=3)
    world.reset(seed=3)
    goals = world.goal_positions()
    assert goals.shape == (16, 4) and goals.dtype == np.float32
    state = world.state
    rows = np.arange(16)
    target = state.obj_pos[rows, state.target_obj[:, 0]]
    np.testing.assert_allclose(goals[:, :2], target, atol=1e-6)
    reach = state.family == 0
    np.testing.assert_allclose(goals[reach, 2:], goals[reach, :2])  # reach: place = object
    bowls = state.bowl_pos[rows, state.target_place[:, 0]]
    np.testing.assert_allclose(goals[~reach, 2:], bowls[~reach], atol=1e-6)


def test_demonstrations_record_goals_and_the_loader_serves_them(dataset):
    assert dataset.env_states is not None and dataset.env_states.shape == (dataset.num_frames, 4)
    assert np.all((dataset.env_states >= 0) & (dataset.env_states <= 1))
    batch = BatchLoader(dataset, 8, chunk=2).next_batch()
    assert batch[ENV_STATE_KEY].shape == (8, 4)


def test_policy_learns_goals_only_when_the_dataset_has_them(dataset):
    torch.manual_seed(0)
    policy = Policy.from_dataset(PolicyConfig(chunk=2), dataset)
    assert policy.config.goal_dim == 4 and policy.goal_head is not None
    batch = BatchLoader(dataset, 8, chunk=2).next_batch()
    loss, metrics = policy(batch)
    assert "goal_l1" in metrics and float(metrics["bc_loss"]) < loss.item()
    loss.backward()
    assert all(p.grad is not None for p in policy.goal_head.parameters())
    without = {key: value for key, value in batch.items() if key != ENV_STATE_KEY}
    loss_without, metrics_without = policy(without)
    assert "goal_l1" not in metrics_without
    off = Policy.from_dataset(PolicyConfig(chunk=2, goal_weight=0.0), dataset)
    assert off.goal_head is None


def test_dart_collection_records_clean_labels_of_noisy_rollouts(tmp_path):
    noisy = collect(
        CollectConfig(
            task="reach", episodes=4, num_envs=4, out=tmp_path / "dart", expert_noise=0.5,
            progress=False,
        )
    )  # fmt: skip
    clean = collect(
        CollectConfig(task="reach", episodes=4, num_envs=4, out=tmp_path / "clean", progress=False)
    )
    noisy_data, clean_data = (
        EpisodeDataset(noisy, progress=False),
        EpisodeDataset(clean, progress=False),
    )
    # the reach expert keeps the gripper open: a noisy *label* would not be exactly -1
    assert np.all(noisy_data.actions[:, 2] == -1.0)
    # ...while the executed noise did change the visited states
    assert not np.array_equal(noisy_data.states[:20], clean_data.states[:20])
