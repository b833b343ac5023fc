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

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "reinforce": ("nanovla.rl.reinforce", "REINFORCE with reward-to-go and a learned baseline"),
    "ppo": ("nanovla.rl.ppo", "PPO-clip with GAE(lambda), minibatch epochs, normalization"),
    "finetune": ("nanovla.rl.finetune", "BC -> RL: PPO fine-tuning of a VLA checkpoint (KL to BC)"),
}


def _usage() -> str:
    lines = ["usage: nanovla rl {reinforce,ppo,finetune} [OPTIONS]", "", "subcommands:"]
    lines += [f"  {name:<10} {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    lines += ["", "`nanovla rl SUBCOMMAND --help` explains every option."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point of `nanovla rl`."""
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] not in SUBCOMMANDS:
        from nanovla.errors import InputError

        raise InputError(f"unknown subcommand {argv[0]!r}; choose one of: {', '.join(SUBCOMMANDS)}")
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)
