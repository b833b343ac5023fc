"""Maximum-entropy IRL (nanovla.il.maxent_irl, on the grid of nanovla.il.irl_grid, run by
nanovla.il.irl_command): soft value iteration against brute force, recovery of a known reward on
a grid task, the recovered reward executed in the world, the command."""

import itertools
import json

import numpy as np
import pytest
from cli_run import nanovla as nanovla_process

from nanovla.cli import main as nanovla
from nanovla.errors import InputError
from nanovla.eval.evaluate import EVAL_SEED, scene_seed
from nanovla.il.irl_command import IRLCommand, run
from nanovla.il.irl_grid import (
    MOVES,
    _features,
    abstract_states,
    build_mdp,
    expert_demonstrations,
    grid_edges,
    world_success,
)
from nanovla.il.irl_grid import _world as irl_world
from nanovla.il.maxent_irl import (
    KNOWN_WEIGHTS,
    fit_reward,
    greedy_policy,
    known_reward_check,
    soft_value_iteration,
    state_visitation,
)


def test_soft_value_iteration_and_visitation_match_brute_force():
    """V_0(s) = log sum over action sequences of exp(return), and the visitation frequencies are
    those of trajectories weighted by exp(return), on a random deterministic 5-state MDP."""
    rng = np.random.default_rng(0)
    states, actions, horizon = 5, 3, 4
    next_state = rng.integers(0, states, size=(states, actions))
    reward = rng.normal(size=states)
    start = rng.dirichlet(np.ones(states))
    values = soft_value_iteration(reward, next_state, horizon)
    visits = state_visitation(reward, next_state, values, start)
    expected_visits = np.zeros(states)
    for s0 in range(states):
        paths, returns = [], []
        for sequence in itertools.product(range(actions), repeat=horizon - 1):
            path = [s0]
            for a in sequence:
                path.append(next_state[path[-1], a])
            paths.append(path)
            returns.append(reward[path].sum())
        returns = np.array(returns)
        log_z = np.log(np.exp(returns).sum())
        assert values[0, s0] == pytest.approx(log_z, abs=1e-10)
        for path, weight in zip(paths, np.exp(returns - log_z), strict=True):
            np.add.at(expected_visits, path, start[s0] * weight)
    np.testing.assert_allclose(visits, expected_visits, atol=1e-12)
    assert visits.sum() == pytest.approx(horizon)


def test_push_transitions_follow_the_world():
    """Moving into the object's cell pushes it on; into a wall or past its corner is blocked."""
    mdp = build_mdp("push", grid_edges("uniform", 5))
    right, up_right = 1, 2  # MOVES[1] = (1, 0), MOVES[2] = (1, 1)
    assert tuple(MOVES[right]) == (1, 0) and tuple(MOVES[up_right]) == (1, 1)

    def state(gripper, obj, zone=0):
        return int(mdp.index(np.array([zone]), np.array([gripper]), np.array([obj]))[0])

    after = mdp.next_state[state((1, 2), (2, 2)), right]
    assert tuple(mdp.gripper[after]) == (2, 2) and tuple(mdp.obj[after]) == (3, 2)
    at_wall = state((3, 2), (4, 2))  # object in the last column: cannot move right
    assert mdp.next_state[at_wall, right] == at_wall
    diagonal = state((1, 1), (2, 2))  # (1,1) + (1,1) is the object's cell: a diagonal push
    assert tuple(mdp.obj[mdp.next_state[diagonal, up_right]]) == (3, 3)
    grazing = state((1, 2), (2, 2))  # (1,2) -> (2,3) would cut the object's corner at (2,2)
    assert mdp.next_state[grazing, up_right] == grazing


def test_in_zone_feature_is_the_world_check_on_the_zone_grid():
    """On the default grid a cell is in its zone exactly when every point of it is."""
    mdp = build_mdp("push")
    names = list(mdp.feature_names)
    in_zone = mdp.features[:, names.index("in_zone")] > 0
    rng = np.random.default_rng(1)
    from nanovla.world.scene import ZONE_RECTS

    sample = rng.choice(mdp.num_states, size=2000)
    for s in sample:
        x0, y0, x1, y1 = ZONE_RECTS[mdp.zone[s]]
        cx, cy = mdp.obj[s]
        low, high = mdp.edges[[cx, cy]], mdp.edges[[cx + 1, cy + 1]]
        inside = low[0] >= x0 and low[1] >= y0 and high[0] <= x1 and high[1] <= y1
        assert in_zone[s] == inside
    assert 0 < in_zone.mean() < 0.2


