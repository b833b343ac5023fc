"""Success of a trained policy per instruction template: which wording fails?

A split's mean (eval.json) can hide one template that fails while the others succeed. This
rolls the policy out on the same seeded scenes (`eval.rollout.run_episodes`, the evaluation's
protocol and seed) once per template of the split, and prints each template's success with
its 95 % Wilson interval. It found that the default policy's held-out Korean pick_place
failures come from one template, the one that names the place first ("{place}에 {object}를
넣어 줘"), which is what `--ko-scramble` addresses (data/scramble.py).

Run: `.venv/bin/python benchmarks/template_success.py --checkpoint RUN/selection/best/pretrained_model
--split ko_heldout --families pick_place` (a run's selected weights; any `pretrained_model`
directory of a VLA policy works).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from nanovla.eval.evaluate import EVAL_SEED
from nanovla.eval.rollout import run_episodes
from nanovla.eval.stats import wilson_interval
from nanovla.models.policy import Policy
from nanovla.world.instructions import TEMPLATES


@dataclass
class Args:
    """Per-template success of a policy on one instruction split."""

    checkpoint: Path
    """a policy's pretrained_model directory (e.g. RUN/selection/best/pretrained_model)"""
    split: str = "ko_heldout"
    """instruction split: train | ko | heldout | ko_heldout | user"""
    families: tuple[str, ...] = ("reach", "push", "pick_place")
    """task families whose templates are rolled out"""
    episodes: int = 100
    """seeded episodes per template"""
    seed: int = EVAL_SEED
    """scene seed (the final evaluation's by default)"""
    targets: str = "train"
    """target combos of the scenes: train (the evaluation's seen combos) | all"""
    threads: int = 1
    """torch threads"""


def main(args: Args) -> None:
    if args.split not in TEMPLATES:
        raise SystemExit(f"--split must be one of {', '.join(TEMPLATES)}, got {args.split!r}")
    torch.set_num_threads(args.threads)
    policy = Policy.from_pretrained(args.checkpoint).eval()
    print(f"{args.checkpoint}: split {args.split}, {args.episodes} episodes per template")
    print(f"{'family':<12}{'success':>8}  {'95% CI':<14}  template (first instruction)")
    for family in args.families:
        for template in TEMPLATES[args.split][family]:
            with torch.no_grad():
                result = run_episodes(
                    policy, family, [template], args.episodes, args.seed, targets=args.targets
                )
            wins = int(result.success.sum())
            lo, hi = wilson_interval(wins, args.episodes)
            print(
                f"{family:<12}{wins / args.episodes:>8.2f}  [{lo:.2f}, {hi:.2f}]    {template}"
                f"  ({result.instructions[0]})"
            )


if __name__ == "__main__":
    main(tyro.cli(Args))
