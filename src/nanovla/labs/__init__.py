"""nanovla.labs: one runnable lab per curriculum chapter that is not part of the VLA pipeline.

`nanovla lab basics|classify|transfer|segment|attention` (see `nanovla.labs.cli`); each lab
prints its metric and writes `metrics.json` and PNG plots into its `--out` directory. Each lab
module has a `run(config) -> dict` that the CLI calls and tests call in-process.
"""
