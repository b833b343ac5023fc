"""Scripted experts: success over 200 seeded episodes per family, from clean starts and after 20
random actions, well within the step limits; determinism; noise."""

import numpy as np
import pytest

from nanovla.world import TASK_FAMILIES, make_world
from nanovla.world.scene import BOWL_RADIUS

EPISODES = 200


def first_episodes(world):
    """Steps the expert until every env ends its current episode: (success (N,), length (N,))."""
    n = world.num_envs
    done = np.zeros(n, dtype=bool)
    solved = np.zeros(n, dtype=bool)
    length = np.zeros(n, dtype=np.int64)
    start = world.state.episode_step.copy()
    for _ in range(max(world.max_steps.values()) + 1):
        steps_before = world.state.episode_step.copy()
        _, _, terminated, truncated, info = world.step(world.expert_action())
        ended = (terminated | truncated) & ~done
        solved[ended] = info["success"][ended]
        length[ended] = (steps_before + 1 - start)[ended]
        done |= terminated | truncated
        if done.all():
            return solved, length
    raise AssertionError("some episode outlived its step limit")


@pytest.mark.parametrize("family", TASK_FAMILIES)
def test_expert_solves_seeded_episodes(family):
    world = make_world(family, num_envs=EPISODES, seed=0, render=False)
    solved, length = first_episodes(world)
    print(f"{family}: {solved.mean():.1%} of {EPISODES}, longest {length[solved].max()} steps")
    assert solved.mean() >= 0.98
    # "Well within" the limit: the slowest solved episode needs at most 3/4 of it.
    assert length[solved].max() <= 0.75 * world.max_steps[family]


@pytest.mark.parametrize("family", TASK_FAMILIES)
def test_expert_recovers_after_random_actions(family):
    world = make_world(family, num_envs=EPISODES, seed=1, render=False)
    rng = np.random.default_rng(0)
    for _ in range(20):
        world.step(rng.uniform(-1, 1, (EPISODES, 3)).astype(np.float32))
    # Hand the expert the episode where the random actions left it, with a fresh step budget.
    state = world.get_state()
    state["episode_step"][:] = 0
    world.set_state(state)
    solved, _ = first_episodes(world)
    print(f"{family} after 20 random actions: {solved.mean():.1%} of {EPISODES}")
    assert solved.mean() >= 0.95


def test_suite_expert():
    world = make_world("suite", num_envs=EPISODES, seed=2, render=False)
    solved, _ = first_episodes(world)
    assert solved.mean() >= 0.98


def test_expert_is_a_deterministic_function_of_state():
    world = make_world("suite", num_envs=32, seed=3, render=False)
    rng = np.random.default_rng(1)
    for _ in range(10):
        world.step(rng.uniform(-1, 1, (32, 3)))
    state = world.get_state()
    first = world.expert_action()
    other = make_world("suite", num_envs=32, seed=99, render=False)
    other.set_state(state)
    assert np.array_equal(first, other.expert_action())


def test_expert_noise_is_seeded_and_bounded():
    world = make_world("push", num_envs=16, seed=0, expert_noise=0.3, render=False)
    clean = world.expert_action(noise=0.0)
    noisy = world.expert_action()
    assert not np.allclose(clean, noisy) and np.all(np.abs(noisy) <= 1.0)
    again = make_world("push", num_envs=16, seed=0, expert_noise=0.3, render=False)
    assert np.array_equal(noisy, again.expert_action())
    with pytest.raises(ValueError, match="noise"):
        world.expert_action(noise=float("nan"))


def test_expert_noise_moves_the_motion_only_unless_asked():
    """A noisy grip opens mid-carry and drops the object, so the noise is motion-only by default
    (what DART collection and `world demo --noise` execute); grip_noise=True perturbs it too."""
    world = make_world("pick_place", num_envs=64, seed=1, expert_noise=0.5, render=False)
    clean = world.expert_action(noise=0.0)
    noisy = world.expert_action()
    assert np.all(np.any(noisy[:, :2] != clean[:, :2], axis=1))
    np.testing.assert_array_equal(noisy[:, 2], clean[:, 2])
    gripped = world.expert_action(grip_noise=True)
    assert np.mean(gripped[:, 2] != clean[:, 2]) > 0.5
    given = np.zeros((64, 3), dtype=np.float32)
    perturbed = world.perturb(given, noise=2.0)
    assert np.all(given == 0) and np.all(np.abs(perturbed) <= 1.0)  # a copy, clipped
    assert np.array_equal(world.perturb(given, noise=0.0), given)


