"""Why a policy fails sort: what it holds before and after the first pair is in its bowl.

Sort is two pick-and-places in one episode ("put A in P and B in Q", 120 steps). This rolls a
checkpoint out on the evaluation's seeded sort scenes (`nanovla eval`'s seen split: the same
seed, training instructions) in a world that does not reset ended episodes, and prints:
- how often the first pair reaches its bowl, and at which step (median);
- how often both pairs are in their bowls at once (the success check) at some step;
- of the episodes whose first pair got in: the share of the following steps spent holding
  nothing, the first target (taken back out of its bowl), the second target or another object,
  and how many episodes grasp the second target at all, re-grasp the first, or end with the
  first pair out of its bowl again; on the steps holding nothing before both pairs are in,
  how the policy's moves agree with the clean expert's and whether they head for the first or
  the second target;
- before the first pair is in: the first object grasped; where the first target is let go
  (its distance from its bowl's centre) and how often nearer the second bowl;
- of the episodes that never get the first pair in but hold it at the end: the held object's
  distance from its bowl over the last 20 steps, and the cosine of the policy's moves with the
  clean expert's from the same states (a limit cycle beside the bowl: a narrow band of
  distances and moves that reverse where the expert says "toward").
With `--dataset` (the run's demonstrations), also whether the policy's auxiliary goal head
knows which pair is next on the expert's own states: over the sort episodes of the run's
validation split (the episodes whose subgoal place changes), its goal error in each half and
how often its predicted place lies nearer the first bowl than the second in the second half.

Run: `.venv/bin/python benchmarks/sort_failures.py --checkpoint RUN/selection/best/pretrained_model`
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from nanovla.data import BatchLoader, EpisodeDataset
from nanovla.data.loader import split_episodes
from nanovla.data.recording import reset_actor
from nanovla.eval.evaluate import EVAL_SEED, scene_seed
from nanovla.il.shift import image_size_of
from nanovla.models.policy import Policy
from nanovla.models.policy.normalize import IMAGE, STATE
from nanovla.world.core import World
from nanovla.world.experts import RELEASE_DISTANCE
from nanovla.world.scene import BOWL_RADIUS, SceneState
from nanovla.world.tasks import MAX_STEPS, in_bowl

HOLDING = ("nothing", "first target", "second target", "another object")
EARLY_FRAMES = 5
"""frames after the first release in which the goal head's object choice is checked"""


@dataclass
class Args:
    """Sort failure analysis."""

    checkpoint: Path
    """a policy folder (e.g. RUN/selection/best/pretrained_model)"""
    episodes: int = 100
    """seeded sort episodes (the evaluation's scenes)"""
    threads: int = 2
    """torch intra-op threads"""
    dataset: Path | None = None
    """the run's demonstrations (with `observation.environment_state`): adds the goal-head
    check on the expert's states of its validation sort episodes"""
    val_fraction: float = 0.05
    """the run's validation fraction (`nanovla train --val-fraction`)"""
    seed: int = 0
    """the run's seed (its validation split)"""
    hand_over: bool = True
    """also let the clean expert do the first pair on the same scenes and the policy take over
    once it is in its bowl (centred): is the second half lost to the policy's own placements?"""


@dataclass
class SortTrace:
    """Per step (T, E): each pair in its bowl, and what the gripper holds (index in HOLDING)."""

    first_in: np.ndarray
    second_in: np.ndarray
    holding: np.ndarray
    first_near_second_bowl: np.ndarray
    """(T, E) the first target's centre is nearer the second bowl than its own"""
    first_distance: np.ndarray
    """(T, E) distance of the first target's centre from its own bowl's centre (table units)"""
    agreement: np.ndarray
    """(T, E) cosine between the policy's and the clean expert's moves (x, y) at the state the
    step started from (0 where either is still)"""
    toward: np.ndarray
    """(2, T, E) cosine between the policy's move and the direction from the gripper to the
    first / second target"""


