"""Success-based checkpoint selection: keep the weights that did best on validation episodes.

The validation loss of behavior cloning tracks success only loosely (a policy can fit the
expert's actions better and still drift off course more often), so `nanovla train` selects on
the quantity it reports: the seen-instruction success of validation rollouts, run every
`--train.eval-every` steps from seeded initial states in `[VALIDATION_SEED, VALIDATION_SEED +
SEED_SPAN)`, a range disjoint from the final evaluation's scenes (`eval.evaluate`) and from the
demonstrations'. The final evaluation then judges the selected weights on scenes the selection
never saw, so the reported success is not inflated by the choice (as a test set would be if one
picked the best of N checkpoints on it).

Layout inside the run directory (every write atomic, so a run killed at any instant leaves the
previous choice intact and `--resume` continues from it):

    selection/<step>/pretrained_model/   the policy that scored best so far (config + weights)
    selection/<step>/selection.json      {"step", "score", "metrics"}
    selection/best -> <step>             a symlink swapped atomically (`replace_symlink`)

Ties go to the later step: with a weight EMA (`train/ema.py`) the later average has seen more
data, and validation scores are coarse (k / n).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nanovla.constants import PRETRAINED_DIR
from nanovla.eval.evaluate import evaluate
from nanovla.io import read_json, write_json
from nanovla.train.checkpoint import replace_symlink, step_dir_name

SELECTION_DIR = "selection"
"""folder of the run directory holding the selected weights"""
BEST_LINK = "best"
"""the symlink inside `selection/` naming the best step"""
SELECTION_FILE = "selection.json"
"""step, score and validation metrics of a selected checkpoint"""


class BestCheckpoint:
    """Keeps the best-scoring weights seen so far under `out/selection/` (see the module docstring).

    `consider(model, step, score, metrics)` saves `model` (anything with `save_pretrained`) when
    `score` >= the best so far; `on_save(pretrained_dir)` may add files of its own (the run
    record). A run directory that already holds a choice (a resumed run) starts from it.
    """

    def __init__(self, out: str | Path, on_save: Callable[[Path], None] | None = None) -> None:
        self.root = Path(out) / SELECTION_DIR
        self.on_save = on_save
        self.best: dict[str, Any] | None = None
        if (self.root / BEST_LINK / SELECTION_FILE).is_file():
            self.best = read_json(self.root / BEST_LINK / SELECTION_FILE)

    @property
    def path(self) -> Path | None:
        """`selection/<step>/pretrained_model` of the best step, or None before any choice."""
        if self.best is None:
            return None
        return self.root / step_dir_name(int(self.best["step"])) / PRETRAINED_DIR

    def consider(self, model: Any, step: int, score: float, metrics: dict[str, float]) -> bool:
        """Keep `model` if `score` is at least the best so far; True when it was kept."""
        if self.best is not None and score < float(self.best["score"]):
            return False
        record = {"step": int(step), "score": float(score), "metrics": dict(metrics)}
        if self.best is not None and int(self.best["step"]) == int(step):
            return True  # a resumed run re-validating the kept step: the same weights
        name = step_dir_name(int(step))
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".tmp-{name}"
        if staging.exists():
            shutil.rmtree(staging)
        model.save_pretrained(staging / PRETRAINED_DIR)
        if self.on_save is not None:
            self.on_save(staging / PRETRAINED_DIR)
        write_json(staging / SELECTION_FILE, record)
        target = self.root / name
        if target.exists():  # left by a run killed before it swapped the link to it
            shutil.rmtree(target)
        staging.rename(target)
        replace_symlink(self.root / BEST_LINK, name)
        previous, self.best = self.best, record
        if previous is not None and int(previous["step"]) != int(step):
            shutil.rmtree(self.root / step_dir_name(int(previous["step"])), ignore_errors=True)
        return True


def validate(
    judged: Any,
    families: tuple[str, ...],
    config: Any,
    image_size: int,
    step: int,
    best: BestCheckpoint | None,
) -> dict[str, float]:
    """Validation rollouts of `judged` (seen split of `config`, an `EvalConfig` on validation
    seeds): {"success", "success_<family>"}; `best` (if any) considers the weights."""
    result = evaluate(judged, families, config, image_size, progress=False)
    judged.reset()
    seen = result["splits"]["seen"]
    metrics = {"success": seen["success"]}
    metrics.update({f"success_{family}": rate for family, rate in seen["per_task"].items()})
    if best is not None:
        best.consider(judged, step, metrics["success"], metrics)
    return metrics
