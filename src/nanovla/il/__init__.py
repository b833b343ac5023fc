"""nanovla.il: imitation learning beyond behaviour cloning, one algorithm per file.

- `shift`: compounding error measured (`nanovla il shift`; Ross, Gordon & Bagnell 2011).
- `dagger`: dataset aggregation (`nanovla dagger`; Ross, Gordon & Bagnell 2011).
- `regularized`: behavior-regularized fine-tuning (`nanovla finetune`).
- `maxent_irl`: maximum-entropy inverse RL (Ziebart et al. 2008) on a grid abstraction of the
  tabletop (`irl_grid`: the discrete MDP, the experts' discretized trajectories, plans executed
  in the world); `irl_command`: `nanovla irl --task reach|push --out DIR`.
- `training`: train a policy on a dataset into a run directory and evaluate it (shared).

Nothing here is imported by the layers below (world, data, models, train, eval).
"""
