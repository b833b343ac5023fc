"""Long-run soak of `nanovla train`: RSS and open file descriptors over 50,000 training steps.

Runs `pipeline.run` (the code path of `nanovla train --dataset D`) at tiny size - small images,
a small batch, one thread - with validation (loss on held-out batches + rollouts) every
`--eval-every` steps and a checkpoint every `--save-every` steps (the last `--keep-last` kept),
then the final evaluation. At every validation (by wrapping the pipeline's validation `eval_fn`,
i.e. every `--eval-every` steps) it samples, before validating: VmRSS, RssAnon, RssFile and
VmHWM from /proc/self/status, the open file descriptors (`len(os.listdir('/proc/self/fd'))`),
the threads and the Python objects tracked by the garbage collector. It prints every sample as
it is taken, then the growth of each figure (first vs last sample, the peak, and the slope over
the samples after the first `--settle` steps), the step rate, and what the run left on disk.

Run: `.venv/bin/python benchmarks/soak.py [--steps 50000 --image-size 32 --batch-size 8]`.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tyro

MB = 1 << 20


@dataclass
class Args:
    """Soak: RSS and open files sampled every `eval_every` steps of a long tiny training run."""

    root: Path = Path("/tmp/nanovla-soak")
    """where the tiny dataset is recorded (and reused) and the run directories are written"""
    steps: int = 50_000
    """training steps"""
    eval_every: int = 1000
    """validation every this many steps; the samples are taken at each validation"""
    save_every: int = 1000
    """checkpoint every this many steps"""
    keep_last: int = 2
    """checkpoints kept"""
    episodes: int = 300
    """demonstrations recorded for the tiny dataset"""
    tasks: tuple[str, ...] = ("reach", "push", "pick_place")
    """task families"""
    image_size: int = 32
    """camera images are image_size x image_size"""
    batch_size: int = 8
    """frames per batch"""
    eval_every_episodes: int = 2
    """validation rollouts per family at each validation"""
    eval_episodes: int = 2
    """final evaluation episodes per family and split"""
    threads: int = 1
    """torch threads"""
    cache: Literal["memory", "memmap"] = "memory"
    """frame cache of the EpisodeDataset (`nanovla train` uses `memory`)"""
    settle: int = 5000
    """steps after which growth is fitted as a slope (warm-up allocations come before)"""


def status() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile (bytes) and Threads from /proc/self/status."""
    values: dict[str, int] = {}
    with open("/proc/self/status") as file:
        for line in file:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                values[name] = int(rest.split()[0]) * 1024
            elif name == "Threads":
                values[name] = int(rest.split()[0])
    return values


def sample(step: int, started: float) -> dict[str, Any]:
    """One sample of this process's memory, descriptors, threads and gc-tracked objects."""
    return {
        "step": step,
        "t": time.perf_counter() - started,
        **status(),
        "fds": len(os.listdir("/proc/self/fd")),
        "py_threads": threading.active_count(),
        "objects": len(gc.get_objects()),
    }


