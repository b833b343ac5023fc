"""Our PPO (`nanovla.rl.ppo`) vs Stable-Baselines3's PPO with rl-zoo's hyper-parameters, same
seeds, one torch thread, in one process: CartPole-v1 (threshold 475) and Pendulum-v1 (-200).

What is measured, the same way for both libraries: a clock starts right before the envs are
built; every training episode's end is recorded as (env steps so far, seconds on that clock,
return) (ours: a wrapper around our `VecEnv`, `EpisodeClock`; SB3: a callback reading its
`Monitor` infos after each env step). "To threshold" is the first episode end where the mean of
the last 10 training episodes' returns reaches the threshold: its env steps and seconds (- if
never). Whole-run figures too: env steps, seconds from the clock's start to the end of training
(ours: to before the final evaluation; SB3: to the end of `learn`), SPS, and the deterministic
policy's mean return on the same 10 seeded evaluation episodes (`nanovla.rl.run.evaluate`).
Ours runs as `nanovla rl ppo` does, checkpoints every 10 updates included; SB3 writes none.

Configurations:

- `sb3`: SB3's PPO with `RL_ZOO` (rl-zoo's `ppo.yml`; Pendulum-v1 there uses gSDE, here a plain
  Gaussian on both sides), MlpPolicy defaults (separate 64-64 tanh actor and critic, orthogonal
  init, log-std 0: the same networks as ours), `DummyVecEnv` + `Monitor`.
- `ours=`: ours with the same `RL_ZOO` hyper-parameters (equal hyper-parameters).
- `ours`: ours with its own defaults (`nanovla.rl.ppo.DEFAULTS`), run only where they differ
  from `RL_ZOO` (the table says which options differ).

Then per env, over the seeds: the mean of the per-seed ratios ours / SB3 of wall time and of env
steps to the threshold (seeds where either never reached it are left out and counted), and the
same for the whole run.

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
from typing import Any

import numpy as np
import torch

from nanovla.rl import ppo
from nanovla.rl.envs import make_vec_env
from nanovla.rl.run import RunOptions, evaluate

THRESHOLDS = {"CartPole-v1": 475.0, "Pendulum-v1": -200.0}
WINDOW = 10
RL_ZOO = ppo.RL_ZOO  # rl-zoo's ppo.yml in our option names: what SB3 and `ours=` run


def crossing(episodes: list[tuple[int, float, float]], threshold: float) -> tuple | None:
    """(env steps, seconds) of the first episode end where the mean of the last WINDOW
    returns reaches `threshold`; None if never."""
    returns: list[float] = []
    for step, seconds, value in episodes:
        returns.append(value)
        if len(returns) >= WINDOW and np.mean(returns[-WINDOW:]) >= threshold:
            return step, seconds
    return None


class EpisodeClock:
    """Our `VecEnv` with each episode's end recorded as (env steps, seconds since `t0`, return)
    into `episodes` (a list outside the object: the checkpoints' env state stays the env's)."""

    def __init__(self, env: Any, t0: float, episodes: list) -> None:
        self.env, self.num_envs = env, env.num_envs
        self.observation_space, self.action_space = env.observation_space, env.action_space
        self._record = lambda: (t0, episodes)  # a closure: not walked by capture_state

    def reset(self, seed: int) -> Any:
        self._returns, self._steps = np.zeros(self.num_envs), 0
        return self.env.reset(seed=seed)

    def step(self, actions: np.ndarray) -> tuple:
        out = self.env.step(actions)
        self._steps += self.num_envs
        self._returns += out[1]
        done = out[2] | out[3]
        if done.any():
            t0, episodes = self._record()
            now = time.perf_counter() - t0
            for i in np.flatnonzero(done):
                episodes.append((self._steps, now, float(self._returns[i])))
            self._returns[done] = 0.0
        return out


def run_ours(env_id: str, seed: int, out: Path, options: dict[str, Any]) -> dict:
    """Ours with `options` (empty: our defaults)."""
    cmd = ppo.PPOCommand(env=env_id, out=out, seed=seed, progress=False, tensorboard=False,
                         **options)  # fmt: skip
    ppo.resolve(cmd)
    episodes: list[tuple[int, float, float]] = []
    t0 = time.perf_counter()
    env = EpisodeClock(make_vec_env(env_id, cmd.num_envs), t0, episodes)
    result = ppo.train(cmd, env)
    wall = time.perf_counter() - t0 - (result["wall_s"] - result["train_s"])  # less the eval
    return {"steps": result["env_steps"], "wall": wall, "eval": result["mean_return"],
            "cross": crossing(episodes, THRESHOLDS[env_id])}  # fmt: skip


class SB3Actor:
    """SB3's model behind `act(obs, deterministic)`, for `nanovla.rl.run.evaluate`."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.model.predict(obs, deterministic=deterministic)[0]


