"""Why a policy fails push: per failed episode, how far the object got and where the gripper was.

Rolls a checkpoint out on the evaluation's seeded push scenes (`nanovla eval`'s seen split:
the same seed, training instructions) with `il/shift.roll_out`, which asks the scripted expert
for its action at every state the policy visits. Prints, for each failed episode, the object's
distance to its zone's centre at the start and at the end, the share of its steps the gripper
spent in contact range of the object (centre distance < --contact), and the mean gap
|pi(s) - pi*(s)|_1 over (dx, dy, grip), the `nanovla il shift` measure; then the same gap over
the successes' first 15 steps, for scale.

Run: `.venv/bin/python benchmarks/push_failures.py --checkpoint RUN/checkpoints/last/pretrained_model/ema`
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from nanovla.eval.evaluate import EVAL_SEED, scene_seed
from nanovla.il.shift import image_size_of, roll_out
from nanovla.models.policy import Policy
from nanovla.world.core import World
from nanovla.world.scene import ZONE_RECTS


@dataclass
class Args:
    """Push failure analysis."""

    checkpoint: Path
    """a policy folder (e.g. RUN/checkpoints/last/pretrained_model/ema)"""
    episodes: int = 100
    """seeded push episodes (the evaluation's scenes)"""
    contact: float = 0.1
    """gripper-object centre distance counted as touching (table units)"""
    threads: int = 1
    """torch intra-op threads"""


def zone_centres(episodes: int, seed: int, image_size: int) -> np.ndarray:
    """(E, 2) the centre of each seeded push episode's target zone (`tasks.distance_to_go`)."""
    world = World("push", episodes, image_size, seed, "train", autoreset=False)
    world.reset(seed=seed)
    state = world.state
    rect = ZONE_RECTS[state.zone_id[np.arange(episodes), state.target_place[:, 0]]]  # (E, 4)
    return (rect[:, :2] + rect[:, 2:]) / 2


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    policy = Policy.from_pretrained(args.checkpoint).eval()
    seed = scene_seed(EVAL_SEED, "push")
    trace = roll_out(policy, "push", args.episodes, seed)
    centres = zone_centres(args.episodes, seed, image_size_of(policy))
    gripper, target = trace.points[..., 0:2], trace.points[..., 2:4]  # (T + 1, E, 2)
    to_go = np.linalg.norm(target - centres, axis=-1)  # (T + 1, E), held once ended
    near = np.linalg.norm(gripper - target, axis=-1)[:-1] < args.contact  # (T, E) before step t
    running, success = trace.running, trace.success_step >= 0
    failed = np.flatnonzero(~success)
    print(f"{args.checkpoint}: push {success.sum()}/{args.episodes} succeeded")
    print(f"{'episode':>8}{'to go at 0':>12}{'at end':>9}{'in contact':>12}{'|a - a*|':>10}")
    for e in failed:
        steps = running[:, e]
        print(
            f"{e:>8}{to_go[0, e]:>12.3f}{to_go[-1, e]:>9.3f}{near[steps, e].mean():>12.2f}"
            f"{trace.gaps[steps, e].mean():>10.2f}"
        )
    if len(failed):
        print(
            f"failed episodes: mean |a - a*| {trace.gaps[:, failed][running[:, failed]].mean():.2f}"
        )
    if success.any():
        first = running[:15, success]
        print(
            f"successes, first 15 steps: mean |a - a*| {trace.gaps[:15, success][first].mean():.2f}"
        )


if __name__ == "__main__":
    main(tyro.cli(Args))
