"""Env steps per second of PPO on the world with image observations, batched over num_envs.

For each num_envs (default 1, 64, 256): one `WorldVecEnv` (`nanovla/Reach-v0`, 64 x 64 frames +
proprioception), the CNN actor-critic of `nanovla.rl.policy`, and `--updates` PPO updates of
`--num-steps` steps per env (4 epochs, minibatches of 256). Printed: the rollout's env steps/s
(policy inference + env step + rendering), the update's samples/s, and the whole loop's env
steps/s (rollout + update), after one warm-up update. One torch thread.

    OMP_NUM_THREADS=1 python benchmarks/rl_throughput.py --num-envs 1 64 256
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from nanovla.rl import ppo
from nanovla.rl import rollout as ro
from nanovla.rl.envs import make_vec_env
from nanovla.rl.normalize import RewardScaler
from nanovla.rl.policy import ActorCritic, config_for


def measure(num_envs: int, num_steps: int, updates: int, image_size: int, out: Path) -> dict:
    cmd = ppo.PPOCommand(env="nanovla/Reach-v0", out=out, world_obs="image", image_size=image_size,
                         num_envs=num_envs, num_steps=num_steps, total_steps=num_envs * num_steps,
                         minibatch_size=256, update_epochs=4)  # fmt: skip
    ppo.resolve(cmd)
    env = make_vec_env(cmd.env, num_envs, "image", "shaped", image_size)
    agent = ActorCritic(config_for(env, (64, 64), "tanh", "clip", "param", 0.0, True))
    optimizer = torch.optim.Adam(agent.parameters(), lr=3e-4, eps=1e-5, fused=True)
    state = ro.RolloutState.fresh(agent, env, 0, RewardScaler(num_envs, cmd.gamma))
    rollout_s = update_s = 0.0
    for i in range(updates + 1):  # the first is a warm-up
        began = time.perf_counter()
        batch = ppo.collect(agent, env, state, cmd)
        middle = time.perf_counter()
        ppo.update(agent, optimizer, batch, cmd, cmd.clip_coef)
        if i:
            rollout_s += middle - began
            update_s += time.perf_counter() - middle
    steps = updates * num_envs * num_steps
    return {"rollout": steps / rollout_s, "update": steps / update_s,
            "loop": steps / (rollout_s + update_s)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--num-steps", type=int, default=32)
    parser.add_argument("--updates", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"nanovla/Reach-v0, {args.image_size}px images, {args.num_steps} steps per env per "
          f"update, {args.updates} timed updates, torch {torch.__version__}, 1 thread")  # fmt: skip
    print(f"{'num_envs':>8} {'rollout_sps':>11} {'update_sps':>10} {'loop_sps':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.num_envs:
            r = measure(n, args.num_steps, args.updates, args.image_size, Path(tmp))
            print(
                f"{n:>8} {r['rollout']:>11.0f} {r['update']:>10.0f} {r['loop']:>8.0f}", flush=True
            )


if __name__ == "__main__":
    main()
