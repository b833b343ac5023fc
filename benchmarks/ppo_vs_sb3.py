"""Our PPO (`nanovla.rl.ppo`) vs Stable-Baselines3's PPO at equal hyper-parameters, same seeds,
one torch thread each, in one process: CartPole-v1 (threshold 475) and Pendulum-v1 (-200).

Hyper-parameters are `nanovla.rl.ppo.DEFAULTS` (rl-zoo's tuned ones; Pendulum without gSDE on
both sides), given to SB3 as `n_steps`, `batch_size`, `n_epochs`, `gamma`, `gae_lambda`,
`ent_coef`, `vf_coef`, `max_grad_norm`, `learning_rate` / `clip_range` (linear schedules where
ours anneals), MlpPolicy with its defaults (separate 64-64 tanh actor and critic, orthogonal
init, log-std 0: the same networks). SB3 steps `DummyVecEnv` with `Monitor`; ours its own loop.

Printed per env and seed: env steps, wall time of training (ours: `train_s` of eval.json, from
the start of the run, checkpoints included, to before the final evaluation; SB3: `learn`), SPS (env steps / training wall
time), the first env step where the mean of the last 10 training episodes reached the threshold
(- if never), and the deterministic policy's mean return on the same 10 seeded evaluation
episodes (`nanovla.rl.run.evaluate`). Then the ratios ours / SB3 of wall time and SPS.

    pip install -c constraints.txt 'stable-baselines3==2.9.*'   # constraints.txt: torch==<yours>
    OMP_NUM_THREADS=1 python benchmarks/ppo_vs_sb3.py --seeds 0 1 2

SB3 is imported only here (never by the package or the tests); without it the script says so
and runs ours alone.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nanovla.rl import ppo
from nanovla.rl.run import RunOptions, evaluate
from nanovla.train.logger import read_metrics

THRESHOLDS = {"CartPole-v1": 475.0, "Pendulum-v1": -200.0}
WINDOW = 10


def first_crossing(points: list[tuple[int, float]], threshold: float) -> int | None:
    """First env step where the mean of the last WINDOW episode returns reaches `threshold`."""
    returns: list[float] = []
    for step, value in points:
        returns.append(value)
        if len(returns) >= WINDOW and np.mean(returns[-WINDOW:]) >= threshold:
            return step
    return None


def run_ours(env_id: str, seed: int, out: Path) -> dict:
    cmd = ppo.PPOCommand(env=env_id, out=out, seed=seed, progress=False, tensorboard=False)
    result = ppo.train(cmd)
    wall = result["train_s"]  # from the start of the run to before the final evaluation
    records = read_metrics(out / "logs/metrics.jsonl")
    # per-update means: weight each by its episode count, as single episodes
    points = [(r["step"], r["charts/episodic_return"]) for r in records
              for _ in range(int(r.get("charts/episodes", 0)))]  # fmt: skip
    return {"steps": result["env_steps"], "wall": wall, "eval": result["mean_return"],
            "cross": first_crossing(points, THRESHOLDS[env_id])}  # fmt: skip


class SB3Actor:
    """SB3's model behind `act(obs, deterministic)`, for `nanovla.rl.run.evaluate`."""

    def __init__(self, model) -> None:
        self.model = model

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.model.predict(obs, deterministic=deterministic)[0]


def run_sb3(env_id: str, seed: int) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    hp = {**ppo.FALLBACK, **ppo.DEFAULTS[env_id]}
    lr, clip = hp["learning_rate"], 0.2
    schedule = lambda start: lambda left: left * start  # noqa: E731  (SB3: left goes 1 -> 0)
    env = make_vec_env(env_id, n_envs=hp["num_envs"], seed=seed)
    model = PPO(
        "MlpPolicy", env, n_steps=hp["num_steps"], batch_size=hp["minibatch_size"],
        n_epochs=hp["update_epochs"], gamma=hp["gamma"], gae_lambda=hp["gae_lambda"],
        ent_coef=hp["ent_coef"], vf_coef=0.5, max_grad_norm=0.5,
        learning_rate=schedule(lr) if hp["anneal_lr"] else lr,
        clip_range=schedule(clip) if hp["anneal_clip"] else clip,
        seed=seed, device="cpu", verbose=0,
    )  # fmt: skip
    points: list[tuple[int, float]] = []

    class Episodes(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    points.append((self.num_timesteps, float(info["episode"]["r"])))
            return True

    began = time.perf_counter()
    model.learn(total_timesteps=hp["total_steps"], callback=Episodes())
    wall = time.perf_counter() - began
    result = evaluate(SB3Actor(model), RunOptions(env=env_id), 10)
    return {"steps": model.num_timesteps, "wall": wall, "eval": result["mean_return"],
            "cross": first_crossing(points, THRESHOLDS[env_id])}  # fmt: skip


def row(name: str, env_id: str, seed: int, r: dict) -> str:
    cross = "-" if r["cross"] is None else str(r["cross"])
    return (f"{env_id:<12} {seed:>4} {name:<5} {r['steps']:>7} {r['wall']:>8.1f} "
            f"{r['steps'] / r['wall']:>7.0f} {cross:>9} {r['eval']:>9.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--envs", nargs="+", default=list(THRESHOLDS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # import torch._dynamo before timing
    try:
        import stable_baselines3  # noqa: F401

        have_sb3 = True
    except ImportError:
        have_sb3 = False
        print("stable-baselines3 is not installed: running ours only (pip install "
              "'stable-baselines3==2.9.*' with a torch constraint)")  # fmt: skip
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread")
    print(f"{'env':<12} {'seed':>4} {'lib':<5} {'steps':>7} {'wall_s':>8} {'SPS':>7} "
          f"{'to_thresh':>9} {'eval_ret':>9}")  # fmt: skip
    summary: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for env_id in args.envs:
            for seed in args.seeds:
                ours = run_ours(env_id, seed, Path(tmp) / f"{env_id}-{seed}")
                print(row("ours", env_id, seed, ours), flush=True)
                summary.setdefault(env_id, {}).setdefault("ours", []).append(ours)
                if have_sb3:
                    sb3 = run_sb3(env_id, seed)
                    print(row("sb3", env_id, seed, sb3), flush=True)
                    summary[env_id].setdefault("sb3", []).append(sb3)
    for env_id, libs in summary.items():
        if "sb3" not in libs:
            continue
        wall = [o["wall"] / s["wall"] for o, s in zip(libs["ours"], libs["sb3"])]
        sps = [
            (o["steps"] / o["wall"]) / (s["steps"] / s["wall"])
            for o, s in zip(libs["ours"], libs["sb3"])
        ]
        evals = {k: np.mean([r["eval"] for r in v]) for k, v in libs.items()}
        print(f"{env_id}: wall ours/sb3 {np.mean(wall):.2f}x, SPS ours/sb3 {np.mean(sps):.2f}x, "
              f"mean eval return ours {evals['ours']:.1f} / sb3 {evals['sb3']:.1f} "
              f"({len(wall)} seeds)")  # fmt: skip


if __name__ == "__main__":
    main()
