"""Evaluation: success per task family and instruction split, with 95% Wilson intervals.

Splits name which instruction templates the episodes use:

| split        | templates (world `instructions=`)          | question it answers               |
|--------------|--------------------------------------------|-----------------------------------|
| `seen`       | English training paraphrases (`train`)     | did it learn the tasks?           |
| `heldout`    | English paraphrases never trained on       | does it understand, not memorize? |
| `ko`         | Korean training templates (`ko`)           | does it follow Korean?            |
| `ko_heldout` | Korean templates never trained on          | Korean generalization             |
| `user`       | plain-English requests no template holds   | does it follow what users type?   |
| `combos`     | `train`, targets = held-out (kind, color)  | does it compose attributes?       |

`combos` asks for the (kind, color) pairs that `targets="train"` demonstrations never use as a
target (`world.scene.HELDOUT_COMBOS`, e.g. a green ball): a compositional test only for a policy
trained on such demonstrations (`nanovla train` records them so by default). Every other split
uses `EvalConfig.targets` (unset: the targets the policy was trained with).

Every (split, family) pair runs the same number of episodes from fixed seeded initial states.
The initial states of a family depend on its name and the base seed only (`scene_seed`), never on
which other families are evaluated or in which order: `nanovla eval --tasks push` sees the same
push scenes as the suite, and every checkpoint of every run is judged on the same episodes. The
splits of one family share its scenes (only the instruction differs), so split figures are paired.

Seed ranges (so no scene is judged twice for different purposes): demonstrations are recorded
from the collection seed (default 0), validation rollouts during training use
`[VALIDATION_SEED, VALIDATION_SEED + SEED_SPAN)` and the final evaluation
`[EVAL_SEED, EVAL_SEED + SEED_SPAN)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nanovla.errors import InputError
from nanovla.eval.parallel import map_rollouts
from nanovla.eval.rollout import ActsOnObservations
from nanovla.eval.stats import wilson_interval
from nanovla.eval.video import write_video
from nanovla.progress import progress as progress_bar
from nanovla.world.scene import TARGET_SPLITS
from nanovla.world.tasks import TASK_FAMILIES

FAMILY_SEED_STRIDE = 7919
"""seed distance between two families' scenes (a prime, so batches never line up)"""
SEED_SPAN = FAMILY_SEED_STRIDE * len(TASK_FAMILIES)
"""seeds one evaluation may use, counted from its base seed"""
VALIDATION_SEED = 50_000
"""base seed of the validation rollouts during training"""
EVAL_SEED = 100_000
"""base seed of the final evaluation"""


def scene_seed(base: int, family: str) -> int:
    """The seed of `family`'s evaluation scenes: keyed on the family's name, not a list position."""
    if family not in TASK_FAMILIES:
        raise InputError(f"unknown task family {family!r}; choose from {list(TASK_FAMILIES)}")
    return base + FAMILY_SEED_STRIDE * TASK_FAMILIES.index(family)


def seed_range(base: int) -> range:
    """Every seed an evaluation with base seed `base` may reset a world with."""
    return range(base, base + SEED_SPAN)


SPLIT_TEMPLATES: dict[str, str] = {
    "seen": "train",
    "heldout": "heldout",
    "user": "user",
    "ko": "ko",
    "ko_heldout": "ko_heldout",
    "combos": "train",
}
SPLIT_TARGETS: dict[str, str] = {"combos": "heldout"}
"""splits whose target combos are fixed; the others use `EvalConfig.targets`"""
DEFAULT_SPLITS: tuple[str, ...] = tuple(SPLIT_TEMPLATES)


@dataclass
class EvalConfig:
    """Evaluation protocol. Options you will most likely change come first."""

    episodes: int = 100
    """episodes per task family per split (each a fixed seeded initial state); 100 puts the
    95% interval of a 0.95 success rate at about [0.89, 0.98]"""
    splits: tuple[str, ...] = DEFAULT_SPLITS
    """instruction splits to run: seen, heldout, user, ko, ko_heldout, combos (see the module
    docstring)"""
    seed: int = EVAL_SEED
    """base seed of the initial states (each family adds its own fixed offset); keep it away
    from the collection seed and the validation seeds so no scene is seen twice"""
    gifs: int = 2
    """rollout GIFs written per task family (seen split); 0 = none"""
    targets: str | None = None
    """target attribute combinations of every split but `combos` (always heldout): all | train |
    heldout (compositional test); unset = the combos the policy's demonstrations had as targets
    (its run.json: `nanovla train --targets`), so `seen` never asks for a held-out combo of a
    policy trained without them; all where the run does not say"""
    workers: int = 1
    """processes the (split, family) batches are spread over (spawned, one torch thread each;
    results equal one process's at one thread); 1 = this process"""


def _check(config: EvalConfig, families: tuple[str, ...]) -> None:
    unknown = [split for split in config.splits if split not in SPLIT_TEMPLATES]
    if unknown:
        raise InputError(f"unknown eval split(s) {unknown}; choose from {list(SPLIT_TEMPLATES)}")
    if config.episodes < 1:
        raise InputError(f"episodes must be >= 1, got {config.episodes}")
    if config.workers < 1:
        raise InputError(f"--eval.workers must be >= 1, got {config.workers}")
    if config.targets is not None and config.targets not in TARGET_SPLITS:
        raise InputError(
            f"--eval.targets must be one of {list(TARGET_SPLITS)}, got {config.targets!r}"
        )
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
    targets = config.targets or "all"
    result: dict[str, Any] = {
        "episodes_per_task": config.episodes,
        "seed": config.seed,
        "targets": targets,
        "families": list(families),
        "splits": {},
        "videos": [],
    }
    jobs = [(split, family) for split in config.splits for family in families]
    calls = [
        dict(
            family=family,
            instructions=SPLIT_TEMPLATES[split],
            episodes=config.episodes,
            seed=scene_seed(config.seed, family),
            image_size=image_size,
            record=config.gifs if (video_dir is not None and split == "seen") else 0,
            targets=SPLIT_TARGETS.get(split, targets),
        )
        for split, family in jobs
    ]  # run_episodes' arguments, over config.workers processes (eval/parallel.py)
    rollouts = map_rollouts(policy, calls, config.workers)
    bar = progress_bar(jobs, desc="eval", unit="batch", enabled=progress, leave=False)
    per_split: dict[str, dict[str, np.ndarray]] = {split: {} for split in config.splits}
    for (split, family), call, rollout in zip(bar, calls, rollouts):
        bar.set_postfix_str(f"{split}/{family}")
        record = call["record"]
        per_split[split][family] = rollout.success
        if record and rollout.frames is not None:
            for index in range(rollout.frames.shape[1]):
                outcome = "success" if rollout.success[index] else "failure"
                path = Path(video_dir) / f"{family}_{index}_{outcome}.gif"
                frames = rollout.frames[: rollout.length[index] + 1, index]
                write_video(
                    frames,
                    path,
                    caption=rollout.instructions[index],
                    success=bool(rollout.success[index]),
                )
                result["videos"].append(str(path))
    for split, by_family in per_split.items():
        all_success = np.concatenate(list(by_family.values()))
        summary = _summary(int(all_success.sum()), all_success.size)
        summary["templates"] = SPLIT_TEMPLATES[split]
        summary["targets"] = SPLIT_TARGETS.get(split, targets)
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
