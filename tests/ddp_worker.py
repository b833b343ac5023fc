"""A tiny training run the distributed tests start in 1 or 2 processes (plain `python`, or under
torchrun): a small conv model without BatchNorm on a synthetic dataset through the real
`BatchLoader` and `Trainer`. Each rank writes its final weights to `OUT/rank<r>.safetensors`.

    python tests/ddp_worker.py DATASET OUT --steps 8 [--batch-size 8] [--interrupt-at N]
        [--resume] [--die-at N] [--grad-accum K]

`--interrupt-at N`: the loader raises KeyboardInterrupt on its N-th batch (every rank alike), so
the engine saves a checkpoint and stops; `--die-at N`: rank 1 exits at once on its N-th batch
(a crashed rank); `--hang-at N`: rank 1 stops itself with SIGSTOP there (a hung rank). A NanovlaError is printed as one line (exit 2), as the CLI does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from nanovla.data import BatchLoader, EpisodeDataset
from nanovla.errors import NanovlaError
from nanovla.train import TrainConfig, Trainer, distributed


@dataclasses.dataclass
class TinyConfig:
    state_dim: int = 6
    action_dim: int = 3
    chunk: int = 2


class TinyModel(nn.Module):
    """Conv stem on the uint8 image + state -> an action chunk; masked MSE (no BatchNorm)."""

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.config = config
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.head = nn.Linear(4 + config.state_dim, config.chunk * config.action_dim)

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        image = batch["observation.image"].float() / 255.0  # (B, 3, H, W)
        features = torch.tanh(self.conv(image)).mean(dim=(2, 3))  # (B, 4)
        state = batch["observation.state"] / 10.0
        pred = self.head(torch.cat([features, state], dim=1)).view_as(batch["action"])
        target = batch["action"] / 10.0  # (B, k, A)
        return F.mse_loss(pred, target), {}

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps(dataclasses.asdict(self.config)))
        save_file(dict(self.state_dict()), str(directory / "model.safetensors"))


class Faulty:
    """The loader, raising KeyboardInterrupt (all ranks) or exiting (rank 1) on a chosen batch."""

    def __init__(self, loader: BatchLoader, interrupt_at: int, die_at: int, hang_at: int) -> None:
        self.loader, self.calls = loader, 0
        self.interrupt_at, self.die_at, self.hang_at = interrupt_at, die_at, hang_at

    def next_batch(self) -> dict[str, Any]:
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        if self.calls == self.die_at and distributed.rank() == 1:
            os._exit(3)
        if self.calls == self.hang_at and distributed.rank() == 1:
            os.kill(os.getpid(), signal.SIGSTOP)  # alive, sockets open, never answering
        return self.loader.next_batch()

    def set_shard(self, rank: int, world_size: int) -> None:
        self.loader.set_shard(rank, world_size)

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state)


def run(args: argparse.Namespace) -> None:
    with distributed.session("cpu"):
        dataset = EpisodeDataset(args.dataset, progress=False)
        loader = BatchLoader(dataset, args.batch_size, chunk=2, augment_shift=1, seed=0)
        config = TrainConfig(
            steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum, lr=1e-2,
            warmup_steps=1, log_every=1, device="cpu", num_threads=1, tensorboard=False,
            progress=False, resume=args.resume,
        )  # fmt: skip
        model = TinyModel(TinyConfig())
        faulty = Faulty(loader, args.interrupt_at, args.die_at, args.hang_at)
        trainer = Trainer(model, faulty, config, args.out)
        try:
            trainer.fit()
        except KeyboardInterrupt:
            pass
        weights = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(Path(args.out) / f"rank{distributed.rank()}.safetensors"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--interrupt-at", type=int, default=-1)
    parser.add_argument("--die-at", type=int, default=-1)
    parser.add_argument("--hang-at", type=int, default=-1)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        run(args)
    except NanovlaError as error:
        print(f"ddp_worker: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
