"""The `nanovla train` command: its options, `--quick`, and the rules of `--resume`.

`TrainCommand` is the typed config the CLI is generated from (one option per setting: the
nested training-loop and policy configs hide what the command sets itself); `parse(argv)` turns
a command line into one, on top of `quick_command()` with `--quick`, and with `--resume` on top
of the run's saved `train_command.json`, applying only the options in `RESUMABLE`.
`nanovla.pipeline.run` executes it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from nanovla.codec import field_differences, from_json, to_json
from nanovla.constants import COMMAND_FILE
from nanovla.errors import InputError, MissingError
from nanovla.eval.evaluate import VALIDATION_SEED, EvalConfig, seed_range
from nanovla.io import read_json
from nanovla.models.policy import PolicyConfig
from nanovla.train.config import TrainConfig

DESCRIPTION = """`nanovla train`: the main job — demonstrations -> dataset -> VLA policy -> BC -> evaluation.

With no arguments it records expert demonstrations of reach, push and pick_place in the
embedded world (English and Korean training instructions, 64x64 images; cached under `data/` so
the second run skips it), trains the
default policy by behavior cloning with a weight EMA, keeps the EMA weights that succeeded most
often on validation episodes (`OUT/selection/best`), evaluates them on fixed seeded episodes
(seen, held-out, user-style English, Korean, held-out Korean instructions and held-out
attribute combinations), prints the success table and writes `OUT/eval.json`, rollout GIFs and
the checkpoints under `OUT/checkpoints/`.

`--resume` continues the run in `--out` with the options it was started with; options that only
say how long to train, how often to log, save or validate, and how to evaluate at the end may be
given again and are applied; any other option given with `--resume` is refused by name."""
"""what `nanovla train --help` says before the options"""

RESUMABLE: tuple[str, ...] = (
    "train.steps",
    "train.log_every",
    "train.save_every",
    "train.keep_last",
    "train.eval_every",
    "train.num_threads",
    "train.tensorboard",
    "progress",
    "frame_cache",
    "eval",
    "eval_every_episodes",
    "nproc",
    "gpu_frames",
)
"""Options `--resume` applies when given again (dotted names; `eval` = every `--eval.*`).
Raising `--train.steps` extends the run; the learning-rate schedule is recomputed for the new
total, so it continues from where the new schedule stands at the resumed step."""


@dataclass
class TrainLoopOptions(TrainConfig):
    """The training loop (`TrainConfig`) as `nanovla train` exposes it: batch size, seed, resume
    and progress are the command's own `--batch-size`, `--seed`, `--resume`, `--no-progress`
    (one option per setting)."""

    batch_size: tyro.conf.Suppress[int] = 64
    seed: tyro.conf.Suppress[int] = 0
    resume: tyro.conf.Suppress[bool] = False
    progress: tyro.conf.Suppress[bool] = True
    amp: Literal["none", "bf16", "fp16"] = "none"
    """autocast precision of the training step: bf16 (CPU or CUDA), fp16 with GradScaler (CUDA
    only) or none (fp32). `nanovla train` picks bf16 where the CPU computes it natively (AMX or
    AVX512-BF16: 1.6x the fp32 step) and none elsewhere; evaluation always runs in fp32"""


@dataclass
class PolicyOptions(PolicyConfig):
    """The policy (`PolicyConfig`) as `nanovla train` exposes it: the image size is the command's
    own `--image-size` (the demonstrations are recorded at it too)."""

    image_size: tyro.conf.Suppress[int] = 64


def plain_config(config: Any, cls: type, **changes: Any) -> Any:
    """`config` (a `TrainLoopOptions` / `PolicyOptions`) as the plain config `cls` the engine and
    the policy take, with `changes` applied (the command's own batch size, seed, image size)."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if f.init}
    return cls(**{**values, **changes})


def fast_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX tiles or AVX512-BF16), where bf16 autocast
    pays; elsewhere torch emulates it and it is slower than fp32."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def default_amp() -> str:
    """The training step's default autocast precision: bf16 where `fast_bf16()`, else none."""
    return "bf16" if fast_bf16() else "none"


