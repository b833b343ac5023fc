"""What image demonstrations cost in Meta-World: offscreen frames/s vs state-only steps/s.

    MUJOCO_GL=egl python benchmarks/metaworld_render.py --size 64 --steps 200

Runs the scripted expert of one task for `--steps` steps three ways in one process: stepping
only (what `nanovla metaworld collect` does by default), stepping plus one offscreen render per
step (what `--image-size N` adds), and rendering alone; prints each rate and the ratio, and
what recording the default MT10 demonstrations would take with frames at that rate. One torch-
free process, one thread; figures are wall-clock on the machine at hand (say if it is shared).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="push-v3", help="Meta-World task to run")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels")
    parser.add_argument("--steps", type=int, default=200, help="steps per measurement")
    parser.add_argument("--frames", type=int, default=100_000, help="frames of a dataset to price")
    args = parser.parse_args()

    from nanovla.envs.metaworld import MetaWorldEnv, goal_configs

    goals = goal_configs(args.task, 0)
    env = MetaWorldEnv(args.task, image_size=args.size)

    def run(render: bool, step: bool) -> float:
        obs, done_steps, start = env.reset(goals[0]), 0, time.perf_counter()
        env.render()  # the first frame builds the GL context: not part of the rate
        start = time.perf_counter()
        for i in range(args.steps):
            if step:
                if env.steps >= env.max_steps:
                    obs = env.reset(goals[i % len(goals)])
                obs = env.step(env.expert_action(obs))[0]
            if render:
                frame = env.render()
            done_steps += 1
        if render:
            assert frame.shape == (args.size, args.size, 3)
        return done_steps / (time.perf_counter() - start)

    step_rate = run(render=False, step=True)
    both_rate = run(render=True, step=True)
    render_rate = run(render=True, step=False)
    print(f"MUJOCO_GL={os.environ['MUJOCO_GL']}  task {args.task}  {args.size}x{args.size}")
    print(f"state-only steps        {step_rate:8.1f} steps/s")
    print(
        f"steps + one frame each  {both_rate:8.1f} steps/s  ({step_rate / both_rate:.1f}x slower)"
    )
    print(f"render alone            {render_rate:8.1f} frames/s")
    print(
        f"{args.frames} frames: {args.frames / step_rate / 60:.1f} min state-only, "
        f"{args.frames / both_rate / 60:.1f} min with frames"
    )


if __name__ == "__main__":
    main()
