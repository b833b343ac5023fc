"""Evaluation: success per task family and instruction split, with 95% Wilson intervals.

Splits name which instruction templates the episodes use:

| split        | templates (world `instructions=`)          | question it answers               |
|--------------|--------------------------------------------|-----------------------------------|
| `seen`       | English training paraphrases (`train`)     | did it learn the tasks?           |
| `heldout`    | English paraphrases never trained on       | does it understand, not memorize? |
| `ko`         | Korean training templates (`ko`)           | does it follow Korean?            |
| `ko_heldout` | Korean templates never trained on          | Korean generalization             |

Every (split, family) pair runs the same number of episodes from fixed seeded initial states.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from nanovla.errors import InputError
from nanovla.eval.rollout import ActsOnObservations, run_episodes
from nanovla.eval.stats import wilson_interval
from nanovla.eval.video import write_video

SPLIT_TEMPLATES: dict[str, str] = {
    "seen": "train",
    "heldout": "heldout",
    "ko": "ko",
    "ko_heldout": "ko_heldout",
}


@dataclass
class EvalConfig:
    """Evaluation protocol. Options you will most likely change come first."""

    episodes: int = 50
    """episodes per task family per split (each a fixed seeded initial state)"""
    splits: tuple[str, ...] = ("seen", "heldout", "ko")
    """instruction splits to run: seen, heldout, ko, ko_heldout"""
    seed: int = 100_000
    """seed of the initial states; far from the collection seeds so no training scene repeats"""
    gifs: int = 2
    """rollout GIFs written per task family (seen split); 0 = none"""
    targets: str = "all"
    """target attribute combinations: all | train | heldout (compositional test)"""


def _check(config: EvalConfig, families: tuple[str, ...]) -> None:
    unknown = [split for split in config.splits if split not in SPLIT_TEMPLATES]
    if unknown:
        raise InputError(f"unknown eval split(s) {unknown}; choose from {list(SPLIT_TEMPLATES)}")
    if config.episodes < 1:
        raise InputError(f"episodes must be >= 1, got {config.episodes}")
    if not families:
        raise InputError("families must name at least one task family")


def _summary(successes: int, episodes: int) -> dict[str, Any]:
    lo, hi = wilson_interval(successes, episodes)
    return {
        "success": successes / episodes,
        "ci95": [lo, hi],
        "successes": successes,
        "episodes": episodes,
    }


def evaluate(
    policy: ActsOnObservations,
    families: tuple[str, ...],
    config: EvalConfig,
    image_size: int = 64,
    video_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every (split, family) batch and return the `eval.json` dict:
    `{"episodes_per_task", "splits": {split: {"success", "ci95", "per_task", ...}}, ...}`."""
    _check(config, families)
    result: dict[str, Any] = {
        "episodes_per_task": config.episodes,
        "seed": config.seed,
        "targets": config.targets,
        "families": list(families),
        "splits": {},
        "videos": [],
    }
    jobs = [(split, family) for split in config.splits for family in families]
    bar = tqdm(jobs, desc="eval", unit="batch", disable=not progress, leave=False)
    per_split: dict[str, dict[str, np.ndarray]] = {split: {} for split in config.splits}
    for split, family in bar:
        bar.set_postfix_str(f"{split}/{family}")
        record = config.gifs if (video_dir is not None and split == "seen") else 0
        rollout = run_episodes(
            policy,
            family,
            SPLIT_TEMPLATES[split],
            config.episodes,
            seed=config.seed + 7919 * families.index(family),
            image_size=image_size,
            record=record,
            targets=config.targets,
        )
        per_split[split][family] = rollout.success
        if record and rollout.frames is not None:
            for index in range(rollout.frames.shape[1]):
                outcome = "success" if rollout.success[index] else "failure"
                path = Path(video_dir) / f"{family}_{index}_{outcome}.gif"
                frames = rollout.frames[: rollout.length[index] + 1, index]
                write_video(frames, path, caption=rollout.instructions[index])
                result["videos"].append(str(path))
    for split, by_family in per_split.items():
        all_success = np.concatenate(list(by_family.values()))
        summary = _summary(int(all_success.sum()), all_success.size)
        summary["templates"] = SPLIT_TEMPLATES[split]
        summary["per_task"] = {family: float(s.mean()) for family, s in by_family.items()}
        summary["per_task_ci95"] = {
            family: list(wilson_interval(int(s.sum()), s.size)) for family, s in by_family.items()
        }
        result["splits"][split] = summary
    return result


def format_table(result: dict[str, Any]) -> str:
    """The success table: one row per split, a column per family, then the mean with its 95% CI."""
    families = result["families"]
    width = max(10, *(len(family) for family in families))
    header = f"{'split':<11}" + "".join(f"{family:>{width + 1}}" for family in families)
    header += "   mean [95% Wilson CI] (successes/episodes)"
    lines = [header, "-" * len(header)]
    for split, summary in result["splits"].items():
        row = f"{split:<11}" + "".join(
            f"{summary['per_task'][family]:>{width + 1}.2f}" for family in families
        )
        lo, hi = summary["ci95"]
        row += f"   {summary['success']:.2f} [{lo:.2f}, {hi:.2f}] ({summary['successes']}/{summary['episodes']})"
        lines.append(row)
    lines.append(
        f"{result['episodes_per_task']} episodes per family per split, seed {result['seed']}"
    )
    return "\n".join(lines)


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    """Write `data` as JSON atomically (temp file + rename): never a half-written eval.json."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    temporary.replace(path)
    return path
