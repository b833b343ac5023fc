"""Successes beside failures: the GIF of an outcome the evaluation did not record.

The evaluation records GIFs of the first episodes of each family only (`--eval.gifs`, 2 by
default), so a good policy's report would show no failure and a bad one's no success. When the
seen split of a family had both outcomes but its GIFs show one, this re-runs that family's
evaluation episodes from the weights eval.json judged (its `checkpoint`: the last step, the EMA
or the selected best; the same seeded scenes, `eval.rollout`) and
writes the first episode of the missing outcome as `videos/<family>_<index>_<outcome>.gif`,
the evaluation's own name. It does so only when the re-run reproduces eval.json's success count
for that family exactly: the GIF shows an evaluation scene with the outcome it had there (the
weights read back from the checkpoint can act a float's noise apart from the trained ones the
evaluation used in memory, so the path may differ by a pixel here and there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nanovla.constants import CHECKPOINTS_DIR, LAST_LINK, VIDEOS_DIR
from nanovla.report.rollouts import Rollout


def missing_outcomes(result: dict[str, Any], rollouts: list[Rollout]) -> dict[str, list[bool]]:
    """family -> outcomes (True: success) the seen split had but no GIF of the family shows."""
    seen = result.get("splits", {}).get("seen", {})
    rates = seen.get("per_task", {}) if isinstance(seen, dict) else {}
    missing: dict[str, list[bool]] = {}
    for family, rate in rates.items():
        shown = {r.success for r in rollouts if r.family == family}
        wanted = [o for o in (True, False) if o not in shown and (rate > 0 if o else rate < 1)]
        if wanted:
            missing[family] = wanted
    return missing


def judged_checkpoint(run: Path, result: dict[str, Any], launch: Path | None) -> Path:
    """The weights eval.json judged (its `checkpoint`: the last step, the EMA or the selected
    best; a relative path is relative to where the run was started), else checkpoints/last."""
    named = result.get("checkpoint")
    if isinstance(named, str) and named:
        first = [launch / named] if launch is not None else []
        for candidate in (*first, Path(named)):
            if candidate.exists():
                return candidate
    return run / CHECKPOINTS_DIR / LAST_LINK


def record_missing_outcomes(
    run: Path,
    result: dict[str, Any],
    rollouts: list[Rollout],
    image_size: int,
    launch: Path | None = None,
) -> tuple[list[Path], list[str]]:
    """Write the GIFs `missing_outcomes` asks for, from the weights eval.json judged (`launch`:
    where the run was started); returns (written paths, notes on what was not reproduced)."""
    missing = missing_outcomes(result, rollouts)
    checkpoint = judged_checkpoint(run, result, launch)
    episodes, seed = result.get("episodes_per_task"), result.get("seed")
    if not missing or not checkpoint.exists() or not isinstance(episodes, int):
        return [], []
    from nanovla.eval.evaluate import SPLIT_TEMPLATES, scene_seed
    from nanovla.eval.rollout import run_episodes
    from nanovla.eval.video import write_video
    from nanovla.models.policy import Policy
    from nanovla.train.checkpoint import pretrained_dir

    policy = Policy.from_pretrained(pretrained_dir(checkpoint))
    policy.eval()
    written, notes = [], []
    for family, outcomes in missing.items():
        rollout = run_episodes(
            policy, family, SPLIT_TEMPLATES["seen"], episodes, seed=scene_seed(int(seed), family),
            image_size=image_size, record=episodes, targets=str(result.get("targets", "all")),
        )  # fmt: skip
        expected = round(result["splits"]["seen"]["per_task"][family] * episodes)
        if int(rollout.success.sum()) != expected or rollout.frames is None:
            notes.append(
                f"{family}: re-running the evaluation from {checkpoint} gave "
                f"{int(rollout.success.sum())}/{episodes} successes, eval.json says "
                f"{expected}/{episodes} (another checkpoint?); no GIF of the missing outcome"
            )
            continue
        for outcome in outcomes:
            index = int((rollout.success == outcome).nonzero()[0][0])
            name = f"{family}_{index}_{'success' if outcome else 'failure'}.gif"
            path = write_video(
                rollout.frames[: rollout.length[index] + 1, index], run / VIDEOS_DIR / name,
                caption=rollout.instructions[index], success=outcome,
            )  # fmt: skip
            written.append(path)
    return written, notes