@pytest.mark.parametrize("task, cells", [("reach", 5), ("push", 4)])
def test_known_reward_is_recovered(task, cells):
    """(a): on a grid task with a known true reward, the recovered reward's MaxEnt policy
    matches the demonstrations' feature counts within 1% and correlates >= 0.9 with the truth."""
    mdp = build_mdp(task, grid_edges("uniform", cells))
    weights = np.array([KNOWN_WEIGHTS[task][name] for name in mdp.feature_names])
    start = np.zeros(mdp.num_states)
    start[np.random.default_rng(0).choice(mdp.num_states, size=50)] = 1.0
    result = known_reward_check(
        mdp, weights, start / start.sum(), 2000, 12, seed=0, show_progress=False
    )
    assert result["feature_gap"] < 0.01
    assert result["reward_correlation"] >= 0.9
    recovered = np.array(list(result["recovered_weights"].values()))
    assert np.corrcoef(recovered, weights)[0, 1] > 0.9


def test_mlp_reward_matches_features():
    """The MLP option (deep MaxEnt gradient) also drives the feature gap down."""
    mdp = build_mdp("reach", grid_edges("uniform", 5))
    weights = np.array([KNOWN_WEIGHTS["reach"][name] for name in mdp.feature_names])
    start = np.full(mdp.num_states, 1.0 / mdp.num_states)
    result = known_reward_check(
        mdp, weights, start, 2000, 10, seed=0, reward="mlp", iterations=150, lr=0.05,
        show_progress=False,
    )  # fmt: skip
    assert result["feature_gap"] < 0.02
    assert result["reward_correlation"] >= 0.9
    assert "recovered_weights" not in result


def test_expert_demonstrations_are_discretized_paths():
    """Expert trajectories: consecutive abstract states differ (until the padding), start at the
    scene's abstract state, and in reach end touching (gripper in the target's cell)."""
    mdp = build_mdp("reach")
    demos = expert_demonstrations(mdp, 30, seed=3, horizon=24)
    world = irl_world("reach", 30, 3)
    np.testing.assert_array_equal(demos.states[:, 0], abstract_states(mdp, world.state))
    last = demos.states[:, -1]
    assert (mdp.gripper[last] == mdp.obj[last]).all(1).all()
    for row in demos.states:
        changes = np.flatnonzero(row[1:] != row[:-1])
        assert len(changes) == 0 or changes.max() == len(changes) - 1  # repeats only at the end
        # One cell per abstract step, except the last: touching snaps into the target's cell.
        steps = np.abs(mdp.gripper[row[1:]] - mdp.gripper[row[:-1]])[: max(len(changes) - 1, 0)]
        assert steps.max(initial=0) <= 1


def test_recovered_reach_reward_succeeds_in_the_world():
    """(b) for reach: IRL on the world expert's discretized demonstrations, the recovered
    reward's optimal policy run in the continuous world on 200 evaluation scenes: >= 0.90."""
    mdp = build_mdp("reach")
    demos = expert_demonstrations(mdp, 100, seed=0, horizon=24)
    fit = fit_reward(mdp, demos, iterations=25, show_progress=False)
    assert fit.feature_gap < 0.01
    policy = greedy_policy(mdp, fit.reward, 24)
    success, _ = world_success(mdp, policy, 200, scene_seed(EVAL_SEED, "reach"))
    assert success.mean() >= 0.90
    stay = np.zeros(mdp.num_states, dtype=np.int64)
    untrained = world_success(mdp, stay, 200, scene_seed(EVAL_SEED, "reach"))[0]
    assert untrained.mean() < 0.2  # standing still rarely touches the target


