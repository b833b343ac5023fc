"""Why a policy fails push: per failed episode, how far the object got and where the gripper was.

Rolls a checkpoint out on the evaluation's seeded push scenes (`nanovla eval`'s seen split:
the same seed, training instructions) and asks the scripted expert for its action at every
state the policy visits. Prints, for each failed episode, the object's distance to go at the
start and before the last step (the world restarts an ended episode at once), the share of steps the gripper spent in contact range of the object
(centre distance < --contact), and the mean L1 gap |a - a*| (dx, dy) to the expert; then the
same gap over the successes' first 15 steps, for scale.

Run: `.venv/bin/python benchmarks/push_failures.py --checkpoint RUN/checkpoints/last/pretrained_model/ema`
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from nanovla.eval.evaluate import EvalConfig, scene_seed
from nanovla.models.policy import Policy
from nanovla.world import make_world
from nanovla.world.experts import expert_action
from nanovla.world.tasks import distance_to_go


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


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    policy = Policy.from_pretrained(args.checkpoint).eval()
    n, seed = args.episodes, scene_seed(EvalConfig().seed, "push")
    world = make_world("push", num_envs=n, seed=seed, instructions="train")
    obs, limit = world.reset(seed=seed), world.max_steps["push"]
    to_go = np.full((limit, n), np.nan)  # (T, N) object's distance to go before each step
    near = np.zeros((limit, n), bool)  # (T, N) gripper in contact range
    gap = np.full((limit, n), np.nan)  # (T, N) |a - a*| over dx, dy
    done, success = np.zeros(n, bool), np.zeros(n, bool)
    rows = np.arange(n)
    for t in range(limit):
        state = world.state
        live = ~done
        to_go[t, live] = distance_to_go(state)[live]
        target = state.obj_pos[rows, state.target_obj[:, 0]]
        near[t] = live & (np.linalg.norm(state.gripper - target, axis=-1) < args.contact)
        action = policy.select_action(obs)
        gap[t, live] = np.abs(action[:, :2] - expert_action(state)[:, :2]).sum(-1)[live]
        obs, _, terminated, truncated, info = world.step(action)
        ended = (terminated | truncated) & ~done
        success[ended] = np.asarray(info["success"])[ended]
        done |= ended
        if done.all():
            break
    failed = np.flatnonzero(~success)
    print(f"{args.checkpoint}: push {success.sum()}/{n} succeeded")
    print(f"{'episode':>8}{'to go at 0':>12}{'at last':>9}{'in contact':>12}{'|a - a*|':>10}")
    for e in failed:
        end = to_go[~np.isnan(to_go[:, e]), e][-1]
        steps = (~np.isnan(gap[:, e])).sum()
        print(
            f"{e:>8}{to_go[0, e]:>12.3f}{end:>9.3f}{near[:steps, e].mean():>12.2f}"
            f"{np.nanmean(gap[:, e]):>10.2f}"
        )
    if len(failed):
        print(f"failed episodes: mean |a - a*| {np.nanmean(gap[:, failed]):.2f}")
    if success.any():
        print(f"successes, first 15 steps: mean |a - a*| {np.nanmean(gap[:15, success]):.2f}")


if __name__ == "__main__":
    main(tyro.cli(Args))
