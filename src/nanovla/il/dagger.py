"""DAgger: dataset aggregation (`nanovla dagger`).

Ross, Gordon & Bagnell 2011, "A Reduction of Imitation Learning and Structured Prediction to
No-Regret Online Learning", https://arxiv.org/abs/1011.0686 (Algorithm 3.1):

    D <- expert demonstrations;  pi_0 <- BC(D)                    # round 0 (beta_0 = 1)
    for i = 1..K:
        beta_i = beta0 * decay^i
        roll out pi_mix = beta_i * expert + (1 - beta_i) * pi_{i-1}
        label every visited state s with the expert's action a*(s)
        D <- D + {(s, a*(s))};  pi_i <- train on D                 # warm start from pi_{i-1}
        evaluate pi_i

Behaviour cloning trains on the expert's states only, so a small error takes the learner to
states the expert never showed, where errors compound (cost ~ eps * T^2); DAgger trains on the
learner's own states, labelled by the expert, and its cost grows ~ eps * T.

What each round writes into `OUT/`:
- `data/`: the aggregated dataset, one LeRobot v3.0 dataset rewritten (atomically) each round:
  `action` = the expert's label, `action.executed` = what the world executed, `dagger.round`
  = the round that recorded the frame. It can be inspected, trained on (`nanovla train
  --dataset OUT/data`) and resumed from.
- `rounds/rKK/`: that round's training run (the engine's checkpoints/, logs/, plots/);
  `checkpoints/round-KK` and `checkpoints/last` link to its final checkpoint.
- `rounds.json`: per round the labelled frames so far, seen success and its 95% Wilson interval;
  then the BC baselines (`"bc"`, il/dagger_bc.py) trained on expert demonstrations of the same
  number of frames: the last round's in `bc/`, with `--bc-every-round` every round's (`bc-rKK/`).
- `eval.json` (the `nanovla train` schema, for the last round), `plots/dagger.png`.

Departures from the paper: mixing is per env and per step (with probability beta_i the
expert's action is executed; the learner still acts on every step so an action-chunk queue
stays in step); round i > 0 warm-starts from round i - 1's weights with a fresh optimizer and
learning-rate schedule (`--from-scratch` retrains from new weights, as the paper's analysis
assumes); rounds run a fixed number of gradient steps instead of training to convergence, the
last round longest (`--final-steps`: the earlier policies only choose which states get labelled,
the last one is the result). Every round and the BC baseline train with the main job's
weight EMA (`--ema-decay`, `il/training.py`): the EMA weights are evaluated, drive the next
round's rollouts and warm-start it. The paper returns the best policy on validation; we report
every round and keep the last, or with `--select-every N` the best-validating EMA weights of
the last round (and of the BC baseline), validated on seeds the evaluation never uses.

The colour swap (`--color-swap`, data/color_swap.py) trains the last round and the BC
baselines only: on every round it stalled seed 1's short warm-started rounds (0.00-0.02) and
the run ended at 0.33. Measured (README, "DAgger on push + pick_place"; seen success, 100
episodes per family, seeds 0 / 1 / 2, `--no-compare-bc --num-threads 1`): without the swap
0.895 / 0.85 / 0.845 (push 0.77-0.89), with it in the last round of 6000 steps (the defaults)
0.95 / 0.935 / 0.95 (push 0.90-0.96; 9000 steps: 0.945 / 0.965 / 0.965, intervals
overlapping). BC gains as much from the swap at this label budget (0.74 -> 0.93 at 68846
frames and 12000 steps, seed 0), so there DAgger's lead over BC falls inside the intervals;
without the swap it is 0.90 against 0.74, intervals apart.

Resume: the state of a run is its files. A round whose rollouts are in `data/` but not in
`rounds.json` is trained (the engine resumes its checkpoint) and evaluated again; nothing that
is already recorded is recorded twice, so `--resume` after a kill at any point continues the
round it was in.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nanovla.codec import to_json
from nanovla.constants import (
    CHECKPOINTS_DIR,
    ENV_STATE_KEY,
    EVAL_FILE,
    INFO_PATH,
    LAST_LINK,
    PLOTS_DIR,
)
from nanovla.data.dataset import EpisodeDataset
from nanovla.data.recording import DEFAULT_FPS, Mixing, record_episodes
from nanovla.data.writer import DatasetWriter, Episode
from nanovla.errors import ExistsError
from nanovla.eval.evaluate import format_table
from nanovla.il.dagger_bc import DATA_DIR, bc_baselines
from nanovla.il.dagger_command import COMMAND_FILE, DaggerCommand
from nanovla.il.dagger_report import format_rounds, plot_rounds
from nanovla.il.training import (
    TrainSpec,
    judged_checkpoint,
    load_policy,
    new_policy,
    seen_summary,
    train_and_evaluate,
)
from nanovla.io import read_json, write_json
from nanovla.progress import note
from nanovla.train.checkpoint import replace_symlink

EXECUTED_KEY = "action.executed"
"""extra feature: the action the world executed at the frame (expert's or learner's)"""
ROUND_KEY = "dagger.round"
"""extra feature: the DAgger round that recorded the frame (0 = initial demonstrations)"""
ROUNDS_FILE = "rounds.json"
ROUNDS_DIR = "rounds"
PLOT_FILE = "dagger.png"


@dataclass
class RoundResult:
    """One line of rounds.json."""

    round: int
    beta: float
    episodes: int
    labelled_frames: int
    success: float
    ci95: list[float]
    successes: int
    eval_episodes: int
    per_task: dict[str, float]
    seconds: dict[str, float]


# ------------------------------------------------------------------------- labels and actors
class PolicyLabeler:
    """A trained policy as the expert: the first action of its chunk for each current state."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy.eval()

    def __call__(self, obs: dict[str, Any]) -> np.ndarray:
        import torch

        from nanovla.models.policy.observation import observation_to_batch

        with torch.inference_mode():
            image, state, texts, _ = observation_to_batch(obs, self.policy._device())
            chunk = self.policy.predict_chunk(image, state, texts)  # (N, k, A) normalised
            return self.policy.normalizer.unnormalize_action(chunk[:, 0]).float().numpy()