def trace_sort(policy: Policy, episodes: int, seed: int) -> SortTrace:
    """Roll `policy` out for the full sort step limit on `episodes` seeded scenes."""
    world = World("sort", episodes, image_size_of(policy), seed, "train", autoreset=False)
    obs = world.reset(seed=seed)
    reset_actor(policy, None)
    steps = MAX_STEPS["sort"]
    first_in, second_in = np.zeros((2, steps, episodes), dtype=bool)
    holding = np.zeros((steps, episodes), dtype=np.int64)
    near_second = np.zeros((steps, episodes), dtype=bool)
    distance, agreement = np.zeros((2, steps, episodes))
    toward = np.zeros((2, steps, episodes))
    rows = np.arange(episodes)
    for t in range(steps):
        expert = world.expert_action(noise=0.0)[:, :2]
        action = policy.select_action(obs)
        move = np.asarray(action)[:, :2]
        agreement[t] = cosine(move, expert)
        toward[:, t] = heading(world.state, move)
        obs, _, terminated, truncated, _ = world.step(action)
        state = world.state
        first_in[t], second_in[t] = in_bowl(state, 0), in_bowl(state, 1)
        held = state.held
        holding[t] = np.select(
            [held < 0, held == state.target_obj[:, 0], held == state.target_obj[:, 1]],
            [0, 1, 2],
            default=3,
        )
        pos = state.obj_pos[rows, state.target_obj[:, 0]]
        bowls = state.bowl_pos[rows[:, None], state.target_place[:, :2]]  # (E, 2, 2)
        dist = np.linalg.norm(bowls - pos[:, None], axis=-1)
        near_second[t], distance[t] = dist[:, 1] < dist[:, 0], dist[:, 0]
        if (terminated | truncated).all():
            first_in, second_in = first_in[: t + 1], second_in[: t + 1]
            holding, near_second = holding[: t + 1], near_second[: t + 1]
            distance, agreement = distance[: t + 1], agreement[: t + 1]
            toward = toward[:, : t + 1]
            break
    return SortTrace(first_in, second_in, holding, near_second, distance, agreement, toward)


def hand_over(policy: Policy, episodes: int, seed: int) -> tuple[np.ndarray, ...]:
    """The clean expert does the first pair and the policy takes over once it is in (on the
    same seeded scenes): (E,) both pairs in at some step, (E,) the expert finished the first
    pair before the step limit, and over the policy's steps holding nothing before both are
    in, (S,) cosines of its moves with the directions to the first and the second target."""
    world = World("sort", episodes, image_size_of(policy), seed, "train", autoreset=False)
    obs = world.reset(seed=seed)
    reset_actor(policy, None)
    handed = np.zeros(episodes, dtype=bool)
    solved = np.zeros(episodes, dtype=bool)
    headings: list[np.ndarray] = []  # (2, idle envs) per step
    for _ in range(MAX_STEPS["sort"]):
        handed |= in_bowl(world.state, 0)
        expert = world.expert_action(noise=0.0)
        action = np.asarray(policy.select_action(obs))  # every step: chunk queues stay in step
        idle = handed & ~solved & (world.state.held < 0)
        headings.append(heading(world.state, action[:, :2])[:, idle])
        obs, _, terminated, truncated, _ = world.step(np.where(handed[:, None], action, expert))
        solved |= handed & in_bowl(world.state, 0) & in_bowl(world.state, 1)
        if (terminated | truncated).all():
            break
    first, second = np.concatenate(headings, axis=1)
    return solved, handed, first, second


def heading(state: SceneState, move: np.ndarray) -> np.ndarray:
    """(2, E) cosines of the (E, 2) moves with the directions from the gripper to the first and
    the second target."""
    rows = np.arange(len(move))
    return np.stack(
        [cosine(move, state.obj_pos[rows, state.target_obj[:, k]] - state.gripper) for k in (0, 1)]
    )


def print_heading(first: np.ndarray, second: np.ndarray) -> None:
    """One line: the share of moves heading for (cosine > 0.5) the first / second target."""
    print(
        f"  holding nothing, not yet solved: moving toward (cosine > 0.5) the first target "
        f"{np.mean(first > 0.5):.2f}, the second {np.mean(second > 0.5):.2f}"
    )


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of (E, 2) moves; 0 where either is (nearly) still."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 1e-8, (a * b).sum(axis=1) / np.maximum(norms, 1e-8), 0.0)


