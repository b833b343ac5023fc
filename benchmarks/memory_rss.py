"""Peak RSS of the `nanovla train` pipeline and its growth with the dataset (memmap frame cache).

For each dataset size (default 6,000 and 60,000 episodes of the default job: reach, push,
pick_place, 64x64 frames, recorded once under `--root` and reused) this runs `pipeline.run` - the
code path of `nanovla train --dataset D` - in a fresh subprocess with the frames loaded through
the memmap frame cache (`EpisodeDataset(cache="memmap")`; `nanovla train` itself loads them
into memory, `--cache memory`), for `--steps` training steps (not the default 7000: the steps
after the first few allocate nothing that depends on the dataset) with validation every
`--eval-every` steps and a final evaluation of `--eval-episodes` episodes per family and split.

Measured per run: peak RSS (`ru_maxrss` of the child from `os.wait4`, and VmHWM), and, sampled
every `--interval-s` from /proc/<pid>/status, the peaks of RssAnon (private memory: grows with
what the process copies) and RssFile (mapped file pages resident in the process: the frame
cache's page-cache share, reclaimable). The design target is that RSS grows with the dataset by
no more than the frame cache's page-cache share: anonymous memory flat. The bytes of the
structures that scale with the frame count (dataset vectors, loader index tensors, a loader's
frame copy) are listed so that growth can be attributed.

`--loaders copy` also measures the loader as it was before it read memmap frames per batch: it
hands the loader the frames as a plain ndarray view of the same memmap, so the loader builds its
padded channels-first copy in anonymous memory (what it still does for in-memory frames).

Run: `.venv/bin/python benchmarks/memory_rss.py [--sizes 6000 60000 --loaders gather copy]`.
60,000 episodes take ~6 min to record on 2 cores, ~1 GB of parquet and ~13.5 GB of frame cache.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tyro

STATUS_FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem")
"""/proc/<pid>/status fields sampled (kB there; bytes here)."""
MB = 1 << 20
CHILD_FLAG = "--_child"


@dataclass
class Args:
    """Peak RSS of `nanovla train` at two dataset sizes through the memmap frame cache."""

    root: Path = Path("/tmp/nanovla-rss")
    """where the datasets are recorded (`<root>/<episodes>ep`) and reused, and runs are written"""
    sizes: tuple[int, ...] = (6000, 60000)
    """dataset sizes in episodes (the default job's families and options)"""
    loaders: tuple[Literal["gather", "copy"], ...] = ("gather",)
    """`gather`: the loader as it is (memmap frames read per batch); `copy`: the loader given a
    plain ndarray view of the memmap, so it builds its anonymous padded copy of the frames"""
    cache: Literal["memmap", "memory"] = "memmap"
    """frame cache of the EpisodeDataset (`nanovla train` uses `memory`)"""
    steps: int = 300
    """training steps per run"""
    eval_every: int = 100
    """validation (loss + rollouts) every this many steps"""
    eval_episodes: int = 10
    """final evaluation episodes per family and split"""
    threads: int = 2
    """torch threads (`--train.num-threads`)"""
    interval_s: float = 0.05
    """sampling interval of /proc/self/status in the measured process"""
    report_only: bool = False
    """print the tables of the runs recorded so far in `<root>/results.json` and exit"""


def read_status() -> dict[str, int]:
    """The STATUS_FIELDS of /proc/self/status, in bytes."""
    values: dict[str, int] = {}
    with open("/proc/self/status") as file:
        for line in file:
            name, _, rest = line.partition(":")
            if name in STATUS_FIELDS:
                values[name] = int(rest.split()[0]) * 1024
    return values


class Sampler(threading.Thread):
    """Samples /proc/self/status every `interval` seconds; keeps the peak of each field overall
    and per phase (a phase runs from one `mark(name)` to the next)."""

    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak: dict[str, int] = read_status()
        self.phases: list[dict[str, Any]] = []
        self._phase_peak = dict(self.peak)
        self._phase_start = time.perf_counter()
        self._lock = threading.Lock()
        self._done = threading.Event()

    def _update(self) -> None:
        now = read_status()
        with self._lock:
            for key, value in now.items():
                self.peak[key] = max(self.peak.get(key, 0), value)
                self._phase_peak[key] = max(self._phase_peak.get(key, 0), value)

    def run(self) -> None:
        while not self._done.wait(self.interval):
            self._update()

    def mark(self, name: str) -> None:
        """End the current phase as `name`: its peaks, the values now and its duration."""
        self._update()
        with self._lock:
            end = time.perf_counter()
            self.phases.append(
                {
                    "phase": name,
                    "seconds": end - self._phase_start,
                    "peak": dict(self._phase_peak),
                    "end": read_status(),
                }
            )
            self._phase_peak, self._phase_start = read_status(), end

    def stop(self) -> None:
        self._done.set()
        self.join()
        self._update()


def _nbytes(value: Any) -> int:
    if value is None:
        return 0
    if hasattr(value, "untyped_storage"):  # torch tensor: count views of numpy memory as 0
        return int(value.numel() * value.element_size())
    return int(getattr(value, "nbytes", 0))


def child(spec: dict[str, Any]) -> None:
    """The measured process: `pipeline.run` on spec['dataset'], results to spec['result']."""
    sampler = Sampler(spec["interval_s"])
    sampler.start()
    import numpy as np

    import nanovla.data as data
    from nanovla import pipeline
    from nanovla.eval.evaluate import EvalConfig
    from nanovla.train.engine import Trainer

    sampler.mark("import")
    datasets: list[Any] = []
    loaders: list[Any] = []
    original_dataset, original_loader = data.EpisodeDataset, data.BatchLoader
    original_fit = Trainer.fit

    def make_dataset(root: Any, **kwargs: Any) -> Any:
        dataset = original_dataset(root, **{**kwargs, "cache": spec["cache"]})
        if spec["loader"] == "copy":
            dataset.images = np.asarray(dataset.images)  # plain ndarray view: the loader copies
        datasets.append(dataset)
        sampler.mark("dataset")
        return dataset

    class Loader(original_loader):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            loaders.append(self)
            sampler.mark(f"loader:{self.split}")

    def fit(self: Trainer) -> dict[str, float]:
        sampler.mark("policy+trainer")
        out = original_fit(self)
        sampler.mark("train")
        return out

    data.EpisodeDataset, data.BatchLoader = make_dataset, Loader  # type: ignore[assignment, misc]
    Trainer.fit = fit  # type: ignore[method-assign]
    command = pipeline.TrainCommand(
        out=Path(spec["out"]), dataset=Path(spec["dataset"]), episodes=spec["episodes"],
        progress=False,
        train=dataclasses.replace(
            pipeline.TrainCommand().train, steps=max(spec["steps"], 1), eval_every=spec["eval_every"],
            num_threads=spec["threads"],
        ),
        eval=EvalConfig(episodes=spec["eval_episodes"], gifs=0),
    )  # fmt: skip
    started = time.perf_counter()
    if spec["steps"] > 0:
        pipeline.run(command)
        sampler.mark("final eval")
    else:  # frame cache only
        make_dataset(Path(spec["dataset"]), progress=False)
    wall = time.perf_counter() - started
    sampler.stop()
    dataset = datasets[0]
    structures = {
        "dataset vectors (states, actions, env_states, 3 index columns, bounds)": sum(
            _nbytes(getattr(dataset, name, None))
            for name in (
                "states",
                "actions",
                "env_states",
                "episode_index",
                "frame_index",
                "task_index",
                "episode_bounds",
            )
        ),  # fmt: skip
    }
    for loader in loaders:
        frames = loader.frames
        structures[f"loader[{loader.split}] frame copy (M, 3, H+2s, W+2s)"] = _nbytes(frames)
        structures[f"loader[{loader.split}] index tensors (rows, _local, perm, last_row)"] = sum(
            _nbytes(t) for t in (loader.rows, loader._local, loader._permutation, loader.last_row)
        )
    train_phase = next((p for p in sampler.phases if p["phase"] == "train"), None)
    result = {
        "frames": int(dataset.num_frames),
        "episodes": int(dataset.num_episodes),
        "images_type": type(dataset.images).__name__,
        "peak": sampler.peak,
        "phases": sampler.phases,
        "structures": structures,
        "wall_s": wall,
        "train_s": None if train_phase is None else train_phase["seconds"],
    }
    Path(spec["result"]).write_text(json.dumps(result))


def ensure_dataset(root: Path, episodes: int) -> tuple[Path, float]:
    """`<root>/<episodes>ep`, recorded with the default job's options unless it exists; the
    seconds recording took (0 when reused)."""
    from nanovla import pipeline

    path = root / f"{episodes}ep"
    started = time.perf_counter()
    command = pipeline.TrainCommand(
        dataset=path, episodes=episodes, collect_missing=True, progress=False
    )
    if not (path / "meta" / "info.json").is_file():
        print(f"recording {episodes} episodes into {path} ...", flush=True)
        pipeline.ensure_dataset(command)
        return path, time.perf_counter() - started
    return path, 0.0


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run `child(spec)` in a fresh interpreter; its result plus `ru_maxrss` from wait4."""
    process = subprocess.Popen(
        [sys.executable, __file__, CHILD_FLAG, json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:  # e.g. -9 from the OOM killer: reported, not fatal
        print(output[-4000:])
        print(f"measured run failed (exit {process.returncode}): {spec}")
        return {"failed": process.returncode, "ru_maxrss": usage.ru_maxrss * 1024}
    result = json.loads(Path(spec["result"]).read_text())
    result["ru_maxrss"] = usage.ru_maxrss * 1024  # kB on Linux
    return result


def main(args: Args) -> None:
    """Record (or reuse) the datasets, build their frame caches, measure, print the tables."""
    args.root.mkdir(parents=True, exist_ok=True)
    results = args.root / "results.json"
    if args.report_only:
        report(json.loads(results.read_text()), args)
        return
    print(
        f"memory_rss: pipeline.run (nanovla train --dataset D) with cache={args.cache}, "
        f"{args.steps} training steps (not 7000), validation every {args.eval_every} steps, "
        f"final eval {args.eval_episodes} episodes/family/split, {args.threads} threads"
    )
    rows: list[dict[str, Any]] = []
    for episodes in args.sizes:
        path, recorded = ensure_dataset(args.root, episodes)
        if recorded:
            print(f"  recorded {path} in {recorded:.0f} s", flush=True)
        base = {
            "dataset": str(path), "episodes": episodes, "cache": args.cache,
            "interval_s": args.interval_s, "threads": args.threads,
            "eval_every": args.eval_every, "eval_episodes": args.eval_episodes,
        }  # fmt: skip
        runs: list[tuple[str, dict[str, Any]]] = []
        if args.cache == "memmap":  # build (or verify) the frame cache before measuring
            runs.append(("cache build", {**base, "loader": "gather", "steps": 0}))
        runs += [
            (loader, {**base, "loader": loader, "steps": args.steps}) for loader in args.loaders
        ]
        for label, spec in runs:
            with tempfile.TemporaryDirectory(dir=args.root) as scratch:
                spec = {**spec, "out": f"{scratch}/run", "result": f"{scratch}/result.json"}
                result = measure(spec)
            cache_file = path / "cache" / "observation.image.uint8.npy"
            result["cache_bytes"] = cache_file.stat().st_size if cache_file.is_file() else 0
            result["label"], result["size"] = label, episodes
            if "failed" in result:
                print(
                    f"  {episodes} ep [{label}]: FAILED (exit {result['failed']}), peak RSS "
                    f"{result['ru_maxrss'] / MB:.0f} MB before it ended",
                    flush=True,
                )
                continue
            rows.append(result)
            results.write_text(json.dumps(rows))  # the tables so far: --report-only
            print(
                f"  {episodes} ep [{label}]: {result['wall_s']:.0f} s, peak RSS "
                f"{result['ru_maxrss'] / MB:.0f} MB",
                flush=True,
            )
    report(rows, args)


def report(rows: list[dict[str, Any]], args: Args) -> None:
    """The tables: per run, per phase, per structure, and the growth between sizes."""
    print()
    print(
        f"{'episodes':>8} {'run':<12} {'frames':>9} {'cache MB':>9} {'maxrss MB':>9} "
        f"{'VmHWM MB':>9} {'Anon pk MB':>10} {'File pk MB':>10} {'wall s':>7} {'train s':>7}"
    )
    for row in rows:
        peak = row["peak"]
        train = "-" if row["train_s"] is None else f"{row['train_s']:.1f}"
        print(
            f"{row['size']:>8} {row['label']:<12} {row['frames']:>9} "
            f"{row['cache_bytes'] / MB:>9.0f} {row['ru_maxrss'] / MB:>9.0f} "
            f"{peak['VmHWM'] / MB:>9.0f} {peak['RssAnon'] / MB:>10.0f} "
            f"{peak['RssFile'] / MB:>10.0f} {row['wall_s']:>7.1f} {train:>7}"
        )
    print("\nper phase (peak RssAnon / peak RssFile, MB; seconds):")
    for row in rows:
        cells = [
            f"{p['phase']} {p['peak']['RssAnon'] / MB:.0f}/{p['peak']['RssFile'] / MB:.0f} "
            f"({p['seconds']:.1f}s)"
            for p in row["phases"]
        ]
        print(f"  {row['size']} ep [{row['label']}]: " + "; ".join(cells))
    print("\nstructures that scale with the frame count (MB, bytes/frame):")
    for row in rows:
        if row["label"] == "cache build":
            continue
        print(f"  {row['size']} ep [{row['label']}], {row['frames']} frames:")
        for name, size in row["structures"].items():
            print(f"    {name:<72} {size / MB:>9.1f} {size / row['frames']:>9.1f}")
    print("\ngrowth from the smallest to the largest dataset (MB):")
    for label in args.loaders:
        mine = sorted((r for r in rows if r["label"] == label), key=lambda r: r["size"])
        if len(mine) < 2:
            continue
        small, large = mine[0], mine[-1]

        def delta(key: str, small: dict = small, large: dict = large) -> float:
            return (large["peak"][key] - small["peak"][key]) / MB

        cache = (large["cache_bytes"] - small["cache_bytes"]) / MB
        hwm = (large["ru_maxrss"] - small["ru_maxrss"]) / MB
        print(
            f"  [{label}] {small['size']} -> {large['size']} episodes: frame cache +{cache:.0f}, "
            f"peak RSS +{hwm:.0f}, peak RssFile (page-cache share) {delta('RssFile'):+.0f}, "
            f"peak RssAnon {delta('RssAnon'):+.0f} ({delta('RssAnon') / max(cache, 1e-9):.1%} "
            "of the cache growth)"
        )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == CHILD_FLAG:
        child(json.loads(sys.argv[2]))
    else:
        main(tyro.cli(Args))
