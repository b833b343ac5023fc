"""REINFORCE on CartPole-v1 with and without the learned value baseline, same seeds, 1 thread.

Printed per seed and variant: env steps, wall time, the first env step where the mean of the
last 10 training episodes reached 475 (- if never), the mean over updates of `charts/weight_std`
(the standard deviation of the weights G_t - b_t multiplying grad log pi: what the baseline cuts)
and the deterministic policy's mean return on 10 seeded episodes. The learning curves of seed 0
are drawn into one PNG (`--png`, default rl_reinforce_baseline.png).

    OMP_NUM_THREADS=1 python benchmarks/rl_reinforce_baseline.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from nanovla.rl import reinforce
from nanovla.train.logger import read_metrics

THRESHOLD = 475.0


def one(seed: int, baseline: bool, out: Path) -> tuple[dict, list[dict]]:
    cmd = reinforce.ReinforceCommand(env="CartPole-v1", out=out, seed=seed, baseline=baseline,
                                     progress=False, tensorboard=False)  # fmt: skip
    result = reinforce.train(cmd)
    return result, read_metrics(out / "logs/metrics.jsonl")


def crossing(records: list[dict]) -> int | None:
    returns: list[float] = []
    for r in records:
        if "charts/episodic_return" in r:
            returns.append(r["charts/episodic_return"])  # each update: the mean of 16 episodes
            if np.mean(returns[-1:]) >= THRESHOLD:
                return int(r["step"])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--png", type=Path, default=Path("rl_reinforce_baseline.png"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    curves = {}
    print(f"{'seed':>4} {'baseline':<8} {'steps':>7} {'wall_s':>7} {'to_475':>7} "
          f"{'weight_std':>10} {'eval_ret':>8}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for baseline in (True, False):
                result, records = one(seed, baseline, Path(tmp) / f"{seed}-{baseline}")
                std = np.mean([r["charts/weight_std"] for r in records if "charts/weight_std" in r])
                cross = crossing(records)
                print(f"{seed:>4} {baseline!s:<8} {result['env_steps']:>7} {result['wall_s']:>7.1f} "
                      f"{'-' if cross is None else cross:>7} {std:>10.2f} "
                      f"{result['mean_return']:>8.1f}", flush=True)  # fmt: skip
                if seed == args.seeds[0]:
                    curves[baseline] = [(r["step"], r["charts/episodic_return"]) for r in records
                                        if "charts/episodic_return" in r]  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for baseline, points in curves.items():
        steps, returns = np.array(points).T
        ax.plot(steps, returns, label="learned baseline" if baseline else "no baseline")
    ax.set_xlabel("env steps")
    ax.set_ylabel("episodic return (16 episodes per update)")
    ax.set_title(f"REINFORCE on CartPole-v1, seed {args.seeds[0]}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.png, dpi=100)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