def test_recovered_push_reward_succeeds_in_the_world():
    """(b) for push: a short fit (3 L-BFGS iterations on 50 demonstrations; `nanovla irl` runs
    50 on 200) already gives a reward whose plan pushes the object into its zone on >= 0.90 of
    the 200 evaluation scenes, where standing still never does."""
    mdp = build_mdp("push")
    demos = expert_demonstrations(mdp, 50, seed=0, horizon=48)
    fit = fit_reward(mdp, demos, iterations=3, show_progress=False)
    names = list(mdp.feature_names)
    assert fit.weights[names.index("in_zone")] > 0 > fit.weights[names.index("gripper_to_object")]
    policy = greedy_policy(mdp, fit.reward, 48)
    success, _ = world_success(mdp, policy, 200, scene_seed(EVAL_SEED, "push"))
    assert success.mean() >= 0.90
    stay = np.zeros(mdp.num_states, dtype=np.int64)
    assert world_success(mdp, stay, 50, scene_seed(EVAL_SEED, "push"))[0].mean() == 0


def test_command_writes_figures_and_plot(tmp_path, capsys):
    """`nanovla irl` with tiny settings: irl.json holds the figures, reward.png exists."""
    out = tmp_path / "irl"
    argv = ["irl", "--task", "reach", "--out", str(out), "--demos", "20", "--episodes", "20"]
    argv += ["--known-demos", "200", "--iterations", "10", "--grid", "uniform", "--cells", "5"]
    assert nanovla([*argv, "--no-progress"]) == 0
    result = json.loads((out / "irl.json").read_text())
    for key in ("world_success", "feature_gap", "ci95", "episodes", "known_reward", "weights"):
        assert key in result
    assert result["episodes"] == 20 and 0 <= result["ci95"][0] <= result["world_success"]
    assert "reward_correlation" in result["known_reward"]
    assert (out / "reward.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "world success" in capsys.readouterr().out
    assert nanovla([*argv, "--no-progress"]) == 2  # irl.json exists: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_command_in_a_subprocess_writes_irl_json(tmp_path):
    """The installed command line, as a user runs it (tiny settings)."""
    argv = ["irl", "--task", "reach", "--out", str(tmp_path / "irl"), "--demos", "20"]
    argv += ["--episodes", "20", "--known-demos", "0", "--iterations", "10", "--grid", "uniform"]
    done = nanovla_process(*argv, "--cells", "5", "--no-progress", cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "irl" / "irl.json").read_text())
    assert 0.0 <= result["world_success"] <= 1.0 and result["feature_gap"] >= 0.0
    bad = nanovla_process("irl", "--task", "sort", "--out", "x", cwd=tmp_path, timeout=300)
    assert bad.returncode == 2 and "--task" in bad.stderr and len(bad.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "changes, option",
    [
        ({"task": "pick_place"}, "--task"),
        ({"demos": 0}, "--demos"),
        ({"episodes": 0}, "--episodes"),
        ({"iterations": -1}, "--iterations"),
        ({"horizon": 1}, "--horizon"),
        ({"grid": "hex"}, "--grid"),
        ({"grid": "uniform", "cells": 2}, "--cells"),
        ({"reward": "tree"}, "--reward"),
        ({"l2": -1.0}, "--l2"),
        ({"lr": 0.0}, "--lr"),
        ({"known_demos": -1}, "--known-demos"),
    ],
)
def test_bad_input_names_the_option(tmp_path, changes, option):
    command = IRLCommand(task="reach", out=tmp_path / "out")
    for name, value in changes.items():
        setattr(command, name, value)
    with pytest.raises(InputError, match=option):
        run(command)
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("keep")
    with pytest.raises(InputError, match="--out"):
        run(IRLCommand(task="push", out=tmp_path / "file"))
    assert (tmp_path / "file").read_text() == "keep"


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        nanovla(["irl", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for field in IRLCommand.__dataclass_fields__:
        assert f"--{field.replace('_', '-')}" in text
    assert "Ziebart" in text


def test_features_are_named_and_finite():
    names, values = _features(
        "push",
        grid_edges(),
        np.array([0, 3]),
        np.array([[-1, 0], [4, 4]]),
        np.array([[0, 0], [9, 9]]),
    )
    assert names == ("object_to_zone", "in_zone", "gripper_to_object", "object_at_wall")
    assert np.isfinite(values).all() and values.shape == (2, 4)