# ------------------------------------------------------------------------- aggregation
def _stored_episodes(path: Path) -> list[Episode]:
    """Every episode of the aggregated dataset at `path`, with its extra features."""
    if not (path / INFO_PATH).is_file():
        return []
    dataset = EpisodeDataset(path, cache="memory", progress=False)
    extras = {key: dataset.read_feature(key) for key in (EXECUTED_KEY, ROUND_KEY)}
    if dataset.env_states is not None:
        extras[ENV_STATE_KEY] = dataset.env_states
    episodes = []
    for lo, hi in dataset.episode_bounds.tolist():
        episodes.append(
            Episode(
                images=dataset.images[lo:hi],
                states=dataset.states[lo:hi],
                actions=dataset.actions[lo:hi],
                task=dataset.tasks[int(dataset.task_index[lo])],
                extras={key: values[lo:hi] for key, values in extras.items()},
            )
        )
    return episodes


def recorded_rounds(path: Path) -> int:
    """How many rounds the aggregated dataset at `path` holds (0 when there is none)."""
    if not (path / INFO_PATH).is_file():
        return 0
    return int(read_json(path / INFO_PATH).get("nanovla", {}).get("dagger_rounds", 0))


def aggregate_round(
    command: DaggerCommand,
    round_index: int,
    actor: Any,
    labeler: Any,
    previous: DatasetWriter | None = None,
) -> DatasetWriter:
    """Record round `round_index` (expert demonstrations, or the actor's rollouts mixed with
    the expert at beta) and rewrite `OUT/data` with every earlier episode plus the new ones;
    `previous` (the writer of the last round, in this process) spares reading them back.
    Returns the finalized writer."""
    from nanovla.world import make_world
    from nanovla.world.experts import EXPERT_VERSION

    path = Path(command.out) / DATA_DIR
    seed = command.seed + round_index
    world = make_world(
        list(command.tasks),
        num_envs=command.num_envs,
        image_size=command.image_size,
        seed=seed,
        instructions=command.instructions,
    )
    source = {
        "families": list(command.tasks),
        "instructions": command.instructions,
        "seed": command.seed,
        "expert_noise": 0.0,
        "expert_version": EXPERT_VERSION,
        "driver": "dagger",
        "dagger_rounds": round_index + 1,
        "labeler": "world expert" if command.expert is None else str(command.expert),
    }
    if previous is not None:
        writer = previous.fork(source)
    else:
        writer = DatasetWriter(path, fps=DEFAULT_FPS, overwrite=True, source=source)
        for episode in _stored_episodes(path):
            writer.add_episode(episode)
    demos = actor is None
    report = record_episodes(
        world,
        writer,
        command.demos if demos else command.rollouts,
        actor=actor,
        keep_failures=not demos,
        seed=seed,
        max_attempts=None if not demos else 5 * command.demos + command.num_envs,
        progress=command.progress,
        labeler=labeler,
        mixing=Mixing(command.beta(round_index), EXECUTED_KEY, {ROUND_KEY: float(round_index)}),
    )
    writer.finalize()
    note(f"dagger: round {round_index}: {report.summary()}")
    return writer


