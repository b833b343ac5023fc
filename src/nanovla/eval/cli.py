"""`nanovla eval`: evaluate a checkpoint on fixed seeded episodes and write eval.json + GIFs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import tyro

from nanovla.errors import InputError, MissingError
from nanovla.eval.evaluate import EvalConfig, evaluate, format_table, write_json


@dataclass
class EvalCommand:
    """Evaluate a trained policy: success per task family and instruction split, 95% Wilson CIs."""

    checkpoint: Path
    """a checkpoint directory (`runs/RUN/checkpoints/last`) or its `pretrained_model/` folder"""
    out: Path | None = None
    """where eval.json goes (default: eval.json beside the checkpoint's run directory)"""
    tasks: tuple[str, ...] = ()
    """task families to evaluate (default: the families the checkpoint was trained on)"""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """the evaluation protocol"""
    videos: Path | None = None
    """folder for rollout GIFs (default: `videos/` beside eval.json)"""


def resolve_pretrained(checkpoint: Path) -> Path:
    """The folder holding config.json + model.safetensors for a checkpoint path."""
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise MissingError(f"checkpoint {str(checkpoint)!r} does not exist")
    for candidate in (checkpoint, checkpoint / "pretrained_model"):
        if (candidate / "config.json").is_file():
            return candidate
    raise MissingError(
        f"{str(checkpoint)!r} holds no config.json (nor pretrained_model/config.json): "
        "pass a checkpoint directory such as runs/RUN/checkpoints/last"
    )


def trained_families(pretrained: Path) -> tuple[str, ...]:
    """Task families recorded in the checkpoint's train_config.json (empty if not recorded)."""
    path = pretrained / "train_config.json"
    if not path.is_file():
        return ()
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"{path} is not valid JSON: {error}") from error
    return tuple(recorded.get("tasks", ()))


def main(argv: list[str]) -> int:
    """Entry point of `nanovla eval`."""
    command = tyro.cli(EvalCommand, args=argv, prog="nanovla eval")
    from nanovla.models.policy import Policy
    from nanovla.world import TASK_FAMILIES

    pretrained = resolve_pretrained(command.checkpoint)
    policy = Policy.from_pretrained(pretrained)
    families = command.tasks or trained_families(pretrained) or tuple(TASK_FAMILIES)
    out = command.out or _default_out(pretrained)
    videos = command.videos or out.parent / "videos"
    result = evaluate(
        policy,
        families,
        command.eval,
        image_size=policy.config.image_size,
        video_dir=videos if command.eval.gifs else None,
    )
    result["checkpoint"] = str(pretrained)
    write_json(result, out)
    print(format_table(result))
    print(f"wrote {out}")
    return 0


def _default_out(pretrained: Path) -> Path:
    # runs/RUN/checkpoints/STEP/pretrained_model -> runs/RUN/eval.json
    parts = pretrained.resolve().parts
    if "checkpoints" in parts:
        run_dir = Path(*parts[: parts.index("checkpoints")])
        return run_dir / "eval.json"
    return pretrained / "eval.json"
