"""nanovla.il: imitation learning beyond behaviour cloning, one algorithm per file.

- `maxent_irl`: maximum-entropy inverse RL (Ziebart et al. 2008) on a grid abstraction of the
  tabletop; `nanovla irl --task reach|push --out DIR`.

Nothing here is imported by the layers below (world, data, models, train, eval).
"""