def goal_phases(policy: Policy, dataset: EpisodeDataset, episodes: np.ndarray) -> None:
    """Print the goal head's error per half of the sort episodes among `episodes`."""
    if policy.goal_head is None or dataset.env_states is None:
        print("goal check: the policy has no goal head or the dataset no subgoals")
        return
    # the loader's own batches of whole episodes (no augmentation): frames, states, texts, goals
    loader = BatchLoader(dataset, batch_size=1, split="all")
    errors: dict[int, list[float]] = {0: [], 1: []}
    nearer_first: list[float] = []
    wrong_object: list[float] = []
    early_error: list[float] = []
    for episode in episodes.tolist():
        lo, hi = dataset.episode_bounds[episode]
        goal = dataset.env_states[lo:hi]  # (T, 4) object x, y, place x, y
        second = np.abs(goal[:, 2:] - goal[0, 2:]).sum(axis=1) > 1e-6  # (T,) the place moved
        if not second.any():
            continue  # not a sort episode (or one whose second half never began)
        batch = loader.batch(torch.arange(lo, hi))
        with torch.no_grad():
            fused = policy.encode(batch[IMAGE], batch[STATE], batch["task"])
            # the inverse of the goal loss's table [0, 1] -> [-1, 1] (Policy.forward)
            predicted = ((policy.goal_head(fused) + 1.0) / 2.0).numpy()  # table units
        for half, mask in ((0, ~second), (1, second)):
            if mask.any():
                errors[half].append(float(np.abs(predicted[mask] - goal[mask]).mean()))
        place = predicted[second, 2:]
        to_first = np.linalg.norm(place - goal[0, 2:], axis=1)
        to_second = np.linalg.norm(place - goal[second, 2:], axis=1)
        nearer_first.append(float(np.mean(to_first < to_second)))
        # the first frames of the second half, where the next object is chosen: is the
        # predicted object the second target, or still the first (now lying in the first bowl)?
        early = np.flatnonzero(second)[:EARLY_FRAMES]
        obj = predicted[early, :2]
        wrong_object.append(
            float(
                np.mean(
                    np.linalg.norm(obj - goal[0, 2:], axis=1)
                    < np.linalg.norm(obj - goal[early, :2], axis=1)
                )
            )
        )
        early_error.append(float(np.abs(obj - goal[early, :2]).mean()))
    if not nearer_first:
        print("goal check: no sort episode in the validation split")
        return
    print(f"goal head on {len(nearer_first)} validation sort episodes (expert states):")
    print(
        f"  goal L1, first half / second half   {np.mean(errors[0]):.3f} / {np.mean(errors[1]):.3f}"
    )
    print(f"  second half, place nearer the first bowl {np.mean(nearer_first):.2f}")
    print(
        f"  second half's first {EARLY_FRAMES} frames: object L1 {np.mean(early_error):.3f}, "
        f"object nearer the first target than the second {np.mean(wrong_object):.2f}"
    )


def first_half(trace: SortTrace, first_step: np.ndarray) -> None:
    """Print what the gripper grasps before the first pair is in (the whole episode if never)."""
    before = [
        trace.holding[: (s if s >= 0 else len(trace.holding)), e] for e, s in enumerate(first_step)
    ]
    grasps = [h[h > 0] for h in before]
    first_grasp = np.array([g[0] if g.size else 0 for g in grasps])  # 0 = grasped nothing
    print("before the first pair is in, the first object grasped:")
    for index, name in enumerate(HOLDING):
        label = "none" if index == 0 else name
        print(f"  {label:<16}{np.mean(first_grasp == index):>6.2f}")
    never = first_step < 0
    if never.any():
        wrong = np.mean([(g != 1).any() for g, n in zip(grasps, never) if n])
        print(f"episodes whose first pair never gets in: {never.sum()}, of which grasp a")
        print(f"  non-first object at some step {wrong:.2f}")
    released = (trace.holding[:-1] == 1) & (trace.holding[1:] != 1)  # (T-1, E)
    wrong_bowl = released & trace.first_near_second_bowl[1:]
    if released.any():
        where = trace.first_distance[1:][released]
        print(
            f"the first target's distance from its bowl's centre at its releases: median "
            f"{np.median(where):.3f}, within {RELEASE_DISTANCE} (where the expert lets go) "
            f"{np.mean(where <= RELEASE_DISTANCE):.2f}, within the bowl ({BOWL_RADIUS}) "
            f"{np.mean(where <= BOWL_RADIUS):.2f}"
        )
    print(
        f"releases of the first target: {released.sum()}, nearer the second bowl "
        f"{wrong_bowl.sum() / max(released.sum(), 1):.2f}; episodes with such a release "
        f"{wrong_bowl.any(axis=0).mean():.2f}"
    )