def slope(samples: list[dict[str, Any]], key: str) -> float:
    """Least-squares slope of `key` per 10,000 steps over `samples` (0 with fewer than 2)."""
    if len(samples) < 2:
        return 0.0
    xs = [s["step"] for s in samples]
    ys = [float(s[key]) for s in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 0.0 if var == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var * 10_000


def main(args: Args) -> None:
    """Record (or reuse) the tiny dataset, run the soak, print samples and growth."""
    import nanovla.data as data
    from nanovla import pipeline
    from nanovla.eval.evaluate import EvalConfig

    args.root.mkdir(parents=True, exist_ok=True)
    dataset = args.root / f"data-{'-'.join(args.tasks)}-{args.episodes}ep-{args.image_size}px"
    out = args.root / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    command = pipeline.TrainCommand(
        out=out, dataset=dataset, collect_missing=True, tasks=args.tasks,
        episodes=args.episodes, image_size=args.image_size, batch_size=args.batch_size,
        eval_every_episodes=args.eval_every_episodes, progress=False,
        train=dataclasses.replace(
            pipeline.TrainCommand().train, steps=args.steps, eval_every=args.eval_every,
            save_every=args.save_every, keep_last=args.keep_last, num_threads=args.threads,
        ),
        eval=EvalConfig(episodes=args.eval_episodes, gifs=0),
    )  # fmt: skip
    if not (dataset / "meta" / "info.json").is_file():
        recording = time.perf_counter()
        pipeline.ensure_dataset(command)
        print(f"soak: recorded {dataset} in {time.perf_counter() - recording:.0f} s")
    if args.cache == "memmap":
        original_dataset = data.EpisodeDataset

        def make_dataset(root: Any, **kwargs: Any) -> Any:
            return original_dataset(root, **{**kwargs, "cache": "memmap"})

        data.EpisodeDataset = make_dataset  # type: ignore[assignment, misc]

    samples: list[dict[str, Any]] = []
    eval_seconds: list[float] = []
    started = time.perf_counter()
    original_validation = pipeline._validation

    def validation(command: Any, val_batches: list[dict[str, Any]]) -> Any:
        eval_fn = original_validation(command, val_batches)

        def sampled(model: Any, step: int) -> dict[str, float]:
            samples.append(sample(step, started))
            show(samples[-1], header=len(samples) == 1)
            begin = time.perf_counter()
            metrics = eval_fn(model, step)
            eval_seconds.append(time.perf_counter() - begin)
            return metrics

        return sampled

    pipeline._validation = validation  # type: ignore[assignment]
    print(
        f"soak: {args.steps} steps, {args.image_size}x{args.image_size} images, batch "
        f"{args.batch_size}, {args.threads} thread(s), cache={args.cache}, validation "
        f"({args.eval_every_episodes} rollouts/family + val loss) every {args.eval_every} steps, "
        f"checkpoint every {args.save_every} (keep {args.keep_last}) -> {out}",
        flush=True,
    )
    result = pipeline.run(command)
    samples.append({**sample(args.steps, started), "step": "end"})
    show(samples[-1], header=False)
    total = time.perf_counter() - started
    report(args, samples, eval_seconds, total, result, out)


def show(entry: dict[str, Any], header: bool) -> None:
    """Print one sample as a table row (with the header first when asked)."""
    if header:
        print(
            f"{'step':>6} {'t s':>7} {'VmRSS MB':>9} {'Anon MB':>8} {'File MB':>8} "
            f"{'VmHWM MB':>9} {'fds':>4} {'thr':>4} {'objects':>8}"
        )
    print(
        f"{entry['step']:>6} {entry['t']:>7.1f} {entry['VmRSS'] / MB:>9.1f} "
        f"{entry['RssAnon'] / MB:>8.1f} {entry['RssFile'] / MB:>8.1f} {entry['VmHWM'] / MB:>9.1f} "
        f"{entry['fds']:>4} {entry['Threads']:>4} {entry['objects']:>8}",
        flush=True,
    )


def report(
    args: Args,
    samples: list[dict[str, Any]],
    eval_seconds: list[float],
    total: float,
    result: dict[str, Any],
    out: Path,
) -> None:
    """Growth per figure, the step rate and what the run directory holds."""
    periodic = [s for s in samples if s["step"] != "end"]
    settled = [s for s in periodic if s["step"] >= args.settle]
    print(
        f"\ngrowth over {len(periodic)} samples (steps {periodic[0]['step']}..."
        f"{periodic[-1]['step']}; slope fitted over steps >= {args.settle}):"
    )
    print(
        f"  {'figure':<10} {'first':>10} {'last':>10} {'min':>10} {'max':>10} "
        f"{'last-first':>11} {'slope/10k st':>12}"
    )
    for key, scale, unit in (
        ("VmRSS", MB, "MB"),
        ("RssAnon", MB, "MB"),
        ("RssFile", MB, "MB"),
        ("VmHWM", MB, "MB"),
        ("fds", 1, ""),
        ("Threads", 1, ""),
        ("objects", 1, ""),
    ):
        values = [s[key] / scale for s in periodic]
        print(
            f"  {key + (' ' + unit if unit else ''):<10} {values[0]:>10.1f} {values[-1]:>10.1f} "
            f"{min(values):>10.1f} {max(values):>10.1f} {values[-1] - values[0]:>+11.1f} "
            f"{slope(settled, key) / scale:>+12.2f}"
        )
    timing = result.get("timing_s", {})
    train_s = float(timing.get("train", total))
    evals = sum(eval_seconds)
    print(
        f"\nstep rate: {args.steps} steps in {train_s:.0f} s of training phase incl. "
        f"{len(eval_seconds)} validations ({evals:.0f} s) and {args.steps // max(args.save_every, 1)}"
        f" checkpoints -> {args.steps / max(train_s - evals, 1e-9):.0f} steps/s excluding "
        f"validation, {args.steps / max(train_s, 1e-9):.0f} steps/s overall; whole run "
        f"{total:.0f} s (timing_s {timing})"
    )
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    logs = sorted((out / "logs").glob("*"))
    log_sizes = ", ".join(f"{p.name} {p.stat().st_size / 1024:.0f} kB" for p in logs)
    print(f"run dir: checkpoints/ {checkpoints}; logs/ {log_sizes}")
    seen = result.get("splits", {}).get("seen", {})
    print(f"final eval (seen): success {seen.get('success')} over {seen.get('episodes')} episodes")


if __name__ == "__main__":
    main(tyro.cli(Args))
