"""What the weight EMA costs a DAgger round: wall time per training step of `il/training.py`'s
engine with `ema_decay` 0 and 0.999 (the default policy, 64 px, batch 64, one torch thread, on
100 expert demonstrations of push + pick_place), interleaved 3 x 150 steps each.

Run: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/il_ema_step.py` (about a minute).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from nanovla.data import EpisodeDataset
from nanovla.eval.evaluate import EvalConfig
from nanovla.il.dagger import DaggerCommand, aggregate_round
from nanovla.il.training import TrainSpec, _trainer, new_policy

STEPS = 150


def main() -> None:
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp())
    try:
        command = DaggerCommand(out=root / "d", demos=100, progress=False)
        aggregate_round(command, 0, None, None)
        dataset = EpisodeDataset(root / "d" / "data", cache="memory", progress=False)
        spec = TrainSpec(
            tasks=command.tasks,
            image_size=64,
            instructions=command.instructions,
            eval=EvalConfig(episodes=1, splits=("seen",), gifs=0),
            num_threads=1,
            progress=False,
        )
        times: dict[float, list[float]] = {0.0: [], 0.999: []}
        for rep in range(3):
            for decay in times:
                policy = new_policy(command.policy, 64, dataset, 0)
                out = root / f"t{rep}-{decay}"
                trainer = _trainer(replace(spec, ema_decay=decay), out, policy, dataset, 0, STEPS)
                start = time.perf_counter()
                trainer.fit()
                times[decay].append((time.perf_counter() - start) / STEPS * 1000)
        for decay, runs in times.items():
            rounded = [round(t, 1) for t in runs]
            print(f"ema_decay {decay}: ms/step {rounded}, mean {sum(runs) / len(runs):.1f}")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
