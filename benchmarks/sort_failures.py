"""Why a policy fails sort: what it holds before and after the first pair is in its bowl.

Sort is two pick-and-places in one episode ("put A in P and B in Q", 120 steps). This rolls a
checkpoint out on the evaluation's seeded sort scenes (`nanovla eval`'s seen split: the same
seed, training instructions) in a world that does not reset ended episodes, and prints:
- how often the first pair reaches its bowl, and at which step (median);
- how often both pairs are in their bowls at once (the success check) at some step;
- of the episodes whose first pair got in: the share of the following steps spent holding
  nothing, the first target (taken back out of its bowl), the second target or another object,
  and how many episodes grasp the second target at all, re-grasp the first, or end with the
  first pair out of its bowl again.

Run: `.venv/bin/python benchmarks/sort_failures.py --checkpoint RUN/selection/best/pretrained_model`
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from nanovla.data.recording import reset_actor
from nanovla.eval.evaluate import EVAL_SEED, scene_seed
from nanovla.il.shift import image_size_of
from nanovla.models.policy import Policy
from nanovla.world.core import World
from nanovla.world.tasks import MAX_STEPS, in_bowl

HOLDING = ("nothing", "first target", "second target", "another object")


@dataclass
class Args:
    """Sort failure analysis."""

    checkpoint: Path
    """a policy folder (e.g. RUN/selection/best/pretrained_model)"""
    episodes: int = 100
    """seeded sort episodes (the evaluation's scenes)"""
    threads: int = 2
    """torch intra-op threads"""


@dataclass
class SortTrace:
    """Per step (T, E): each pair in its bowl, and what the gripper holds (index in HOLDING)."""

    first_in: np.ndarray
    second_in: np.ndarray
    holding: np.ndarray


def trace_sort(policy: Policy, episodes: int, seed: int) -> SortTrace:
    """Roll `policy` out for the full sort step limit on `episodes` seeded scenes."""
    world = World("sort", episodes, image_size_of(policy), seed, "train", autoreset=False)
    obs = world.reset(seed=seed)
    reset_actor(policy, None)
    steps = MAX_STEPS["sort"]
    first_in, second_in = np.zeros((2, steps, episodes), dtype=bool)
    holding = np.zeros((steps, episodes), dtype=np.int64)
    for t in range(steps):
        obs, _, terminated, truncated, _ = world.step(policy.select_action(obs))
        state = world.state
        first_in[t], second_in[t] = in_bowl(state, 0), in_bowl(state, 1)
        held = state.held
        holding[t] = np.select(
            [held < 0, held == state.target_obj[:, 0], held == state.target_obj[:, 1]],
            [0, 1, 2],
            default=3,
        )
        if (terminated | truncated).all():
            first_in, second_in, holding = first_in[: t + 1], second_in[: t + 1], holding[: t + 1]
            break
    return SortTrace(first_in, second_in, holding)


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
    done = np.flatnonzero(got_first)
    if done.size == 0:
        return
    after = [trace.holding[first_step[e] :, e] for e in done]  # the steps after, per episode
    steps = np.concatenate(after)
    print(
        f"after the first pair is in ({done.size} episodes, {steps.size} steps), share of steps holding:"
    )
    for index, name in enumerate(HOLDING):
        print(f"  {name:<16}{np.mean(steps == index):>6.2f}")
    grasp_second = np.mean([(h == 2).any() for h in after])
    regrasp_first = np.mean([(h == 1).any() for h in after])
    lost = np.mean(~trace.first_in[-1, done])
    print(f"episodes that grasp the second target  {grasp_second:.2f}")
    print(f"episodes that re-grasp the first       {regrasp_first:.2f}")
    print(f"episodes ending with the first out     {lost:.2f}")


if __name__ == "__main__":
    main(tyro.cli(Args))
