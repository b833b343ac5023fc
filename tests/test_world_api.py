"""The World contract others code against: shapes, auto-reset, determinism, state, bad input."""

import numpy as np
import pytest

from nanovla.world import (
    HELDOUT_COMBOS,
    KINDS,
    MAX_STEPS,
    STATE_DIM,
    TASK_FAMILIES,
    World,
    make_world,
)
from nanovla.world.scene import COLORS
from nanovla.world.tasks import distance_to_go


def test_reset_and_step_shapes_and_types():
    world = make_world("pick_place", num_envs=8, image_size=64, seed=0)
    obs = world.reset(seed=0)
    assert obs["image"].shape == (8, 64, 64, 3) and obs["image"].dtype == np.uint8
    assert obs["state"].shape == (8, STATE_DIM) and obs["state"].dtype == np.float32
    assert len(obs["instruction"]) == 8 and all(isinstance(t, str) for t in obs["instruction"])
    assert obs["family"] == ["pick_place"] * 8 and "task" not in obs  # `task`: the instruction
    assert (world.num_envs, world.image_size, world.state_dim, world.action_dim) == (8, 64, 4, 3)
    assert world.families == ("pick_place",) and world.max_steps == {"pick_place": 60}
    action = world.expert_action()
    assert action.shape == (8, 3) and action.dtype == np.float32
    assert np.all(np.abs(action) <= 1.0)
    obs, reward, terminated, truncated, info = world.step(action)
    assert reward.shape == (8,) and reward.dtype == np.float32
    assert terminated.dtype == bool and truncated.dtype == bool
    assert info["success"].shape == (8,) and info["episode_step"].tolist() == [1] * 8


def test_state_is_proprioception_only():
    world = make_world("reach", num_envs=4, seed=1)
    state = world.reset(seed=1)["state"]
    np.testing.assert_allclose(state[:, :2], world.state.gripper, rtol=1e-6)
    assert np.all(state[:, 2:] == 0)  # open, holding nothing at the start


@pytest.mark.parametrize("size", [64, 96, 128, 224])
def test_image_sizes(size):
    image = make_world("suite", num_envs=2, image_size=size, seed=0).reset(seed=0)["image"]
    assert image.shape == (2, size, size, 3)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 8  # table, zones, bowls, objects


def test_same_seed_same_episodes_and_images():
    def run(seed):
        world = make_world("suite", num_envs=6, seed=seed)
        frames = [world.reset(seed=seed)["image"]]
        rng = np.random.default_rng(0)
        for _ in range(45):  # long enough for auto-resets
            obs, *_ = world.step(rng.uniform(-1, 1, (6, 3)))
            frames.append(obs["image"])
        return np.stack(frames), world.get_state(), obs["instruction"]

    frames_a, state_a, text_a = run(3)
    frames_b, state_b, text_b = run(3)
    assert np.array_equal(frames_a, frames_b) and text_a == text_b
    for key in state_a:
        assert np.array_equal(state_a[key], state_b[key]), key
    frames_c, _, _ = run(4)
    assert not np.array_equal(frames_a[0], frames_c[0])


def test_reset_seed_fixes_initial_states():
    first = make_world("push", num_envs=5, seed=7).reset(seed=11)
    second = make_world("push", num_envs=5, seed=99).reset(seed=11)
    assert np.array_equal(first["image"], second["image"])
    assert first["instruction"] == second["instruction"]


def test_auto_reset_returns_next_episode_first_observation():
    world = make_world("reach", num_envs=4, seed=2)
    world.reset(seed=2)
    for _ in range(MAX_STEPS["reach"]):
        before = world.get_state()
        obs, reward, terminated, truncated, info = world.step(world.expert_action())
        if terminated.any():
            break
    done = np.flatnonzero(terminated)
    assert len(done) and np.all(info["success"][done]) and np.all(reward[done] == 1.0)
    assert np.all(info["episode_step"][done] == 0)
    assert not np.allclose(world.state.obj_pos[done], before["obj_pos"][done])
    running = np.flatnonzero(~terminated)
    assert np.all(info["episode_step"][running] == before["episode_step"][running] + 1)


