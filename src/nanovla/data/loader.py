"""`BatchLoader`: training batches built by tensor indexing from an `EpisodeDataset`.

A batch of B frames costs a handful of gathers on preloaded tensors, with no per-sample Python
(the seed's `DataLoader` over a per-sample `Dataset` spends more time in Python than a small CNN
spends computing). What a batch holds:

| key                 | dtype   | shape         | meaning                                        |
|---------------------|---------|---------------|------------------------------------------------|
| observation.image   | uint8   | (B, 3, H, W)  | raw frame, optionally randomly shifted         |
| observation.state   | float32 | (B, D)        | raw proprioceptive state                       |
| action              | float32 | (B, k, A)     | actions t..t+k-1 of the frame's episode        |
| action_is_pad       | bool    | (B, k)        | True past the episode end (last action copied) |
| task                | str     | [B]           | the instruction                                |
| task_index, episode_index, frame_index | int64 | (B,) | bookkeeping                         |

Values are raw: the policy normalizes with the dataset statistics it carries. Splits are by
episode, so no validation frame shares an episode with a training frame. Random-shift
augmentation (DrQ: replicate-pad by s pixels, random crop back to H x W) is folded into the
image gather: a crop of the replicate-padded frame at offset (dy, dx) reads source pixel
(clamp(y + dy, 0, H-1), clamp(x + dx, 0, W-1)), so one batched index does pad, crop and gather.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import torch

from nanovla.data.dataset import EpisodeDataset

Split = Literal["train", "val", "all"]
Batch = dict[str, Any]


def split_episodes(
    num_episodes: int, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, val) episode indices: a seeded shuffle, the first part is val.

    At least one episode goes to each side when `val_fraction` > 0 and there are two or more.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(num_episodes)
    num_val = int(round(num_episodes * val_fraction))
    if val_fraction > 0 and num_episodes >= 2:
        num_val = min(max(num_val, 1), num_episodes - 1)
    return np.sort(order[num_val:]), np.sort(order[:num_val])


class BatchLoader:
    """Shuffled batches over one split of a dataset, resumable exactly via `state_dict()`.

    Iterate for one epoch (`for batch in loader`) or call `next_batch()` forever (step-based
    training; a new shuffled epoch starts whenever one runs out). `sample()` draws an i.i.d.
    batch instead. Both generators live in the state dict, so a resumed run sees the same batches.
    """

    def __init__(
        self,
        dataset: EpisodeDataset,
        batch_size: int,
        chunk: int = 1,
        split: Split = "train",
        val_fraction: float = 0.1,
        augment_shift: int = 0,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        if batch_size < 1 or chunk < 1 or augment_shift < 0:
            raise ValueError(
                f"batch_size and chunk must be >= 1 and augment_shift >= 0, "
                f"got batch_size={batch_size}, chunk={chunk}, augment_shift={augment_shift}"
            )
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        self.dataset, self.batch_size, self.chunk = dataset, batch_size, chunk
        self.split, self.augment_shift, self.seed, self.drop_last = (
            split,
            augment_shift,
            seed,
            drop_last,
        )
        train, val = split_episodes(dataset.num_episodes, val_fraction, seed)
        self.episodes = {"train": train, "val": val, "all": np.arange(dataset.num_episodes)}[split]
        bounds = dataset.episode_bounds[self.episodes]  # (E_split, 2)
        self.rows = torch.from_numpy(
            np.concatenate([np.arange(lo, hi) for lo, hi in bounds])
            if len(bounds)
            else np.zeros(0, np.int64)
        )  # (M,) global frame indices of this split
        if len(self.rows) == 0 or (drop_last and len(self.rows) < batch_size):
            raise ValueError(
                f"split {split!r} has {len(self.rows)} frames ({len(self.episodes)} episodes), "
                f"fewer than batch_size={batch_size}; lower batch_size or val_fraction, or use drop_last=False"
            )
        self.images = torch.from_numpy(dataset.images)  # (N, H, W, 3) uint8
        self.states = torch.from_numpy(dataset.states)  # (N, D)
        self.actions = torch.from_numpy(dataset.actions)  # (N, A)
        self.task_index = torch.from_numpy(dataset.task_index)  # (N,)
        self.episode_index = torch.from_numpy(dataset.episode_index)
        self.frame_index = torch.from_numpy(dataset.frame_index)
        ends = dataset.episode_bounds[:, 1]
        self.last_row = torch.from_numpy(
            np.repeat(ends - 1, ends - dataset.episode_bounds[:, 0])
        )  # (N,)
        self._order_rng = torch.Generator().manual_seed(seed)
        self._augment_rng = torch.Generator().manual_seed(seed + 1)
        self.epoch = -1
        self._start_epoch()

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(len(self.rows), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[Batch]:
        """The remaining batches of the current epoch (a fresh epoch if the last one ended)."""
        if self._cursor >= len(self):
            self._start_epoch()
        while self._cursor < len(self):
            yield self.next_batch()

    def next_batch(self) -> Batch:
        """The next batch of the shuffled epoch; starts a new epoch when this one is used up."""
        if self._cursor >= len(self):
            self._start_epoch()
        start = self._cursor * self.batch_size
        self._cursor += 1
        return self.batch(self.rows[self._permutation[start : start + self.batch_size]])

    def sample(self) -> Batch:
        """A batch of `batch_size` frames drawn uniformly with replacement from the split."""
        picks = torch.randint(len(self.rows), (self.batch_size,), generator=self._order_rng)
        return self.batch(self.rows[picks])

    def _start_epoch(self) -> None:
        self.epoch += 1
        self._epoch_rng_state = self._order_rng.get_state()
        self._permutation = torch.randperm(len(self.rows), generator=self._order_rng)  # (M,)
        self._cursor = 0

    def batch(self, rows: torch.Tensor) -> Batch:
        """The batch of the given global frame indices (B,) (augmented if `augment_shift` > 0)."""
        rows = rows.long()
        steps = rows[:, None] + torch.arange(self.chunk)  # (B, k)
        last = self.last_row[rows][:, None]  # (B, 1)
        is_pad = steps > last  # (B, k)
        task_index = self.task_index[rows]  # (B,)
        return {
            "observation.image": self._images(rows),  # (B, 3, H, W) uint8
            "observation.state": self.states[rows],  # (B, D)
            "action": self.actions[torch.minimum(steps, last)],  # (B, k, A)
            "action_is_pad": is_pad,
            "task": [self.dataset.tasks[i] for i in task_index.tolist()],
            "task_index": task_index,
            "episode_index": self.episode_index[rows],
            "frame_index": self.frame_index[rows],
        }

    def _images(self, rows: torch.Tensor) -> torch.Tensor:
        """Gather frames (B, 3, H, W), each shifted by its own random (dy, dx) in [-s, s]."""
        if self.augment_shift == 0:
            return self.images[rows].permute(0, 3, 1, 2).contiguous()
        _, height, width, _ = self.images.shape
        shift = self.augment_shift
        offsets = torch.randint(
            -shift, shift + 1, (len(rows), 2), generator=self._augment_rng
        )  # (B, 2)
        ys = (torch.arange(height) + offsets[:, :1]).clamp_(0, height - 1)  # (B, H)
        xs = (torch.arange(width) + offsets[:, 1:]).clamp_(0, width - 1)  # (B, W)
        shifted = self.images[rows[:, None, None], ys[:, :, None], xs[:, None, :]]  # (B, H, W, 3)
        return shifted.permute(0, 3, 1, 2).contiguous()

    def state_dict(self) -> dict[str, Any]:
        """Position and RNG state: `load_state_dict` on a loader built the same way resumes exactly."""
        return {
            "epoch": self.epoch,
            "cursor": self._cursor,
            "num_rows": len(self.rows),
            "epoch_rng": self._epoch_rng_state.clone(),  # order RNG when this epoch was shuffled
            "order_rng": self._order_rng.get_state(),
            "augment_rng": self._augment_rng.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` output; the split must have the same frames."""
        missing = {"epoch", "cursor", "num_rows", "epoch_rng", "order_rng", "augment_rng"} - set(
            state
        )
        if missing:
            raise ValueError(f"loader state is missing key(s) {sorted(missing)}")
        if int(state["num_rows"]) != len(self.rows):
            raise ValueError(
                f"loader state is for a split of {int(state['num_rows'])} frames, this loader has "
                f"{len(self.rows)}; build it from the same dataset, split, val_fraction and seed"
            )
        self._order_rng.set_state(_byte_tensor(state["epoch_rng"]))
        self._epoch_rng_state = self._order_rng.get_state()
        self._permutation = torch.randperm(len(self.rows), generator=self._order_rng)
        self._order_rng.set_state(_byte_tensor(state["order_rng"]))
        self._augment_rng.set_state(_byte_tensor(state["augment_rng"]))
        self.epoch, self._cursor = int(state["epoch"]), int(state["cursor"])


def _byte_tensor(value: Any) -> torch.Tensor:
    """A generator state as the uint8 CPU tensor `Generator.set_state` wants (JSON lists too)."""
    return torch.as_tensor(value, dtype=torch.uint8).cpu().clone()
