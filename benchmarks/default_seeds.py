"""The default `nanovla train` for several seeds: the success table, wall time and peak memory.

Runs `nanovla train --seed S --out RUNS/seed-S` (plus any extra options) for each seed, one after
another, each in a working directory of its own with an empty demonstration cache (`data/` there
starts empty, so the wall time includes recording the demonstrations), and prints one row per seed
with the mean success of every evaluation split (and each family's seen success), the wall time
and the peak memory, then the range over seeds.

Memory is sampled from `/proc/<pid>/status` every 0.2 s: `VmHWM` (peak resident set, what `ps`
and `/usr/bin/time` call max RSS: anonymous memory plus file pages mapped in, e.g. a memmapped
frame cache) and the peak of `RssAnon` (anonymous memory alone: what the process cannot give back
to the page cache).

Run: `.venv/bin/python benchmarks/default_seeds.py` (the default: seeds 0 1 2, 2 threads), or e.g.
`benchmarks/default_seeds.py --seeds 0 "--extra=--train.steps 2000 --train.amp bf16"` for a
shorter look (one string, split like a shell line: tyro reads a bare `--extra --x` as its own
flag).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import tyro


@dataclass
class Args:
    """Default `nanovla train` runs over seeds."""

    seeds: tuple[int, ...] = (0, 1, 2)
    """training seeds (each also seeds its demonstrations)"""
    root: Path = Path("runs/default-seeds")
    """where the runs go: ROOT/seed-S/ is each run's working directory (its data/ and run/)"""
    threads: int = 2
    """torch threads of each run (--train.num-threads)"""
    extra: tuple[str, ...] = ()
    """further `nanovla train` options, each string split like a shell line"""
    table_only: bool = False
    """print the table of runs already in ROOT (each seed's eval.json and bench.json), e.g.
    seeds started as separate processes side by side, without training"""
    timeout: float = 3600.0
    """seconds before a run is killed"""
    splits: tuple[str, ...] = field(
        default=("seen", "heldout", "user", "ko", "ko_heldout", "combos")
    )
    """evaluation splits shown (each run's eval.json holds what it evaluated)"""


def _status(pid: int) -> dict[str, int]:
    """kB figures of /proc/<pid>/status (VmHWM, RssAnon, ...); empty once the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    found = {}
    for line in lines:
        name, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            found[name] = int(value.split()[0])
    return found


def run_seed(args: Args, seed: int) -> dict:
    """One `nanovla train` run; returns its eval.json with wall time and memory added."""
    workdir = args.root / f"seed-{seed}"
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "nanovla.cli", "train", "--seed", str(seed), "--out", "run",
        "--train.num-threads", str(args.threads), "--no-progress",
        *(word for option in args.extra for word in shlex.split(option)),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    log = (workdir / "train.log").open("w")
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env)
    hwm = anon = 0
    while process.poll() is None:
        status = _status(process.pid)
        hwm, anon = max(hwm, status.get("VmHWM", 0)), max(anon, status.get("RssAnon", 0))
        if time.perf_counter() - started > args.timeout:
            process.kill()
        time.sleep(0.2)
    wall = time.perf_counter() - started
    log.close()
    if process.returncode != 0:
        tail = (workdir / "train.log").read_text()[-2000:]
        raise SystemExit(f"seed {seed}: nanovla train exited {process.returncode}\n{tail}")
    result = json.loads((workdir / "run" / "eval.json").read_text())
    result["bench"] = {"wall_s": wall, "peak_rss_gb": hwm / 2**20, "peak_anon_gb": anon / 2**20}
    (workdir / "bench.json").write_text(json.dumps(result["bench"]) + "\n")
    return result


def read_seed(args: Args, seed: int) -> dict:
    """A finished run's eval.json with the wall time and memory its run wrote (bench.json)."""
    workdir = args.root / f"seed-{seed}"
    paths = workdir / "run" / "eval.json", workdir / "bench.json"
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"--table-only: {path} not found (run seed {seed} first)")
    result = json.loads(paths[0].read_text())
    result["bench"] = json.loads(paths[1].read_text())
    return result


def print_table(args: Args, results: dict[int, dict]) -> None:
    """One row per seed, then min-max over seeds."""
    first = next(iter(results.values()))
    families = first["families"]
    splits = [s for s in args.splits if s in first["splits"]]
    names = [f"seen:{f}" for f in families] + splits + ["wall_s", "rss_GB", "anon_GB"]
    width = {name: max(11, len(name) + 2) for name in names}  # a range "0.94-0.97" fits
    print(f"{'seed':<6}" + "".join(f"{name:>{width[name]}}" for name in names))
    rows = {}
    for seed, result in results.items():
        seen = result["splits"]["seen"]["per_task"]
        bench = result["bench"]
        values = [seen[f] for f in families] + [result["splits"][s]["success"] for s in splits]
        values += [bench["wall_s"], bench["peak_rss_gb"], bench["peak_anon_gb"]]
        rows[seed] = values
        cells = "".join(
            f"{v:>{width[n]}.{0 if n == 'wall_s' else 2}f}"
            for n, v in zip(names, values, strict=True)
        )
        print(f"{seed:<6}" + cells)
    columns = list(zip(*rows.values(), strict=True))
    digits = {name: 0 if name == "wall_s" else 2 for name in names}
    span = "".join(
        f"{f'{min(c):.{digits[n]}f}-{max(c):.{digits[n]}f}':>{width[n]}}"
        for n, c in zip(names, columns, strict=True)
    )
    print(f"{'range':<6}" + span)
    episodes = first["episodes_per_task"]
    print(f"{episodes} episodes per family per split; runs in {args.root}")


def main(args: Args) -> None:
    run = read_seed if args.table_only else run_seed
    results = {seed: run(args, seed) for seed in args.seeds}
    print_table(args, results)


if __name__ == "__main__":
    main(tyro.cli(Args))