def test_truncation_at_step_limit():
    world = make_world("pick_place", num_envs=3, seed=0)
    world.reset(seed=0)
    idle = np.tile([0.0, 0.0, -1.0], (3, 1))
    for step in range(1, MAX_STEPS["pick_place"] + 1):
        _, reward, terminated, truncated, info = world.step(idle)
        assert truncated.all() == (step == MAX_STEPS["pick_place"])
        assert not terminated.any() and not reward.any()
    assert np.all(info["episode_step"] == 0)


def test_get_set_state_round_trip_and_copies():
    world = make_world("sort", num_envs=3, seed=5)
    obs = world.reset(seed=5)
    snapshot = world.get_state()
    snapshot["gripper"][:] = -5.0  # a copy: the world must not change
    assert np.all(world.state.gripper > -1)
    snapshot = world.get_state()
    for _ in range(7):
        world.step(world.expert_action())
    world.set_state(snapshot)
    again = world.render()
    assert np.array_equal(again, obs["image"])
    assert world.instructions == obs["instruction"]


def test_suite_lists_and_combined_splits():
    assert make_world("suite").families == TASK_FAMILIES
    world = make_world(["reach", "push"], num_envs=64, seed=0, instructions="train+ko")
    assert world.families == ("reach", "push")
    obs = world.reset(seed=0)
    assert set(obs["family"]) == {"reach", "push"}
    korean = [any("\uac00" <= ch <= "\ud7a3" for ch in text) for text in obs["instruction"]]
    assert 0 < sum(korean) < 64


def test_user_templates():
    world = make_world("reach", num_envs=3, instructions=["please touch {object} now"])
    assert all(t.startswith("please touch the ") and t.endswith(" now") for t in world.instructions)


@pytest.mark.parametrize("targets", ["train", "heldout"])
def test_target_attribute_splits(targets):
    world = make_world(["pick_place", "sort"], num_envs=300, seed=0, targets=targets)
    s = world.state
    heldout = {(KINDS.index(k), COLORS.index(c)) for k, c in HELDOUT_COMBOS}
    for k in range(2):
        used = s.target_obj[:, k] >= 0
        slots = s.target_obj[used, k]
        rows = np.flatnonzero(used)
        pairs = zip(s.obj_kind[rows, slots], s.obj_color[rows, slots], strict=True)
        is_heldout = np.array([(int(a), int(b)) in heldout for a, b in pairs])
        assert is_heldout.all() if targets == "heldout" else not is_heldout.any()


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"tasks": "fly"}, "tasks"),
        ({"tasks": []}, "tasks"),
        ({"tasks": "reach", "image_size": 16}, "image_size"),
        ({"tasks": "reach", "num_envs": 0}, "num_envs"),
        ({"tasks": "reach", "instructions": "french"}, "instructions"),
        ({"tasks": "reach", "instructions": ["go somewhere"]}, "{object}"),
        ({"tasks": "reach", "instructions": ["put {object} in {place}"]}, "instructions"),
        ({"tasks": "reach", "targets": "some"}, "targets"),
        ({"tasks": "reach", "expert_noise": -1.0}, "expert_noise"),
    ],
)
def test_bad_construction_raises_one_clear_error(kwargs, argument):
    with pytest.raises(ValueError, match=argument.replace("{", r"\{").replace("}", r"\}")):
        make_world(**kwargs)


@pytest.mark.parametrize(
    "actions, message",
    [
        (np.zeros((2, 3)), r"shape \(3, 3\)"),
        (np.zeros((3, 2)), r"shape \(3, 3\)"),
        (np.array([[0.0, np.nan, 0.0]] * 3), "NaN"),
    ],
)
def test_bad_actions(actions, message):
    world = make_world("reach", num_envs=3)
    with pytest.raises(ValueError, match="actions: .*" + message):
        world.step(actions)


def test_bad_state_dict():
    world = make_world("reach", num_envs=2)
    state = world.get_state()
    del state["gripper"]
    with pytest.raises(ValueError, match="missing keys.*gripper"):
        world.set_state(state)


def test_shaped_reward_telescopes_and_rewards_the_expert():
    world = World("suite", num_envs=32, seed=6, render=False, autoreset=False)
    start, total = distance_to_go(world.state), np.zeros(32)
    for _ in range(15):
        *_, info = world.step(world.expert_action())
        total += info["shaped_reward"]
    np.testing.assert_allclose(total, start - distance_to_go(world.state), atol=1e-5)
    # The expert makes progress (push episodes may still be walking around their object).
    assert np.mean(total > 0) >= 0.75 and total.mean() > 0.1
