"""BC from scratch vs a CLIP-initialised VLA, at several demonstration counts (issue 13, part 3).

    python benchmarks/clip_vla.py --clip runs/clip-a/model --episodes 500 2000 6000 \
        --steps 3000 --root runs/clip-vla --jobs 2

For every demonstration count it runs `nanovla train` twice on the same cached dataset, with the
same seed and step budget:

- scratch: the default policy (vla_cnn widths (32,) + word LSTM, from random weights);
- two_stream (only when asked for): the default policy with `--policy.vision two_stream_cnn`,
  the CLIP lab's tower architecture trained from random weights (is it the architecture or the
  pre-training?);
- clip: `--policy.vision clip:PATH --policy.text clip:PATH` (the CLIP's image tower,
  two_stream_cnn by the lab's default, vla_cnn for a CLIP trained with `--vision vla_cnn`, and
  its text Transformer with its tokenizer, both fine-tuned; add `--frozen` for frozen encoders),

then prints one row per (episodes, arm): success with its 95% Wilson interval on seen
instructions, held-out paraphrases, Korean and held-out attribute combinations (the `combos`
split: targets drawn from the combos no training demonstration had), and the wall time — for
the clip arm including the CLIP pre-training (`train_seconds` + `data_seconds` from the lab's
metrics.json beside PATH). Runs whose eval.json exists are not run again, so the script can be
stopped and restarted; `--table-only` prints what is there. Wall times on a shared machine are
contended and say so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SPLITS = ("seen", "heldout", "ko", "combos")


def run_dir(root: Path, episodes: int, arm: str) -> Path:
    return root / f"{arm}-{episodes}ep"


def command(args: argparse.Namespace, episodes: int, arm: str) -> list[str]:
    cmd = [
        sys.executable, "-m", "nanovla.cli", "train", "--out", str(run_dir(args.root, episodes, arm)),
        "--episodes", str(episodes), "--tasks", *args.tasks, "--train.steps", str(args.steps),
        "--train.num-threads", "1",
        "--eval.splits", *SPLITS, "--eval.episodes", str(args.eval_episodes), "--eval.gifs", "0",
        "--no-progress", "--seed", str(args.seed),
    ]  # fmt: skip
    if arm == "two_stream":
        cmd += ["--policy.vision", "two_stream_cnn"]
    if arm == "clip":
        cmd += ["--policy.vision", f"clip:{args.clip}", "--policy.text", f"clip:{args.clip}"]
        if args.frozen:
            cmd += ["--policy.clip-frozen"]
    return cmd


def launch(args: argparse.Namespace, episodes: int, arm: str) -> None:
    out = run_dir(args.root, episodes, arm)
    if (out / "eval.json").is_file():
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.parent / f"{out.name}.log"
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.call(["nice", "-n", "5", *command(args, episodes, arm)], stdout=handle,
                               stderr=subprocess.STDOUT, env=env)  # fmt: skip
    wall = time.perf_counter() - start
    (out.parent / f"{out.name}.wall.json").write_text(json.dumps({"wall_s": wall, "rc": code}))
    print(f"{out.name}: exit {code} after {wall:.0f} s (log {log})", flush=True)


def clip_seconds(clip: Path) -> float | None:
    metrics = clip.parent / "metrics.json"
    if not metrics.is_file():
        return None
    data = json.loads(metrics.read_text())
    return float(data.get("train_seconds", 0.0)) + float(data.get("data_seconds", 0.0))


def cell(split: dict | None) -> str:
    if split is None:
        return "—"
    low, high = split["ci95"]
    return f"{split['success']:.2f} [{low:.2f}, {high:.2f}]"


def table(args: argparse.Namespace) -> str:
    pretrain = clip_seconds(args.clip)
    lines = [
        "| demos | arm | " + " | ".join(SPLITS) + " | wall s (contended) |",
        "|---|---|" + "---|" * len(SPLITS) + "---|",
    ]
    for episodes in args.episodes:
        for arm in args.arms:
            out = run_dir(args.root, episodes, arm)
            path = out / "eval.json"
            if not path.is_file():
                lines.append(
                    f"| {episodes} | {arm} | " + " | ".join("missing" for _ in SPLITS) + " | — |"
                )
                continue
            data = json.loads(path.read_text())
            wall = data["timing_s"]["total"]  # the run's own clock: collect + train + eval
            total = f"{wall:.0f}"
            if arm == "clip" and pretrain is not None:
                total = f"{wall + pretrain:.0f} ({wall:.0f} + CLIP {pretrain:.0f})"
            splits = " | ".join(cell(data["splits"].get(s)) for s in SPLITS)
            lines.append(f"| {episodes} | {arm} | {splits} | {total} |")
    episodes = {json.loads((run_dir(args.root, e, a) / 'eval.json').read_text())['splits']['seen']['episodes']
                for e in args.episodes for a in args.arms if (run_dir(args.root, e, a) / 'eval.json').is_file()}  # fmt: skip
    lines.append(f"\nsuccess [95% Wilson interval], {sorted(episodes)} episodes per split "
                 f"(all families together); {args.steps} training steps per run; wall = the "
                 "run's timing_s.total (collection is ~0 where the dataset was cached)")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clip", type=Path, required=True, help="CLIP model directory")
    parser.add_argument("--episodes", type=int, nargs="+", default=[500, 2000, 6000])
    parser.add_argument(
        "--arms", nargs="+", default=["scratch", "clip"], choices=["scratch", "two_stream", "clip"]
    )
    parser.add_argument(
        "--steps", type=int, default=3000, help="training steps per run (both arms)"
    )
    parser.add_argument("--tasks", nargs="+", default=["reach", "push", "pick_place"])
    parser.add_argument("--eval-episodes", type=int, default=50, help="per family per split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=Path("runs/clip-vla"))
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time")
    parser.add_argument("--frozen", action="store_true", help="frozen CLIP encoders")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    if not args.table_only:
        # Every arm of one demonstration count shares one dataset, which the first run records:
        # with --jobs > 1 record the datasets first (--arms scratch), or two runs race for it.
        jobs = [(e, a) for e in args.episodes for a in args.arms]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda job: launch(args, *job), jobs))
    print(table(args))


if __name__ == "__main__":
    main()