def run_sb3(env_id: str, seed: int) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env

    hp = RL_ZOO[env_id]
    lr, clip = hp["learning_rate"], 0.2
    schedule = lambda start: lambda left: left * start  # noqa: E731  (SB3: left goes 1 -> 0)
    episodes: list[tuple[int, float, float]] = []

    class Episodes(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    episodes.append((self.num_timesteps, time.perf_counter() - t0,
                                     float(info["episode"]["r"])))  # fmt: skip
            return True

    t0 = time.perf_counter()
    env = sb3_make_vec_env(env_id, n_envs=hp["num_envs"], seed=seed)
    model = PPO(
        "MlpPolicy", env, n_steps=hp["num_steps"], batch_size=hp["minibatch_size"],
        n_epochs=hp["update_epochs"], gamma=hp["gamma"], gae_lambda=hp["gae_lambda"],
        ent_coef=hp["ent_coef"], vf_coef=0.5, max_grad_norm=0.5,
        learning_rate=schedule(lr) if hp["anneal_lr"] else lr,
        clip_range=schedule(clip) if hp["anneal_clip"] else clip,
        seed=seed, device="cpu", verbose=0,
    )  # fmt: skip
    model.learn(total_timesteps=hp["total_steps"], callback=Episodes())
    wall = time.perf_counter() - t0
    result = evaluate(SB3Actor(model), RunOptions(env=env_id), 10)
    return {"steps": model.num_timesteps, "wall": wall, "eval": result["mean_return"],
            "cross": crossing(episodes, THRESHOLDS[env_id])}  # fmt: skip


def our_defaults_differ(env_id: str) -> dict[str, tuple[Any, Any]]:
    """{option: (rl-zoo's, ours)} where `ppo.DEFAULTS` differs from `RL_ZOO`."""
    ours = {**ppo.FALLBACK, **ppo.DEFAULTS.get(env_id, {})}
    return {k: (v, ours[k]) for k, v in RL_ZOO[env_id].items() if ours[k] != v}


def row(name: str, env_id: str, seed: int, r: dict) -> str:
    cross = ("-", "-") if r["cross"] is None else (str(r["cross"][0]), f"{r['cross'][1]:.1f}")
    return (f"{env_id:<12} {seed:>4} {name:<6} {cross[0]:>9} {cross[1]:>9} {r['steps']:>7} "
            f"{r['wall']:>8.1f} {r['steps'] / r['wall']:>7.0f} {r['eval']:>9.1f}")  # fmt: skip


def ratios(ours: list[dict], sb3: list[dict]) -> str:
    """The mean over seeds of ours / SB3: to threshold (wall, steps), whole run (wall)."""
    both = [(o, s) for o, s in zip(ours, sb3, strict=True) if o["cross"] and s["cross"]]
    parts = []
    if both:
        wall = np.mean([o["cross"][1] / s["cross"][1] for o, s in both])
        steps = np.mean([o["cross"][0] / s["cross"][0] for o, s in both])
        parts.append(f"to threshold: wall {wall:.2f}x, env steps {steps:.2f}x ({len(both)} seeds"
                     + (f"; {len(ours) - len(both)} left out: never reached" if len(both) < len(ours) else "")
                     + ")")  # fmt: skip
    else:
        parts.append("to threshold: - (no seed where both reached it)")
    whole = np.mean([o["wall"] / s["wall"] for o, s in zip(ours, sb3, strict=True)])
    sps = np.mean(
        [
            (o["steps"] / o["wall"]) / (s["steps"] / s["wall"])
            for o, s in zip(ours, sb3, strict=True)
        ]
    )
    evals = (np.mean([r["eval"] for r in ours]), np.mean([r["eval"] for r in sb3]))
    parts.append(f"whole run: wall {whole:.2f}x, SPS {sps:.2f}x; eval return {evals[0]:.1f} vs "
                 f"{evals[1]:.1f}")  # fmt: skip
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--envs", nargs="+", default=list(THRESHOLDS))
    parser.add_argument("--no-sb3", action="store_true", help="run ours only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # import torch._dynamo before timing
    try:
        if args.no_sb3:
            raise ImportError
        import stable_baselines3

        have_sb3 = True
        versions = f", stable-baselines3 {stable_baselines3.__version__}"
    except ImportError:
        have_sb3, versions = False, ""
        if not args.no_sb3:
            print("stable-baselines3 is not installed: running ours only (pip install "
                  "'stable-baselines3==2.9.*' with a torch constraint)")  # fmt: skip
    print(f"torch {torch.__version__}{versions}, {torch.get_num_threads()} thread")
    for env_id in args.envs:
        differ = our_defaults_differ(env_id)
        said = ", ".join(f"{k} {z} -> {o}" for k, (z, o) in differ.items()) or "none"
        print(f"{env_id}: our defaults differ from rl-zoo's in: {said}")
    print("ours= : ours with rl-zoo's hyper-parameters; ours : ours with its own defaults")
    print(f"{'env':<12} {'seed':>4} {'lib':<6} {'thr_steps':>9} {'thr_s':>9} {'steps':>7} "
          f"{'wall_s':>8} {'SPS':>7} {'eval_ret':>9}")  # fmt: skip
    summary: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for env_id in args.envs:
            configs = {"ours=": RL_ZOO[env_id]}
            if our_defaults_differ(env_id):
                configs["ours"] = {}
            for seed in args.seeds:
                for name, options in configs.items():
                    r = run_ours(env_id, seed, Path(tmp) / f"{env_id}-{seed}-{name}", options)
                    print(row(name, env_id, seed, r), flush=True)
                    summary.setdefault(env_id, {}).setdefault(name, []).append(r)
                if have_sb3:
                    r = run_sb3(env_id, seed)
                    print(row("sb3", env_id, seed, r), flush=True)
                    summary[env_id].setdefault("sb3", []).append(r)
    for env_id, libs in summary.items():
        if "sb3" not in libs:
            continue
        for name in ("ours=", "ours"):
            if name in libs:
                print(f"{env_id} {name:<5} / sb3: {ratios(libs[name], libs['sb3'])}")


if __name__ == "__main__":
    main()
