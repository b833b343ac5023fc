"""The `nanovla dagger` command: its options (`DaggerCommand`), `--help`, and `--resume`.

`nanovla.il.dagger` holds the algorithm and runs the command (`run`); this module is what the
command line is generated from, and the rule of `--resume`: the saved `dagger_command.json` is
the run's command, and only `--progress` may be given differently.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from nanovla.codec import field_differences, from_json
from nanovla.errors import InputError, MissingError
from nanovla.eval.evaluate import VALIDATION_SEED, EvalConfig
from nanovla.io import read_json
from nanovla.train_command import PolicyOptions, default_amp, default_policy_config
from nanovla.world.tasks import TASK_FAMILIES

COMMAND_FILE = "dagger_command.json"
"""the command a DAgger run was started with, in its run directory"""

ABSENT_MEANS: dict[str, Any] = {"amp": "none", "color_swap": 0.0}
"""Options added after runs were saved without them: the value those runs trained with, so a
resumed old run goes on as it started (not today's default)."""

DESCRIPTION = """`nanovla dagger`: DAgger (Ross, Gordon & Bagnell 2011) on the embedded world.

Round 0 trains BC on --demos expert demonstrations (or starts from --checkpoint). Each of the
--rounds rounds after it rolls the last policy out --rollouts times, executing the expert's
action instead with probability beta_i = beta0 * decay^i, labels every visited state with the
expert's action, adds the episodes to OUT/data (one LeRobot v3.0 dataset: action = the label,
action.executed, dagger.round), retrains (warm start) and evaluates. Then BC is trained on
expert demonstrations with as many frames, for comparison. Writes OUT/rounds.json,
OUT/eval.json, OUT/plots/dagger.png and checkpoints under OUT/checkpoints/ (round-KK, last).
--resume continues a killed run at the round it was in."""


def _default_policy() -> PolicyOptions:
    """`nanovla train`'s policy without its word dropout and word insertion (there for held-out
    instructions): the DAgger figures were measured without them and judge seen ones."""
    return dataclasses.replace(default_policy_config(), word_dropout=0.0, word_insertion=0.0)


def _default_eval() -> EvalConfig:
    return EvalConfig(episodes=100, splits=("seen",), gifs=0)


@dataclass
class DaggerCommand:
    """DAgger on the embedded world: BC on a few demonstrations, then rounds of learner
    rollouts labelled by the expert, aggregated and retrained; evaluated every round, beside BC
    trained on as many expert frames. Options you will most likely change come first."""

    out: Annotated[Path | None, tyro.conf.arg(help_behavior_hint="(default: runs/dagger-<time>)")] = None  # fmt: skip
    """run directory: data/, rounds/, checkpoints/, rounds.json, eval.json, plots/"""
    tasks: tuple[str, ...] = ("push", "pick_place")
    """task families: reach, push, pick_place, sort"""
    demos: int = 500
    """expert demonstrations of round 0 (all families together; unused with --checkpoint)"""
    rounds: int = 4
    """DAgger rounds after round 0 (each: rollouts, labels, aggregation, training, evaluation)"""
    rollouts: int = 500
    """learner episodes recorded per round (successes and failures alike: all are labelled)"""
    beta0: float = 1.0
    """beta_i = beta0 * decay^i is the probability that the expert's action is executed at a
    step of round i (round 0 without --checkpoint is pure expert demonstrations)"""
    decay: float = 0.7
    """per-round decay of beta"""
    steps: int = 1500
    """gradient steps of each round but the last (their policies only need to visit the states
    worth labelling)"""
    final_steps: int = 6000
    """gradient steps of the last round, whose policy is the result: the longest schedule, on
    the whole aggregate (9000 scored seen 0.945 / 0.965 / 0.965 over seeds 0-2 against 0.95 /
    0.935 / 0.95 at 6000, intervals overlapping, for 50 % more training: README)"""
    from_scratch: bool = False
    """retrain every round from new weights instead of warm-starting from the last round's"""
    checkpoint: Path | None = None
    """start from this trained policy (round 0 then rolls it out with beta_0 = beta0) instead
    of BC on --demos expert demonstrations"""
    expert: Path | None = None
    """label states with this checkpoint's actions instead of the world's scripted expert
    (distilling a policy)"""
    seed: int = 0
    """seed of the demonstrations (round i records from seed + i), weights and batch order"""
    resume: bool = False
    """continue the run in --out at the round it was in (no other option may change)"""
    compare_bc: bool = True
    """also train BC from scratch on expert demonstrations with as many frames as the final
    round labelled (and as many gradient steps as all rounds together)"""
    bc_every_round: bool = False
    """with --compare-bc, also train a BC baseline at every earlier round's labelled frames
    (each from new weights, as many steps as the last one): a BC curve beside DAgger's on the
    plot instead of one point. Costs one more training run per round"""
    ema_decay: float = 0.999
    """weight EMA after every step of every round and of the BC baseline (train/ema.py, as
    `nanovla train`): evaluation, the next round's rollouts and warm start use the EMA weights
    (`pretrained_model/ema/` in each checkpoint); 0 = the raw weights"""
    select_every: int = 0
    """validate the last round's and the BC baseline's EMA weights every this many steps (and
    at their last step) on validation scenes (seen instructions, seeds from 50000, never the
    evaluation's) and judge the best (eval/select.py, as `nanovla train --select`); 0 = the
    last weights"""
    select_episodes: int = 50
    """validation episodes per family of each --select-every validation"""
    lr: float = 2e-3
    """peak learning rate of each round's schedule (warmup + cosine)"""
    batch_size: int = 64
    """frames per training batch"""
    augment_shift: int = 2
    """random-shift augmentation in pixels; 0 = off"""
    color_swap: float = 0.5
    """probability that a training frame of the last round and of the BC baselines is
    recoloured by a random permutation of the world's five colours, its instruction renamed to
    match (as `nanovla train --color-swap`, data/color_swap.py); 0 = off. The earlier, short
    rounds train without it: on every round, seed 1 stalled at 0.00-0.02 in rounds 2-3 and
    ended at 0.33. Last round only, seen success over seeds 0-2 went from 0.90 / 0.85 / 0.84
    to 0.95 / 0.935 / 0.95 (README)"""
    num_envs: int = 32
    """parallel worlds while recording"""
    image_size: int = 64
    """camera images are image_size x image_size RGB"""
    instructions: str = "train+ko"
    """instruction templates of the rollouts: train | ko | train+ko"""
    num_threads: int = 0
    """torch intra-op CPU threads; 0 = torch's default"""
    amp: Annotated[
        Literal["none", "bf16", "fp16"],
        tyro.conf.arg(help_behavior_hint="(default: bf16 where the CPU has it, else none)"),
    ] = field(default_factory=default_amp)
    """autocast precision of every round's training step and of the BC baselines (as `nanovla
    train --train.amp`): bf16 where the CPU computes it natively (AMX or AVX512-BF16), none
    (fp32) elsewhere; fp16 needs CUDA. Rollouts and evaluation run in fp32"""
    progress: bool = True
    """progress bars"""
    policy: PolicyOptions = field(default_factory=_default_policy)
    """the policy architecture (round 0 without --checkpoint)"""
    eval: EvalConfig = field(default_factory=_default_eval)
    """the evaluation after every round"""

    def __post_init__(self) -> None:
        for name, least in (("demos", 1), ("rounds", 1), ("rollouts", 1), ("steps", 1),
                            ("final_steps", 1), ("select_every", 0),
                            ("select_episodes", 1)):  # fmt: skip
            if getattr(self, name) < least:
                flag = "--" + name.replace("_", "-")
                raise InputError(f"{flag} must be >= {least}, got {getattr(self, name)}")
        unknown = [task for task in self.tasks if task not in TASK_FAMILIES]
        if unknown or not self.tasks:
            raise InputError(f"--tasks: unknown task {unknown}; choose from {list(TASK_FAMILIES)}")
        if not 0.0 <= self.color_swap <= 1.0:
            raise InputError(f"--color-swap must be a probability in [0, 1], got {self.color_swap}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InputError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.beta0 <= 1.0 or not 0.0 <= self.decay <= 1.0:
            raise InputError(
                f"--beta0 and --decay must be in [0, 1], got {self.beta0} and {self.decay}"
            )
        if self.seed < 0 or self.seed + self.rounds >= VALIDATION_SEED:
            raise InputError(
                f"--seed must be >= 0 and --seed + --rounds below {VALIDATION_SEED} (the "
                f"validation scenes), got --seed {self.seed}, --rounds {self.rounds}"
            )

    def round_steps(self, round_index: int) -> int:
        """Gradient steps of round `round_index`."""
        return self.final_steps if round_index == self.rounds else self.steps

    @property
    def total_steps(self) -> int:
        """Gradient steps of all rounds together (the BC baseline trains as many)."""
        return self.steps * self.rounds + self.final_steps

    def beta(self, round_index: int) -> float:
        """Probability of executing the expert's action in round `round_index`."""
        if round_index == 0 and self.checkpoint is None:
            return 1.0
        return self.beta0 * self.decay**round_index


def parse(argv: list[str]) -> DaggerCommand:
    """The command line; with --resume, the saved command (only --progress may change, and
    --bc-every-round may be turned on: it adds baselines, the rounds stay as they are)."""
    command = tyro.cli(DaggerCommand, args=argv, prog="nanovla dagger", description=DESCRIPTION)
    if not command.resume:
        return command
    if command.out is None:
        raise InputError("--resume needs --out naming the DAgger run to continue")
    path = Path(command.out) / COMMAND_FILE
    if not path.is_file():
        raise MissingError(f"--resume: {path} not found; is {command.out} a nanovla dagger run?")
    saved = from_json(DaggerCommand, read_json(path), source=str(path), absent=ABSENT_MEANS)
    given = tyro.cli(
        DaggerCommand, args=argv, default=saved, prog="nanovla dagger", description=DESCRIPTION
    )
    refused = [
        name
        for name in field_differences(saved, given)
        if name not in ("out", "resume", "progress")
        and not (name == "bc_every_round" and given.bc_every_round)
    ]
    if refused:
        flags = ", ".join("--" + name.replace("_", "-") for name in refused)
        raise InputError(
            f"--resume continues the run as it was started; these may not change: {flags}"
        )
    given.out = Path(command.out)
    return given


def main(argv: list[str]) -> int:
    """`nanovla dagger ...`"""
    from nanovla.il.dagger import run

    run(parse(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
