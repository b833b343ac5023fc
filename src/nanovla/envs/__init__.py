"""Adapters for external simulators, below every learner (they import numpy and the simulator).

`nanovla.envs.metaworld`: Meta-World's MT10 tasks (extra `nanovla[metaworld]`), their goal
configurations, instructions and scripted experts. Import the submodule; this package imports
nothing heavy so `import nanovla.envs` works without the extra.
"""
