"""`RunRecord`: what a checkpoint was trained on, saved beside its weights as `run.json`.

Evaluation (`nanovla eval`), policy-driven collection and later fine-tuning read it to judge a
checkpoint on the task families it learned, at the image size it saw, without guessing from the
dataset or asking the user again. It is one typed dataclass written and read through the one
codec (`nanovla.codec`), so a typo'd or foreign key in the file is an error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nanovla.codec import from_json, to_json
from nanovla.constants import RUN_RECORD_FILE
from nanovla.errors import InputError
from nanovla.io import read_json, write_json
from nanovla.world.tasks import TASK_FAMILIES


@dataclass(frozen=True)
class RunRecord:
    """The data a policy was trained on (one `run.json` in each `pretrained_model/`)."""

    families: tuple[str, ...]
    """task families of the training demonstrations (reach, push, pick_place, sort)"""
    image_size: int
    """side of the square camera frames, in pixels"""
    instructions: str
    """instruction templates of the demonstrations (train | ko | train+ko | ...)"""
    dataset: str
    """the dataset directory the run trained on"""
    episodes: int
    """episodes in that dataset"""
    seed: int
    """the run's seed (initial weights, batch order, augmentation)"""
    expert_version: int = 0
    """`nanovla.world.experts.EXPERT_VERSION` of the demonstrations (0 = not recorded)"""
    targets: str = "all"
    """target (kind, color) combos of the demonstrations (`nanovla train --targets`): all, or
    train (the held-out combos never a target; evaluation's `seen` then asks for seen ones)"""

    def __post_init__(self) -> None:
        unknown = [family for family in self.families if family not in TASK_FAMILIES]
        if not self.families or unknown:
            raise InputError(
                f"families must name task families of {list(TASK_FAMILIES)}, got "
                f"{list(self.families)}"
            )
        for name, least in (("image_size", 1), ("episodes", 1), ("expert_version", 0)):
            if getattr(self, name) < least:
                raise InputError(f"{name} must be >= {least}, got {getattr(self, name)}")
        for name in ("instructions", "dataset"):
            if not getattr(self, name):
                raise InputError(f"{name} must not be empty")

    def save(self, directory: str | Path) -> Path:
        """Write `directory/run.json` atomically; returns its path."""
        return write_json(Path(directory) / RUN_RECORD_FILE, to_json(self))

    @classmethod
    def load(cls, directory: str | Path) -> RunRecord | None:
        """The record in `directory/run.json`, or None when the checkpoint has none."""
        path = Path(directory) / RUN_RECORD_FILE
        if not path.exists():
            return None
        try:
            data = read_json(path)
        except RecursionError as error:
            raise InputError(f"{path}: not valid JSON (nested too deeply)") from error
        return from_json(cls, data, source=str(path))