def _default_train() -> TrainLoopOptions:
    # eval_every: the validation loss (8 held-out batches) and 25 validation rollouts per family
    # every 1000 steps cost a few seconds per run, do not change the weights, and choose the
    # checkpoint the run keeps (eval/select.py). amp: bf16 autocast where the CPU computes bf16
    # natively (`fast_bf16`: 1.61x the fp32 step at one thread on an AMX Xeon,
    # `benchmarks/step_variants.py`), fp32 elsewhere (emulated bf16 is slower); with bf16 and
    # the Korean scrambling, seeds 0-2 gave seen 0.95-0.97 at 2 threads in 372-413 s, with word
    # insertion too 0.97-0.99 in 573-612 s on a slower host the next session (README,
    # `benchmarks/default_seeds.py --seeds 0 1 2 --threads 2`). The value is fixed when the
    # run starts (train_command.json), so a resumed run keeps it. steps: pick_place is learned
    # late and abruptly; at 7000 steps its validation success was 0.28 at step 5000 and 0.88 at
    # 6000 with seed 0, but still 0.00 at 6000 and 0.16 at 7000 with seed 1 (seen 0.90 vs 0.68,
    # `benchmarks/default_seeds.py`), hence 10000; with the colour swap, 10000 gave seen
    # 0.94-0.97 and combos 0.87-0.92 over seeds 0-2, 13000 seen 0.97-0.98 and combos 0.92-0.95
    # (validation success was still rising at 10000 in every run; README).
    return TrainLoopOptions(
        steps=13000,
        lr=2e-3,
        warmup_steps=200,
        log_every=100,
        eval_every=1000,
        amp=default_amp(),
    )


def default_policy_config() -> PolicyOptions:
    """The policy of the default `nanovla train` run (benchmarks measure this one)."""
    # One stride-2 stage fewer than vla_cnn's default: FiLM and the readout work on a 16x16 grid
    # (64x64 images), which generalized to new scenes measurably faster per second of training
    # than the 8x8 grid on the default suite (validation action L1 at equal wall time).
    # Word dropout 0.1 (`benchmarks/language_compare.py --steps 7000`, seed 0, 100 episodes per
    # family and split): held-out paraphrases 0.89 vs 0.83, user requests 0.91 vs 0.83, held-out
    # Korean 0.81 vs 0.59, held-out combos 0.35 vs 0.24; seen 0.90 vs 0.94 (intervals overlap).
    # Word insertion 0.3 (`benchmarks/default_seeds.py --seeds 0 1 2 --threads 2
    # "--extra=--policy.word-insertion 0.3"`, README): held-out paraphrases 0.91 / 0.95 / 0.96
    # -> 0.96 / 0.99 / 0.95, ko_heldout 0.90-0.97 -> 0.96-0.99, seen 0.95-0.97 -> 0.97-0.99; the
    # weakest held-out template ("drive {object} into {place} with the gripper") had followed
    # "gripper", a word of the reach templates only.
    return PolicyOptions(vision_widths=(32,), word_dropout=0.1, word_insertion=0.3)


