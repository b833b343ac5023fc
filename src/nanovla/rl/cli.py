"""`nanovla rl`: reinforcement learning commands.

```
nanovla rl reinforce --env CartPole-v1 --out DIR   REINFORCE (reward-to-go, optional baseline)
nanovla rl ppo --env Pendulum-v1 --out DIR         PPO-clip with GAE(lambda)
nanovla rl finetune --checkpoint CKPT --out DIR    BC -> RL fine-tuning of a VLA checkpoint
```

reinforce and ppo write DIR/checkpoints/last/, DIR/logs/metrics.jsonl, DIR/learning_curve.png
and DIR/eval.json (`{"env", "mean_return", "episodes", ...}`); finetune writes DIR/before.json
and DIR/eval.json in `nanovla train`'s schema, DIR/checkpoints/last/ and
DIR/success_vs_steps.png. `--help` after a subcommand lists its options.
"""

from __future__ import annotations

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "reinforce": ("nanovla.rl.reinforce", "REINFORCE with reward-to-go and a learned baseline"),
    "ppo": ("nanovla.rl.ppo", "PPO-clip with GAE(lambda), minibatch epochs, normalization"),
    "finetune": ("nanovla.rl.finetune", "BC -> RL: PPO fine-tuning of a VLA checkpoint (KL to BC)"),
}


def main(argv: list[str]) -> int:
    """Entry point of `nanovla rl`: dispatches to the named subcommand's `main`."""
    from nanovla.cli import dispatch

    return dispatch("nanovla rl", "nanovla rl: reinforcement learning commands.", SUBCOMMANDS, argv)
