"""Evaluation: seeded batched rollouts, success with 95% Wilson intervals, rollout videos."""

from nanovla.eval.evaluate import SPLIT_TEMPLATES, EvalConfig, evaluate, format_table
from nanovla.eval.rollout import RolloutResult, run_episodes
from nanovla.eval.stats import wilson_interval
from nanovla.eval.video import write_video

__all__ = [
    "SPLIT_TEMPLATES",
    "EvalConfig",
    "RolloutResult",
    "evaluate",
    "format_table",
    "run_episodes",
    "wilson_interval",
    "write_video",
]