@dataclass
class TrainCommand:
    """Collect demonstrations (cached), train a VLA policy by behavior cloning, evaluate it.

    Options you will most likely change come first.
    """

    out: Annotated[Path | None, tyro.conf.arg(help_behavior_hint="(default: runs/<timestamp>)")] = (
        None
    )
    """run directory; holds checkpoints/, logs/, eval.json, videos/"""
    tasks: tuple[str, ...] = ("reach", "push", "pick_place")
    """task families to learn: reach, push, pick_place, sort"""
    episodes: int = 6000
    """expert demonstrations to record (all families together); distinct scenes are what a
    policy needs to generalize, and recording is cheap"""
    resume: bool = False
    """continue the run in --out from its last checkpoint with the options it was started with;
    only --train.steps, the logging/saving/validation intervals and --eval.* may be given again"""
    instructions: str = "train+ko"
    """instruction templates of the demonstrations: train | ko | train+ko | heldout | ko_heldout"""
    targets: str = "train"
    """target (kind, color) combos of the demonstrations: train (never the held-out combos, e.g.
    a green ball, so the evaluation's `combos` split is a compositional test; validation and the
    other splits then ask only for seen combos unless --eval.targets says otherwise) | all"""
    image_size: int = 64
    """camera images are image_size x image_size RGB"""
    quick: bool = False
    """a quick run instead of the full job: reach and push only, 3000 demonstrations, 5000 steps,
    30 evaluation episodes per family; about 3 minutes on 2 cores, seen success about 0.9 (the
    README gives the measured range); options given too still apply"""
    dataset: Annotated[
        Path | None,
        tyro.conf.arg(help_behavior_hint="(default: data/<tasks>-<episodes>ep-<options hash>)"),
    ] = None
    """dataset directory to train on; the default one is recorded on the first run and reused
    afterwards. A given directory must hold a dataset (or pass --collect-missing); what it holds
    (episodes, image size, families) wins over the options, and the run records its truth"""
    collect_missing: bool = False
    """record the demonstrations into --dataset when that directory does not exist yet"""
    progress: bool = True
    """progress bars (collection, training, evaluation); --no-progress silences all of them"""
    frame_cache: Literal["auto", "memory", "memmap"] = "auto"
    """where decoded frames live: "memory" (the loader keeps a padded copy in RAM), "memmap" (a
    uint8 file beside the dataset, each batch read with pread: memory stays flat however large
    the dataset) or "auto" (memmap, or memory with --gpu-frames). Measured on the default run:
    peak RSS 0.79 GB with memmap vs 3.5 GB in memory; loader-fed / pure training step (bf16)
    0.908 vs 0.924 (`benchmarks/train_throughput.py --frame-cache memmap|memory --threads 1`)"""
    gpu_frames: bool = False
    """with --train.device cuda: keep the loader's frames on the GPU and build batches there
    (no host-to-device copy per step; needs the frames in memory, not memmap); no effect on CPU"""
    expert_noise: float = 0.3
    """DART (noise injected while demonstrating): std of Gaussian noise added to the expert's
    executed motion; the recorded label stays clean, so the demonstrations show how to recover
    from off-course states"""
    collect_envs: int = 32
    """parallel worlds while recording demonstrations"""
    seed: int = 0
    """seed of the demonstrations' initial states, the initial weights and the batch order"""
    val_seed: int = VALIDATION_SEED
    """base seed of the validation rollouts during training (--train.eval-every > 0); their
    scenes are disjoint from the final evaluation's (--eval.seed) and from the demonstrations'"""
    batch_size: int = 64
    """frames per training batch"""
    nproc: int = 1
    """training processes (DDP under torchrun; gloo on CPU, NCCL with --train.device cuda): the
    batch is split over them, so the global batch and the loss curve stay those of one process;
    at most the CPU cores (or GPUs) available; may change on --resume"""
    augment_shift: int = 2
    """random-shift augmentation in pixels (replicate-pad and crop back); 0 = off"""
    color_swap: float = 0.5
    """probability that a training frame is recoloured by a random permutation of the world's
    five colours, its instruction renamed to match (data/color_swap.py: the demonstrations'
    actions stay right, and every colour meets every kind, held-out combos included); 0 = off.
    Held-out combos over seeds 0-2 (README): 0.41-0.55 without it, 0.93-0.94 with it"""
    ko_scramble: float = 0.5
    """probability that a Korean training instruction is put in place-first order ("파란 그릇에
    빨간 공을 넣어", data/scramble.py: Korean marks the object with a particle, not a position);
    0 = off. The held-out Korean template that names the place first is then no longer an
    unseen word order: it went from 0.28-0.43 to 0.96 on pick_place (seed 0)"""
    val_fraction: float = 0.05
    """fraction of episodes held out for the validation loss"""
    eval_every_episodes: int = 25
    """episodes per family in the validation rollouts (--train.eval-every sets how often; the
    validation loss on the --val-fraction episodes is computed at the same time); 0 = loss only"""
    ema_decay: float = 0.999
    """weight EMA after every step (W_ema <- d W_ema + (1 - d) W, train/ema.py): validation and
    the final evaluation use the average; 0 = off (the raw weights)"""
    select: bool = True
    """keep the (EMA) weights with the best seen success on the validation rollouts
    (OUT/selection/best; needs --train.eval-every > 0 and --eval-every-episodes > 0) and evaluate
    those; --no-select evaluates the last weights"""
    policy: PolicyOptions = field(default_factory=default_policy_config)
    """the policy architecture"""
    train: TrainLoopOptions = field(default_factory=_default_train)
    """the optimizer and the training loop"""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """the final evaluation"""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise InputError(f"--episodes must be >= 1, got {self.episodes}")
        if not self.tasks:
            raise InputError("--tasks must name at least one task family")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InputError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        if self.targets not in ("train", "all"):
            raise InputError(f"--targets must be train or all, got {self.targets!r}")
        if not 0.0 <= self.color_swap <= 1.0:
            raise InputError(f"--color-swap must be a probability in [0, 1], got {self.color_swap}")
        if not 0.0 <= self.ko_scramble <= 1.0:
            raise InputError(
                f"--ko-scramble must be a probability in [0, 1], got {self.ko_scramble}"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise InputError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        validation, final = seed_range(self.val_seed), seed_range(self.eval.seed)
        if validation.start < final.stop and final.start < validation.stop:
            raise InputError(
                f"--val-seed {self.val_seed} and --eval.seed {self.eval.seed} give overlapping "
                f"scenes (each uses {len(final)} seeds from its base); move one of them"
            )
        if self.seed in validation or self.seed in final:
            raise InputError(
                f"--seed {self.seed} lies in the validation or evaluation seed range; the "
                "demonstrations would share scenes with them"
            )


def command_json(command: TrainCommand, out: Path) -> dict[str, Any]:
    """`command` as train_command.json holds it (`resume` false, `out` the run directory)."""
    saved = to_json(command)
    saved["out"], saved["resume"] = str(out), False
    return saved


ABSENT_MEANS: dict[str, Any] = {"color_swap": 0.0, "ko_scramble": 0.0}
"""Options added after runs were saved without them: the value that reproduces those runs (the
behaviour before the option existed), not today's default, so they resume as they started."""


def load_command(out: Path) -> TrainCommand:
    """The command the run in `out` was started with (its train_command.json)."""
    path = out / COMMAND_FILE
    if not path.is_file():
        raise MissingError(f"--resume: {path} not found; is {out} a nanovla train run?")
    command = from_json(TrainCommand, read_json(path), source=str(path), absent=ABSENT_MEANS)
    command.out, command.resume = out, True
    return command


def _allowed_on_resume(name: str) -> bool:
    return any(name == allowed or name.startswith(allowed + ".") for allowed in RESUMABLE)


def resume_command(saved: TrainCommand, given: TrainCommand) -> TrainCommand:
    """`given` (parsed with `saved` as its defaults) if it changes only resumable options;
    otherwise an InputError naming every option that may not change on resume."""
    changed = [name for name in field_differences(saved, given) if name not in ("out", "resume")]
    refused = [name for name in changed if not _allowed_on_resume(name)]
    if refused:
        flags = ", ".join("--" + name.replace("_", "-") for name in refused)
        raise InputError(
            f"--resume continues the run with the options it was started with; these may not "
            f"change: {flags} (only --train.steps, the logging/saving/validation intervals and "
            "--eval.* may)"
        )
    if changed:
        print(f"train: resuming with changed {', '.join(changed)}")
    return given


def quick_command() -> TrainCommand:
    """What `--quick` starts from (options given on the command line still apply on top)."""
    train = dataclasses.replace(_default_train(), steps=5000)
    return TrainCommand(
        quick=True,
        tasks=("reach", "push"),
        episodes=3000,
        train=train,
        eval=EvalConfig(episodes=30),
    )


def parse(argv: list[str]) -> TrainCommand:
    """The command line as a TrainCommand; with --quick, on top of `quick_command()`; with
    --resume, the saved command updated by the options that may change (`resume_command`)."""
    command = tyro.cli(TrainCommand, args=argv, prog="nanovla train", description=DESCRIPTION)
    if command.quick and not command.resume:
        command = tyro.cli(TrainCommand, args=argv, default=quick_command(), prog="nanovla train")
    if not command.resume:
        return command
    if command.out is None:
        raise InputError("--resume needs --out naming the run directory to continue")
    saved = load_command(command.out)
    given = tyro.cli(
        TrainCommand, args=argv, default=saved, prog="nanovla train", description=DESCRIPTION
    )
    return resume_command(saved, given)
