"""Checkpoints of `nanovla rl finetune` and its exact `--resume` (see `rl/finetune.py`'s docs).

A checkpoint is a normal `nanovla train` checkpoint (`pretrained_model/` loads with
`Policy.from_pretrained`, `nanovla eval` takes it) plus what fine-tuning adds: the log-std and
the critic (`rl_head.safetensors`), the options (`finetune_config.json`), and a training state
with the optimizer, the RNG streams and, in the `loader` slot, the rollout state (observations,
the world's state, success counters), the instruction vocabulary and the validation curve.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from nanovla.codec import to_json
from nanovla.constants import EVAL_FILE, PRETRAINED_DIR, TRAINING_STATE_DIR
from nanovla.errors import ExistsError, InputError, MissingError
from nanovla.io import read_json_object, write_json
from nanovla.models.policy import Policy
from nanovla.rl import rollout as ro
from nanovla.rl.run import RESUME_FREE
from nanovla.rl.vla_actor_critic import VLAActorCritic
from nanovla.train.checkpoint import latest_checkpoint, write_checkpoint
from nanovla.train.guards import kill_point
from nanovla.train.rng import capture_rng_state, restore_rng_state
from nanovla.train.state import load_training_state, save_training_state

BEFORE_FILE, RL_HEAD_FILE = "before.json", "rl_head.safetensors"
CONFIG_JSON = "finetune_config.json"
"""the options of the run, beside each checkpoint's weights (what `--resume` checks against)"""


def resume_point(cmd: Any) -> Path | None:
    """The checkpoint `--resume` continues from (None for a fresh run); refuses to overwrite a
    run, to resume a run that has none, or to resume with other options (named)."""
    out = Path(cmd.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} is a file; give a directory")
    last = latest_checkpoint(out)
    if not cmd.resume:
        if last is not None or (out / EVAL_FILE).exists():
            raise ExistsError(f"--out: {out} already holds a run; pass --resume or another --out")
        return None
    if last is None or not (out / BEFORE_FILE).exists():
        raise MissingError(f"--resume: {out / 'checkpoints' / 'last'} not found")
    saved, now = read_json_object(last / PRETRAINED_DIR / CONFIG_JSON), to_json(cmd)
    diffs = [key for key in now if key not in RESUME_FREE and saved.get(key) != now[key]]
    if diffs:
        raise InputError(
            f"--resume: options differ from the run's ({', '.join(diffs)}); resume with the "
            "options the run was started with"
        )
    return last


def save(out: Path, update_no: int, agent: VLAActorCritic, optimizer, record, cmd,
          loader: dict[str, Any]) -> None:  # fmt: skip
    rng = capture_rng_state()

    def write(directory: Path) -> None:
        pretrained = directory / PRETRAINED_DIR
        agent.policy.save_pretrained(pretrained)
        if record is not None:
            record.save(pretrained)
        heads = {"log_std": agent.log_std.detach().clone()}
        heads.update({f"critic.{k}": v.detach().contiguous()
                      for k, v in agent.critic.state_dict().items()})  # fmt: skip
        save_file(heads, str(pretrained / RL_HEAD_FILE))
        write_json(pretrained / CONFIG_JSON, to_json(cmd))
        save_training_state(directory / TRAINING_STATE_DIR,
                            {"step": update_no, "optimizer": optimizer.state_dict(), "rng": rng,
                             "scheduler": {},  # constant learning rates: nothing to keep
                             "loader": loader})  # fmt: skip

    write_checkpoint(out, update_no, write, keep_last=cmd.keep_last)
    kill_point("checkpoint:saved")


def restore(checkpoint: Path, agent: VLAActorCritic, optimizer, env: Any,
             state: ro.RolloutState) -> tuple[int, list]:  # fmt: skip
    """Load checkpoint `checkpoint` into the fresh objects; (updates done, validation curve)."""
    pretrained = checkpoint / PRETRAINED_DIR
    agent.policy.load_state_dict(Policy.from_pretrained(pretrained).state_dict())
    heads = load_file(str(pretrained / RL_HEAD_FILE))
    with torch.no_grad():
        agent.log_std.copy_(heads.pop("log_std"))
    agent.critic.load_state_dict({k.removeprefix("critic."): v for k, v in heads.items()})
    training = load_training_state(checkpoint / TRAINING_STATE_DIR)
    optimizer.load_state_dict(training["optimizer"])
    loader = training["loader"]
    env.vocabulary.ids(list(loader["vocabulary"]))  # the ids the saved observations use
    state.load(loader["rollout"], env)
    restore_rng_state(training["rng"])
    return int(training["step"]), [tuple(point) for point in loader["curve"]]