# ------------------------------------------------------------------------- training
def _round_dir(out: Path, round_index: int) -> Path:
    return Path(out) / ROUNDS_DIR / f"r{round_index:02d}"


def _spec(command: DaggerCommand, final: bool = False) -> TrainSpec:
    """How every round trains; `final` (the last round, the BC baselines) adds --select-every
    and --color-swap (the earlier, short rounds train on the frames as recorded)."""
    return TrainSpec(
        tasks=tuple(command.tasks),
        image_size=command.image_size,
        instructions=command.instructions,
        eval=command.eval,
        lr=command.lr,
        batch_size=command.batch_size,
        augment_shift=command.augment_shift,
        color_swap=command.color_swap if final else 0.0,
        num_threads=command.num_threads,
        amp=command.amp,
        progress=command.progress,
        ema_decay=command.ema_decay,
        select_every=command.select_every if final else 0,
        select_episodes=command.select_episodes,
    )


def _initial_policy(command: DaggerCommand, round_index: int, dataset: Any) -> Any:
    """Round 0: --checkpoint or new seeded weights; later rounds: the last round's weights
    (from disk, so a resumed run starts where a straight one would), or new ones."""
    if round_index > 0 and not command.from_scratch:
        last = judged_checkpoint(_round_dir(Path(command.out), round_index - 1))
        return load_policy(last, f"round {round_index - 1} checkpoint", command.image_size)
    if command.checkpoint is not None and round_index == 0:
        return load_policy(command.checkpoint, "--checkpoint", command.image_size)
    return new_policy(command.policy, command.image_size, dataset, command.seed + round_index)


def _rollout_actor(command: DaggerCommand, round_index: int) -> Any:
    """Who drives round `round_index`'s rollouts: the expert (None) in round 0, or
    --checkpoint there when given; the last round's policy afterwards."""
    if round_index == 0:
        if command.checkpoint is None:
            return None
        return load_policy(command.checkpoint, "--checkpoint", command.image_size)
    last = judged_checkpoint(_round_dir(Path(command.out), round_index - 1))
    return load_policy(last, f"round {round_index - 1} checkpoint", command.image_size)


def _publish(out: Path, round_index: int) -> None:
    """`checkpoints/round-KK` -> that round's final checkpoint; `checkpoints/last` -> it."""
    step = (_round_dir(out, round_index) / CHECKPOINTS_DIR / LAST_LINK).resolve()
    name = f"round-{round_index:02d}"
    (out / CHECKPOINTS_DIR).mkdir(parents=True, exist_ok=True)
    replace_symlink(out / CHECKPOINTS_DIR / name, os.path.relpath(step, out / CHECKPOINTS_DIR))
    replace_symlink(out / CHECKPOINTS_DIR / LAST_LINK, name)


