"""Kinematic invariants: on the table, no interpenetration, no teleporting, grasp semantics."""

import numpy as np

from nanovla.world import make_world
from nanovla.world.dynamics import MAX_SPEED
from nanovla.world.scene import GRIPPER_RADIUS, GRIPPER_RANGE, ZONE_RECTS
from nanovla.world.tasks import success

OVERLAP_TOLERANCE = 0.005  # table units; the smallest object is 0.07 across


def free_mask(state):
    free = state.obj_active.copy()
    holding = state.held >= 0
    free[np.flatnonzero(holding), state.held[holding]] = False
    return free


def test_invariants_under_random_and_expert_actions():
    n = 200
    world = make_world("suite", num_envs=n, seed=0, render=False)
    rng = np.random.default_rng(0)
    for t in range(60):
        before, step_before = world.state.obj_pos.copy(), world.state.episode_step.copy()
        world.step(rng.uniform(-1, 1, (n, 3)) if t % 2 else world.expert_action())
        s = world.state
        radii, active = s.radii(), s.obj_active
        # On the table.
        assert np.all(s.obj_pos[active] >= radii[active][:, None] - 1e-9)
        assert np.all(s.obj_pos[active] <= 1 - radii[active][:, None] + 1e-9)
        assert np.all(
            (s.gripper >= GRIPPER_RANGE[0] - 1e-9) & (s.gripper <= GRIPPER_RANGE[1] + 1e-9)
        )
        # Objects do not interpenetrate each other or the gripper.
        dist = np.linalg.norm(s.obj_pos[:, :, None] - s.obj_pos[:, None], axis=-1)
        overlap = radii[:, :, None] + radii[:, None] - dist
        pairs = active[:, :, None] & active[:, None] & ~np.eye(active.shape[1], dtype=bool)
        assert overlap[pairs].max() <= OVERLAP_TOLERANCE
        gap = np.linalg.norm(s.obj_pos - s.gripper[:, None], axis=-1) - radii - GRIPPER_RADIUS
        assert gap[free_mask(s)].min() >= -OVERLAP_TOLERANCE
        # No teleporting within an episode: nothing moves much more than the gripper can.
        same_episode = (s.episode_step == step_before + 1)[:, None] & active
        moved = np.linalg.norm(s.obj_pos - before, axis=-1)[same_episode]
        assert moved.max() <= 2 * MAX_SPEED


def grasp_scene():
    """One pick_place env with the gripper just touching object 0 from its left."""
    world = make_world("pick_place", num_envs=1, seed=0, render=False)
    state = world.get_state()
    target = state["obj_pos"][0, 0]
    radius = world.state.radii()[0, 0]
    state["gripper"][0] = target - [radius + GRIPPER_RADIUS, 0.0]
    world.set_state(state)
    return world


def test_held_object_follows_gripper_and_release_leaves_it():
    world = grasp_scene()
    world.step(np.array([[0.0, 0.0, 1.0]]))
    assert world.state.held[0] == 0 and world.state.obj_grasped[0, 0]
    offset = world.state.obj_pos[0, 0] - world.state.gripper[0]
    for move in ([0.0, 1.0], [1.0, 0.0], [-0.6, -0.8]):
        world.step(np.array([[*move, 1.0]]))
        np.testing.assert_allclose(world.state.obj_pos[0, 0] - world.state.gripper[0], offset)
    where = world.state.obj_pos[0, 0].copy()
    world.step(np.array([[0.0, -1.0, -1.0]]))  # open and move away
    assert world.state.held[0] == -1
    np.testing.assert_allclose(world.state.obj_pos[0, 0], where)


def test_closing_away_from_objects_grasps_nothing():
    world = make_world("pick_place", num_envs=8, seed=1, render=False)
    world.step(np.tile([0.0, 0.0, 1.0], (8, 1)))  # the gripper starts clear of every object
    assert np.all(world.state.held == -1) and np.all(world.state.closed)


def test_open_gripper_pushes_along_contact_normal():
    world = grasp_scene()
    start = world.state.obj_pos[0, 0].copy()
    for _ in range(3):
        world.step(np.array([[1.0, 0.0, -1.0]]))
    moved = world.state.obj_pos[0, 0] - start
    assert moved[0] > 2 * MAX_SPEED and abs(moved[1]) < 1e-6
    assert world.state.held[0] == -1


def test_push_success_requires_never_grasping():
    world = make_world("push", num_envs=1, seed=2, render=False)
    state = world.get_state()
    zone = world.state.zone_id[0, world.state.target_place[0, 0]]
    rect = ZONE_RECTS[zone]
    state["obj_pos"][0, 0] = (rect[:2] + rect[2:]) / 2
    world.set_state(state)
    assert success(world.state)[0]
    state["obj_grasped"][0, 0] = True
    world.set_state(state)
    assert not success(world.state)[0]