def test_push_expert_never_grasps():
    world = make_world("push", num_envs=64, seed=4, render=False)
    for _ in range(world.max_steps["push"]):
        action = world.expert_action()
        assert np.all(action[:, 2] < 0)
        world.step(action)


@pytest.mark.parametrize("family, objects", [("pick_place", 1), ("sort", 2)])
def test_expert_grips_each_object_once(family, objects):
    """No chattering: a clean episode closes and opens the gripper once per object moved (a
    few episodes re-grasp an object that got bumped out of its bowl)."""
    n = 100
    world = make_world(family, num_envs=n, seed=5, render=False)
    done, toggles, previous = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64), None
    for _ in range(world.max_steps[family]):
        action = world.expert_action()
        if previous is not None:
            toggles += ~done & (np.sign(action[:, 2]) != np.sign(previous[:, 2]))
        previous = action
        _, _, terminated, truncated, _ = world.step(action)
        done |= terminated | truncated
    assert np.mean(toggles == 2 * objects) >= 0.95


def test_push_expert_barely_changes_its_mind_when_the_object_moves_a_pixel():
    """What makes an expert clonable from 64x64 pixels: a learner misjudging the object by a pixel
    (1/64 of the table) should still get nearly the expert's move. Grippers placed around the
    object (0.06-0.2 from its centre); the push expert of version 2 (sidestep / back-up / line-up
    regions) turned its move by more than 90 degrees in 7.3% of these states, version 3 in 1.1%."""
    from nanovla.world.experts import push_expert

    n = 4000
    world = make_world("push", num_envs=n, seed=5, render=False)
    state, rng, rows = world.state, np.random.default_rng(0), np.arange(n)
    slot = np.maximum(state.target_obj[:, 0], 0)
    pos = state.obj_pos[rows, slot].copy()
    angle, radius = rng.uniform(0, 2 * np.pi, n), rng.uniform(0.06, 0.2, n)
    offset = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    state.gripper[:] = np.clip(pos + offset, 0.05, 0.95)
    move = push_expert(state)[:, :2]
    turned = []
    for _ in range(4):
        shift = rng.normal(size=(n, 2))
        state.obj_pos[rows, slot] = pos + shift / np.linalg.norm(shift, axis=1, keepdims=True) / 64
        moved = push_expert(state)[:, :2]
        turned.append((move * moved).sum(1) < 0)
    assert np.mean(turned) < 0.03


def release_distances(k: int) -> np.ndarray:
    """Distances of sort's target k from its bowl's centre where the expert lets it go in its
    bowl, over 60 seeded episodes that are not reset once they end."""
    world = make_world("sort", num_envs=60, seed=4, render=False)
    world.autoreset = False
    world.reset(seed=4)
    rows = np.arange(world.num_envs)
    found = []
    for _ in range(world.max_steps["sort"]):
        held = world.state.held.copy()
        _, _, terminated, truncated, _ = world.step(world.expert_action(noise=0.0))
        state = world.state
        slot = state.target_obj[:, k]
        let_go = (held == slot) & (state.held != slot)
        bowl = state.bowl_pos[rows, state.target_place[:, k]]
        distance = np.linalg.norm(state.obj_pos[rows, slot] - bowl, axis=1)
        placed = let_go & (distance <= BOWL_RADIUS)  # (not a wrongly grasped object let go)
        found.append(distance[placed])
        if (terminated | truncated).all():
            break
    return np.concatenate(found)


def test_sort_first_release_widens_only_the_first_pairs_placement(monkeypatch):
    from nanovla.world import experts

    near = release_distances(0)
    monkeypatch.setattr(experts, "SORT_FIRST_RELEASE", 0.06)
    wide = release_distances(0)
    slack = 0.005  # a released object may still be nudged on the step it is let go
    assert near.max() <= experts.RELEASE_DISTANCE + slack and wide.max() <= 0.06 + slack
    assert np.median(wide) > experts.RELEASE_DISTANCE  # let go off-centre, not only allowed to
    assert release_distances(1).max() <= experts.RELEASE_DISTANCE + slack  # second pair
    world = make_world("sort", num_envs=60, seed=4, render=False)
    solved, _ = first_episodes(world)
    assert solved.mean() >= 0.98