# ------------------------------------------------------------------------- the rounds
def run_round(
    command: DaggerCommand, round_index: int, labeler: Any, previous: DatasetWriter | None
) -> tuple[dict[str, Any], DatasetWriter | None]:
    """Record round `round_index` unless `data/` already holds it, train, evaluate; returns
    its rounds.json entry and the aggregate's writer (None when nothing was recorded)."""
    out = Path(command.out)
    started = time.perf_counter()
    writer = None
    if recorded_rounds(out / DATA_DIR) <= round_index:
        actor = _rollout_actor(command, round_index)
        writer = aggregate_round(command, round_index, actor, labeler, previous)
    collected = time.perf_counter()
    dataset = EpisodeDataset(out / DATA_DIR, cache="memory", progress=False)
    policy = _initial_policy(command, round_index, dataset)
    _, result, seconds = train_and_evaluate(
        _spec(command, final=round_index == command.rounds),
        _round_dir(out, round_index),
        policy,
        dataset,
        command.seed + round_index,
        command.round_steps(round_index),
    )
    _publish(out, round_index)
    seen = seen_summary(result)
    seconds["collect"] = round(collected - started, 1)
    entry = RoundResult(
        round=round_index,
        beta=command.beta(round_index),
        episodes=dataset.num_episodes,
        labelled_frames=dataset.num_frames,
        success=seen["success"],
        ci95=seen["ci95"],
        successes=seen["successes"],
        eval_episodes=seen["episodes"],
        per_task=seen["per_task"],
        seconds=seconds,
    )
    write_json(_round_dir(out, round_index) / EVAL_FILE, result)
    return to_json(entry), writer


# ------------------------------------------------------------------------- the command
def _check_inputs(command: DaggerCommand) -> Any:
    """Every given checkpoint loads at this image size (before anything is written); returns
    the labeler (None: the world's expert)."""
    if command.checkpoint is not None:
        load_policy(command.checkpoint, "--checkpoint", command.image_size)
    if command.expert is None:
        return None
    return PolicyLabeler(load_policy(command.expert, "--expert", command.image_size))


def _start(command: DaggerCommand) -> None:
    out = Path(command.out)
    if not command.resume and ((out / COMMAND_FILE).exists() or (out / ROUNDS_DIR).exists()):
        raise ExistsError(f"{out} already holds a DAgger run; pass --resume to continue it")
    saved = to_json(command)  # on resume only --progress / --bc-every-round can differ
    saved["out"], saved["resume"] = str(out), False
    write_json(out / COMMAND_FILE, saved)


def run(command: DaggerCommand) -> dict[str, Any]:
    """The whole DAgger run; returns rounds.json's content (also written)."""
    from nanovla.train.lock import RunLock

    started = time.perf_counter()
    command.out = Path(command.out or Path("runs") / time.strftime("dagger-%Y%m%d-%H%M%S"))
    out = command.out
    labeler = _check_inputs(command)
    with RunLock(out):
        _start(command)
        path = out / ROUNDS_FILE
        state = read_json(path) if path.is_file() else {"rounds": [], "bc": []}
        writer = None
        for round_index in range(len(state["rounds"]), command.rounds + 1):
            entry, writer = run_round(command, round_index, labeler, writer)
            state["rounds"].append(entry)
            write_json(path, state)
        bc_baselines(command, state, path, _spec(command, final=True))
        result = read_json(_round_dir(out, command.rounds) / EVAL_FILE)
        result.setdefault("checkpoint", str(judged_checkpoint(out)))  # the round's judged weights
        result["timing_s"] = {"total": round(time.perf_counter() - started, 1)}
        write_json(out / EVAL_FILE, result)
        plot_rounds(state, out / PLOTS_DIR / PLOT_FILE)
        print(format_rounds(state))
        print(format_table(result))
        print(f"wall time {time.perf_counter() - started:.0f} s; wrote {path}, {out / EVAL_FILE}")
        return state
