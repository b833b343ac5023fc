"""`nanovla eval`: evaluate a checkpoint on fixed seeded episodes and write a result JSON + GIFs.

A run's own `eval.json` (written by `nanovla train`) is never overwritten: by default the result
goes beside it as `eval-<step>.json` (then `eval-<step>.1.json`, ... if that exists), and an
explicit `--out` that exists is refused unless `--overwrite` is given.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import tyro

from nanovla.constants import CHECKPOINTS_DIR, CONFIG_FILE, EVAL_FILE, PRETRAINED_DIR
from nanovla.errors import ExistsError, InputError, MissingError
from nanovla.eval.evaluate import EvalConfig, evaluate, format_table
from nanovla.io import write_json
from nanovla.train.run_record import RunRecord

if TYPE_CHECKING:
    from nanovla.models.policy.configuration_policy import PolicyConfig


@dataclass
class EvalCommand:
    """Evaluate a trained policy: success per task family and instruction split, 95% Wilson CIs."""

    checkpoint: Path
    """a checkpoint directory (`runs/RUN/checkpoints/last`) or its `pretrained_model/` folder"""
    out: Annotated[
        Path | None, tyro.conf.arg(help_behavior_hint="(default: RUN/eval-<step>.json)")
    ] = None
    """where the result JSON goes; the default sits beside the run's own eval.json, which is
    never overwritten"""
    overwrite: bool = False
    """replace an existing --out file"""
    tasks: Annotated[
        tuple[str, ...],
        tyro.conf.arg(help_behavior_hint="(default: the checkpoint's training families)"),
    ] = ()
    """task families to evaluate: reach, push, pick_place, sort"""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """the evaluation protocol"""
    videos: Annotated[
        Path | None, tyro.conf.arg(help_behavior_hint="(default: <out without .json>-videos/)")
    ] = None
    """folder for rollout GIFs"""
    progress: bool = True
    """show a progress bar (--no-progress: none)"""
    n_action_steps: Annotated[
        int | None, tyro.conf.arg(help_behavior_hint="(default: the checkpoint's own)")
    ] = None
    """actions of each predicted chunk executed before the policy predicts again, 1 to the
    checkpoint's chunk (an evaluation-time choice: the weights are the same); recorded in the
    result JSON as `n_action_steps`"""


def resolve_pretrained(checkpoint: Path) -> Path:
    """The folder holding config.json + model.safetensors for a checkpoint path."""
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise MissingError(f"checkpoint {str(checkpoint)!r} does not exist")
    for candidate in (checkpoint, checkpoint / PRETRAINED_DIR):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    raise MissingError(
        f"{str(checkpoint)!r} holds no {CONFIG_FILE} (nor {PRETRAINED_DIR}/{CONFIG_FILE}): "
        "pass a checkpoint directory such as runs/RUN/checkpoints/last"
    )


def default_out(pretrained: Path) -> Path:
    """`runs/RUN/eval-<step>.json` for `runs/RUN/checkpoints/<step>/pretrained_model` (and
    `runs/RUN/eval-selected-<step>.json` for the selected weights, `runs/RUN/selection/best`),
    made unique with `.1`, `.2`, ... so no earlier result is replaced."""
    from nanovla.eval.select import SELECTION_DIR

    parts = pretrained.resolve().parts
    folder, stem = pretrained, "eval"
    for marker, prefix in ((CHECKPOINTS_DIR, "eval-"), (SELECTION_DIR, "eval-selected-")):
        if marker in parts and parts.index(marker) + 1 < len(parts):
            index = parts.index(marker)
            folder, stem = Path(*parts[:index]), f"{prefix}{parts[index + 1]}"
    candidate, copy = folder / f"{stem}.json", 0
    while candidate.exists() or candidate.name == EVAL_FILE:
        copy += 1
        candidate = folder / f"{stem}.{copy}.json"
    return candidate


def with_action_steps(config: PolicyConfig, steps: int) -> PolicyConfig:
    """`config` executing `steps` actions of each chunk; PolicyConfig's own check (1 to the
    chunk), reported as an InputError naming --n-action-steps."""
    try:
        return replace(config, n_action_steps=steps)
    except InputError as error:
        raise InputError(f"--n-action-steps {steps}: {error} (the checkpoint's chunk)") from None


def main(argv: list[str]) -> int:
    """Entry point of `nanovla eval`."""
    command = tyro.cli(EvalCommand, args=argv, prog="nanovla eval", description=__doc__)
    from nanovla.models.policy import Policy
    from nanovla.world import TASK_FAMILIES

    pretrained = resolve_pretrained(command.checkpoint)
    if command.out is not None and command.out.exists() and not command.overwrite:
        raise ExistsError(f"{command.out} already exists; pass --overwrite to replace it")
    policy = Policy.from_pretrained(pretrained)
    if command.n_action_steps is not None:
        policy.config = with_action_steps(policy.config, command.n_action_steps)
    record = RunRecord.load(pretrained)  # what the checkpoint was trained on, when it says
    trained = () if record is None else tuple(record.families)
    families = command.tasks or trained or tuple(TASK_FAMILIES)
    unseen = [family for family in families if trained and family not in trained]
    if unseen:
        print(
            f"eval: warning: {', '.join(unseen)} outside the checkpoint's training families "
            f"({', '.join(trained)}); its 'seen' split means seen instructions, not seen tasks",
            file=sys.stderr,
        )
    out = command.out or default_out(pretrained)
    videos = command.videos or out.with_name(out.stem + "-videos")
    # unset --eval.targets: the combos the demonstrations had as targets (all when unrecorded)
    trained_targets = "all" if record is None else record.targets
    config = replace(command.eval, targets=command.eval.targets or trained_targets)
    result = evaluate(
        policy,
        families,
        config,
        image_size=policy.config.image_size,
        video_dir=videos if command.eval.gifs else None,
        progress=command.progress,
    )
    result["checkpoint"] = str(pretrained)
    result["n_action_steps"] = policy.config.n_action_steps
    write_json(out, result)
    print(format_table(result))
    print(f"wrote {out}")
    return 0
