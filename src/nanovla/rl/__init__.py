"""nanovla.rl: reinforcement learning, one algorithm per file.

- `reinforce`: REINFORCE with reward-to-go and an optional learned baseline;
  `nanovla rl reinforce --env CartPole-v1 --out DIR`.
- `ppo`: PPO-clip with GAE(lambda); `nanovla rl ppo --env Pendulum-v1 --out DIR`.

Shared pieces: `distributions` (categorical, Gaussian, tanh-squashed Gaussian), `normalize`
(running observation / reward statistics), `returns` (reward-to-go, GAE), `envs` (gymnasium and
world vector envs, env state for exact resume), `policy` (the actor-critic), `rollout` and `run`
(the loop's plumbing, run directory, checkpoints, evaluation). Nothing below imports this package.
"""
