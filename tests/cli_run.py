"""Running the `nanovla` command in a subprocess, as the CLI tests do (offline, headless, one
OpenMP thread, no test kill hook inherited from the environment)."""

import os
import subprocess
import sys
from pathlib import Path

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
ENV.pop("NANOVLA_TEST_KILL_AT", None)


def nanovla(
    *args: str, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -m nanovla.cli ARGS` in `cwd`; `env` adds to (or overrides) `ENV`."""
    return subprocess.run(
        [sys.executable, "-m", "nanovla.cli", *args],
        capture_output=True, text=True, cwd=cwd, env={**ENV, **(env or {})}, timeout=timeout,
    )  # fmt: skip
