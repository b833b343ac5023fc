"""Success-based checkpoint selection (`nanovla.eval.select.BestCheckpoint`)."""

import json
from pathlib import Path

from nanovla.eval.select import BEST_LINK, SELECTION_DIR, BestCheckpoint


class Weights:
    """Stands in for a policy: `save_pretrained` writes its value."""

    def __init__(self, value: int) -> None:
        self.value = value

    def save_pretrained(self, directory: Path) -> None:
        directory.mkdir(parents=True)
        (directory / "weights.txt").write_text(str(self.value))


def _kept(best: BestCheckpoint) -> int:
    return int((best.path / "weights.txt").read_text())


def test_keeps_the_best_score_ties_go_to_the_later_step(tmp_path):
    best = BestCheckpoint(tmp_path)
    assert best.path is None
    assert best.consider(Weights(1), 1000, 0.50, {"success": 0.50})
    assert best.consider(Weights(2), 2000, 0.80, {"success": 0.80})
    assert not best.consider(Weights(3), 3000, 0.70, {"success": 0.70})
    assert _kept(best) == 2 and best.best["step"] == 2000
    assert best.consider(Weights(4), 4000, 0.80, {"success": 0.80})  # a tie: the later one
    assert _kept(best) == 4
    root = tmp_path / SELECTION_DIR
    assert sorted(p.name for p in root.iterdir()) == ["004000", BEST_LINK]  # older ones pruned
    record = json.loads((root / BEST_LINK / "selection.json").read_text())
    assert record == {"step": 4000, "score": 0.80, "metrics": {"success": 0.80}}


def test_a_resumed_run_starts_from_the_saved_choice(tmp_path):
    first = BestCheckpoint(tmp_path)
    first.consider(Weights(7), 3000, 0.9, {})
    resumed = BestCheckpoint(tmp_path)
    assert resumed.best["step"] == 3000 and _kept(resumed) == 7
    assert not resumed.consider(Weights(8), 4000, 0.85, {})
    assert resumed.consider(Weights(9), 3000, 0.9, {})  # re-validating the kept step
    assert _kept(resumed) == 7  # the same weights, left as they were


def test_on_save_adds_its_files_and_a_stale_staging_dir_is_replaced(tmp_path):
    (tmp_path / SELECTION_DIR / ".tmp-000100").mkdir(parents=True)  # a killed earlier save
    best = BestCheckpoint(tmp_path, on_save=lambda d: (d / "run.json").write_text("{}"))
    best.consider(Weights(5), 100, 0.1, {})
    assert (best.path / "run.json").is_file() and _kept(best) == 5
