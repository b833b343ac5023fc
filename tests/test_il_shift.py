"""Compounding error, measured (nanovla.il.shift, `nanovla il shift`): the curves on the expert
itself, hand-checked distances and fits, on-track monotonicity, bad input, a subprocess run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import nanovla as nanovla_subprocess

from nanovla.cli import main as nanovla
from nanovla.errors import ExistsError, InputError, MissingError
from nanovla.eval.evaluate import EVAL_SEED, SEED_SPAN, VALIDATION_SEED, scene_seed
from nanovla.il.shift import (
    SHIFT_SEED,
    ExpertActor,
    ShiftCommand,
    check_command,
    fit_shapes,
    measure,
    parse_policies,
    path_distance,
    roll_out,
    success_by,
)
from nanovla.world.core import World

PER_STEP = ("disagreement", "expert_state_disagreement", "cumulative_disagreement", "running")
PER_STATE = ("distance", "distance_aligned", "on_track", "success_by", "expert_success_by")


class ZeroActor:
    """Always (0, 0, 0): its disagreement is |expert action|_1."""

    def select_action(self, obs: dict) -> np.ndarray:
        return np.zeros((len(obs["instruction"]), 3), dtype=np.float32)


def test_seed_range_is_disjoint_from_validation_and_evaluation() -> None:
    for base in (VALIDATION_SEED, EVAL_SEED):
        assert not set(range(base, base + SEED_SPAN)) & set(range(SHIFT_SEED, SHIFT_SEED + 1))
    assert SHIFT_SEED >= EVAL_SEED + SEED_SPAN


def test_expert_as_the_policy_has_zero_disagreement_and_distance() -> None:
    result = measure({"expert": ExpertActor()}, ("push", "pick_place"), 6, show_progress=False)
    assert result["families"] == ["push", "pick_place"] and result["episodes"] == 6
    for family, curves in result["policies"]["expert"].items():
        steps = curves["steps"]
        assert steps == World(family).max_steps[family]
        for key in PER_STEP:
            assert len(curves[key]) == steps, key
        for key in PER_STATE:
            assert len(curves[key]) == steps + 1, key
        running = [d for d in curves["disagreement"] if d is not None]
        assert running and max(running) == 0.0
        assert max(curves["cumulative_disagreement"]) == 0.0 == curves["eps_expert_states"]
        assert max(curves["distance"]) == 0.0 == max(curves["distance_aligned"])
        assert min(curves["on_track"]) == 1.0
        assert curves["success_by"] == curves["expert_success_by"]
        assert curves["success"] == 1.0 and curves["success_by"][0] == 0.0
        # every episode ends within the horizon, so past it no episode runs (None, not 0)
        assert curves["disagreement"][-1] is None and curves["running"][-1] == 0.0
        fit = curves["fit"]
        assert fit["horizon"] == curves["expert_horizon"] and fit["eps_quadratic"] == 0.0
        assert fit["excess"] is None and curves["eps_own_states"] == 0.0
    json.dumps(result)  # the shift.json dict is plain JSON


def test_zero_actor_disagreement_is_the_experts_action_and_sums_to_the_cost() -> None:
    seed = scene_seed(SHIFT_SEED, "push")  # what measure() resets push's world with
    world = World("push", num_envs=5, seed=seed)
    world.reset(seed=seed)
    first_expert = np.abs(world.expert_action(noise=0.0)).sum(axis=1)
    learner = roll_out(ZeroActor(), "push", 5, seed)
    np.testing.assert_allclose(learner.gaps[0], first_expert)
    # a still policy never moves: its gripper stays where it started, nothing succeeds
    np.testing.assert_allclose(learner.points[-1], learner.points[0])
    assert (learner.success_step == -1).all() and learner.running.all()
    result = measure({"zero": ZeroActor()}, ("push",), 5, show_progress=False)
    curves = result["policies"]["zero"]["push"]
    assert curves["disagreement"][0] == pytest.approx(first_expert.mean())
    expected = np.cumsum([d * r for d, r in zip(curves["disagreement"], curves["running"])])
    np.testing.assert_allclose(curves["cumulative_disagreement"], expected)
    assert curves["success"] == 0.0 and max(curves["success_by"]) == 0.0


def test_the_expert_world_and_the_learner_world_start_from_the_same_states() -> None:
    expert = roll_out(ZeroActor(), "pick_place", 4, 123, drive="expert", image_size=32)
    learner = roll_out(ZeroActor(), "pick_place", 4, 123, drive="actor", image_size=64)
    np.testing.assert_array_equal(expert.points[0], learner.points[0])
    assert not np.array_equal(expert.points[5], learner.points[5])


def test_on_track_is_non_increasing_and_follows_the_radius() -> None:
    noisy = {"noisy": ExpertActor(noise=1.0)}
    tight = measure(noisy, ("push",), 8, radius=0.02, show_progress=False)
    curves = tight["policies"]["noisy"]["push"]
    on_track = np.array(curves["on_track"])
    assert on_track[0] == 1.0 and (np.diff(on_track) <= 0).all() and on_track[-1] < 1.0
    assert max(curves["distance"]) > 0.02 and curves["eps_expert_states"] > 0
    loose = measure(noisy, ("push",), 8, radius=10.0, show_progress=False)
    assert min(loose["policies"]["noisy"]["push"]["on_track"]) == 1.0


def test_path_distance_by_hand() -> None:
    # one episode, 2-D points; the expert's path runs (0, 0) -> (1, 0) -> (1, 1)
    path = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])[:, None, :]
    points = np.array([[0.5, 0.3], [2.0, 0.0], [-1.0, 1.0], [1.0, 0.5], [0.5, 0.0]])[:, None, :]
    distance = path_distance(points, path)[:, 0]
    np.testing.assert_allclose(distance, [0.3, 1.0, np.sqrt(2.0), 0.0, 0.0], atol=1e-12)
    # a path that is one point (and repeated points: zero-length segments) is that point
    single = path_distance(points, np.zeros((1, 1, 2)))[:, 0]
    np.testing.assert_allclose(single, np.linalg.norm(points[:, 0], axis=1))
    held = path_distance(points, np.zeros((3, 1, 2)))[:, 0]
    np.testing.assert_allclose(held, single)


def test_success_by_and_fit_shapes_by_hand() -> None:
    assert success_by(np.array([2, -1, 3, 2]), 4) == [0.0, 0.0, 0.5, 0.75, 0.75]
    t = np.arange(1, 31, dtype=np.float64)
    quadratic = fit_shapes((0.01 * t**2).tolist() + [5.0] * 10, horizon=30)
    assert quadratic["better"] == "quadratic" and quadratic["horizon"] == 30
    assert quadratic["eps_quadratic"] == pytest.approx(0.01) and quadratic["rmse_quadratic"] < 1e-12
    assert quadratic["excess"] is None  # no error on the expert's states given
    assert quadratic["power"] == pytest.approx(2.0)
    linear = fit_shapes((0.3 * t).tolist(), horizon=30, eps=0.3)
    assert linear["better"] == "linear" and linear["eps_linear"] == pytest.approx(0.3)
    assert linear["excess"] == pytest.approx(1.0)  # it pays exactly its training error
    assert linear["power"] == pytest.approx(1.0)
    assert fit_shapes([0.0] * 30, horizon=30)["power"] is None
    assert fit_shapes((0.01 * t**2).tolist(), horizon=30, eps=0.1)["excess"] == pytest.approx(3.0)
    assert linear["rmse_quadratic"] > 0.1


def test_bad_input_names_the_argument(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--policies: 'runs/a' is not NAME=CHECKPOINT"):
        parse_policies(["runs/a"])
    with pytest.raises(InputError, match="--policies"):
        parse_policies(["bad name=" + str(tmp_path)])
    with pytest.raises(InputError, match="given twice"):
        parse_policies([f"a={tmp_path}", f"a={tmp_path}"])
    with pytest.raises(MissingError, match="nowhere"):
        parse_policies([f"a={tmp_path / 'nowhere'}"])
    with pytest.raises(InputError, match="--policies: give at least one"):
        parse_policies([])
    good = (f"a={tmp_path}",)
    with pytest.raises(InputError, match="--tasks: .*unknown task 'stack'"):
        check_command(ShiftCommand(policies=good, tasks=("push", "stack"), out=tmp_path / "o"))
    with pytest.raises(InputError, match="--instructions: unknown split 'fr'"):
        check_command(ShiftCommand(policies=good, instructions="fr", out=tmp_path / "o"))
    with pytest.raises(InputError, match="--episodes"):
        check_command(ShiftCommand(policies=good, episodes=0, out=tmp_path / "o"))
    with pytest.raises(InputError, match="--track-radius"):
        check_command(ShiftCommand(policies=good, track_radius=-1.0, out=tmp_path / "o"))
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "shift.json").write_text("{}")
    with pytest.raises(ExistsError, match="--overwrite"):
        check_command(ShiftCommand(policies=good, out=tmp_path / "o"))
    assert check_command(ShiftCommand(policies=good, out=tmp_path / "o", overwrite=True))


def test_a_run_directory_means_its_last_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "run" / "checkpoints" / "last").mkdir(parents=True)
    (tmp_path / "step").mkdir()
    parsed = parse_policies([f"bc={tmp_path / 'run'}", f"other={tmp_path / 'step'}"])
    assert parsed == {"bc": tmp_path / "run" / "checkpoints" / "last", "other": tmp_path / "step"}


def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    cases = [
        (["--policies", "nameless"], "is not NAME=CHECKPOINT"),
        (["--policies", f"a={tmp_path / 'missing'}"], "does not exist"),
        (["--policies", f"a={tmp_path}", "--tasks", "fly"], "--tasks"),
    ]
    for args, message in cases:
        assert nanovla(["il", "shift", *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()
    assert nanovla(["il", "nope"]) == 2
    assert "unknown subcommand 'nope'" in capsys.readouterr().err


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """An untrained 32x32 policy saved with Policy.from_dataset (3 reach demonstrations)."""
    from nanovla.data import EpisodeDataset
    from nanovla.data.collect import CollectConfig, collect
    from nanovla.models.policy import Policy, PolicyConfig

    demos = collect(
        CollectConfig(task="reach", episodes=3, num_envs=3, image_size=32, out=tmp_path / "d",
                      progress=False)
    )  # fmt: skip
    torch.manual_seed(0)
    policy = Policy.from_dataset(PolicyConfig(image_size=32), EpisodeDataset(demos, progress=False))
    policy.save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny"


def test_subprocess_smoke_run_writes_json_and_png(tmp_path: Path, tiny_checkpoint: Path) -> None:
    listing = nanovla_subprocess("il", "--help", cwd=tmp_path, timeout=60)
    assert listing.returncode == 0 and "shift" in listing.stdout
    args = ["il", "shift", "--policies", f"tiny={tiny_checkpoint}", f"again={tiny_checkpoint}"]
    args += ["--tasks", "push", "--episodes", "3", "--out", "out", "--no-progress"]
    done = nanovla_subprocess(*args, cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "C/eps*T" in done.stdout and "wrote out/shift.json" in done.stdout
    assert any(line.startswith("tiny ") for line in done.stdout.splitlines())
    result = json.loads((tmp_path / "out" / "shift.json").read_text())
    assert set(result["policies"]) == {"tiny", "again"} and result["families"] == ["push"]
    curves = result["policies"]["tiny"]["push"]
    assert curves == result["policies"]["again"]["push"]  # same checkpoint, same episodes
    assert len(curves["distance"]) == curves["steps"] + 1 == 61
    assert set(curves["fit"]) >= {"eps_linear", "eps_quadratic", "better", "horizon"}
    assert result["checkpoints"]["tiny"] == str(tiny_checkpoint)
    assert (tmp_path / "out" / "shift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = nanovla_subprocess(*args, cwd=tmp_path, timeout=60)
    assert again.returncode == 2 and "--overwrite" in again.stderr