def held_to_the_end(trace: SortTrace, first_step: np.ndarray, window: int = 20) -> None:
    """Print how the episodes that never get the first pair in and still hold it at the end
    move over their last `window` steps: the held object's distance from its bowl's centre
    (a limit cycle beside the bowl shows as a narrow band that never closes) and how the
    policy's moves agree with the expert's from the same states."""
    never = first_step < 0
    stuck = np.flatnonzero(never & (trace.holding[-1] == 1))
    print(f"never in, holding the first target at the end: {stuck.size} of {never.sum()}")
    if stuck.size == 0:
        return
    last = slice(max(len(trace.holding) - window, 0), None)
    distance = trace.first_distance[last, stuck]  # (window, S)
    agreement = trace.agreement[last, stuck]
    print(
        f"  last {distance.shape[0]} steps: distance from the bowl centre, mean min / max "
        f"{distance.min(axis=0).mean():.3f} / {distance.max(axis=0).mean():.3f} (radius {BOWL_RADIUS})"
    )
    print(
        f"  cosine of the policy's move with the expert's: mean {agreement.mean():.2f}, "
        f"steps below -0.5 {np.mean(agreement < -0.5):.2f}"
    )
    closest = np.where(trace.holding[:, never] == 1, trace.first_distance[:, never], np.inf)
    closest = closest.min(axis=0)
    print(
        f"  never-in episodes that came within 0.03 / 0.06 of the centre while holding it: "
        f"{(closest < 0.03).sum()} / {(closest < 0.06).sum()}"
    )


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    policy = Policy.from_pretrained(args.checkpoint).eval()
    trace = trace_sort(policy, args.episodes, scene_seed(EVAL_SEED, "sort"))
    got_first = trace.first_in.any(axis=0)  # (E,)
    both = (trace.first_in & trace.second_in).any(axis=0)
    first_step = np.where(got_first, trace.first_in.argmax(axis=0), -1)
    print(f"{args.checkpoint}: {args.episodes} seeded sort episodes")
    print(f"first pair in its bowl at some step   {got_first.mean():.2f}", end="")
    if got_first.any():
        print(f"  (median step {int(np.median(first_step[got_first])) + 1})", end="")
    print(f"\nboth pairs in their bowls at once       {both.mean():.2f}")
    first_half(trace, first_step)
    held_to_the_end(trace, first_step)
    done = np.flatnonzero(got_first)
    if done.size == 0:
        return

    def after_first(values: np.ndarray) -> np.ndarray:
        """(T, E) per-step values -> the steps from each done episode's first pair on, joined."""
        return np.concatenate([values[first_step[e] :, e] for e in done])

    after = [trace.holding[first_step[e] :, e] for e in done]  # the steps after, per episode
    steps = np.concatenate(after)
    print(
        f"after the first pair is in ({done.size} episodes, {steps.size} steps), share of steps holding:"
    )
    for index, name in enumerate(HOLDING):
        print(f"  {name:<16}{np.mean(steps == index):>6.2f}")
    unsolved = after_first(~(trace.first_in & trace.second_in))
    idle = (steps == 0) & unsolved  # (the expert re-grasps a solved scene's object)
    empty = after_first(trace.agreement)[idle]
    print(
        f"  holding nothing, not yet solved: cosine of the policy's move with the expert's mean "
        f"{empty.mean():.2f}, above 0.5 {np.mean(empty > 0.5):.2f}, below -0.5 "
        f"{np.mean(empty < -0.5):.2f}"
    )
    print_heading(after_first(trace.toward[0])[idle], after_first(trace.toward[1])[idle])
    grasp_second = np.mean([(h == 2).any() for h in after])
    regrasp_first = np.mean([(h == 1).any() for h in after])
    lost = np.mean(~trace.first_in[-1, done])
    print(f"episodes that grasp the second target  {grasp_second:.2f}")
    print(f"episodes that re-grasp the first       {regrasp_first:.2f}")
    print(f"episodes ending with the first out     {lost:.2f}")
    if args.hand_over:
        solved, handed, first, second = hand_over(
            policy, args.episodes, scene_seed(EVAL_SEED, "sort")
        )
        print(
            f"the expert does the first pair (dead centre) in {handed.mean():.2f}; the policy "
            f"then finishes {solved[handed].mean() if handed.any() else 0.0:.2f} of those "
            f"(from its own first pair: {both[done].mean():.2f})"
        )
        if first.size:
            print_heading(first, second)
    if args.dataset is not None:
        dataset = EpisodeDataset(args.dataset, cache="memmap", progress=False)
        _, val = split_episodes(dataset.num_episodes, args.val_fraction, args.seed)
        goal_phases(policy, dataset, val)


if __name__ == "__main__":
    main(tyro.cli(Args))
