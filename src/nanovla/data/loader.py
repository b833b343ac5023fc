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

With `color_swap` p > 0, each frame is, with probability p, recoloured by a random permutation of
the world's colours and its instruction renamed to match (`data/color_swap.py`; `task_index`
still names the recorded instruction). The permutations come from the augmentation generator,
so they too are seeded and resume exactly. With `ko_scramble` q > 0, each Korean instruction is,
with probability q, put in place-first order (`data/scramble.py`: the particles, not the word
order, say which phrase is the object), coins from the same generator.

Values are raw: the policy normalizes with the dataset statistics it carries. Splits are by
episode, so no validation frame shares an episode with a training frame.

Speed. Advanced indexing and transposes of uint8 tensors are slow on CPU (elementwise kernels:
~1.5 ms for a batch of 64 frames of 64x64), while `index_select` copies whole contiguous rows
(~0.05 ms). So the loader keeps its own channels-first copy of the frames, replicate-padded by
the shift s, holding only the split's M frames: `frames` (M, 3, H+2s, W+2s). Random-shift augmentation (DrQ: replicate-pad by s
pixels, random crop back to H x W, a different crop per sample) then costs ONE `index_select`:
every crop row is W contiguous bytes of the padded copy starting at
    n*3*Hp*Wp + c*Hp*Wp + (y + dy)*Wp + dx,   dy, dx in [0, 2s],
so an `unfold` view of the flat copy whose row i starts at byte i lets `index_select` fetch all
B*3*H crop rows at once (~0.35 ms for B = 64): the path for frames on a GPU. On the CPU one
numpy slice copy per frame (`crop_each`) is cheaper still: 64 strided copies of ~12 KB with
~2 us of overhead each, about 0.4 ms less per batch than the `index_select` (measured in one
process with the pad included, 0.83-0.94 vs 1.30-1.40 ms). The copy costs one extra (padded) frame array in
memory (of this split's frames only), built once at construction.

Memory. When the dataset's frames are a memmap (`EpisodeDataset(cache="memmap")`), the loader
makes no copy: each batch pads and transposes only its own B frames, read from the memmap
(`padded_channels_first` on B rows), and crops them as above. The frames then stay file-backed
(page cache, reclaimable), so the loader's anonymous memory does not grow with the frame count
beyond its per-frame index vectors (tens of bytes per frame); the batches are the same as with
the copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import torch

from nanovla.data.color_swap import draw_permutations, swap_images, swap_texts
from nanovla.data.dataset import EpisodeDataset
from nanovla.data.format import ENV_STATE_KEY
from nanovla.data.frames import FrameFile, is_frame_file
from nanovla.data.scramble import draw_coins, scramble_texts
from nanovla.errors import InputError

Split = Literal["train", "val", "all"]
Batch = dict[str, Any]


def split_episodes(
    num_episodes: int, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, val) episode indices: a seeded shuffle, the first part is val.

    At least one episode goes to each side when `val_fraction` > 0 and there are two or more.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}")
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
        color_swap: float = 0.0,
        ko_scramble: float = 0.0,
    ) -> None:
        if not 0.0 <= color_swap <= 1.0:
            raise InputError(f"color_swap must be a probability in [0, 1], got {color_swap}")
        if not 0.0 <= ko_scramble <= 1.0:
            raise InputError(f"ko_scramble must be a probability in [0, 1], got {ko_scramble}")
        if batch_size < 1 or chunk < 1 or augment_shift < 0:
            raise InputError(
                f"batch_size and chunk must be >= 1 and augment_shift >= 0, "
                f"got batch_size={batch_size}, chunk={chunk}, augment_shift={augment_shift}"
            )
        if split not in ("train", "val", "all"):
            raise InputError(f"split must be 'train', 'val' or 'all', got {split!r}")
        self.dataset, self.batch_size, self.chunk = dataset, batch_size, chunk
        self.split, self.augment_shift = split, augment_shift
        self.seed, self.drop_last, self.color_swap = seed, drop_last, color_swap
        self.ko_scramble = ko_scramble
        train, val = split_episodes(dataset.num_episodes, val_fraction, seed)
        self.episodes = {"train": train, "val": val, "all": np.arange(dataset.num_episodes)}[split]
        bounds = dataset.episode_bounds[self.episodes]  # (E_split, 2)
        self.rows = torch.from_numpy(
            np.concatenate([np.arange(lo, hi) for lo, hi in bounds] + [np.zeros(0, np.int64)])
        )  # (M,) global frame indices of this split
        if len(self.rows) == 0 or (drop_last and len(self.rows) < batch_size):
            raise InputError(self._too_small_message(dataset.num_episodes))
        self._build_tensors(dataset)
        self._order_rng = torch.Generator().manual_seed(seed)
        self._augment_rng = torch.Generator().manual_seed(seed + 1)
        self.epoch = -1
        self.shard = (0, 1)  # (rank, world size): which slice of each batch this process gets
        self.device = torch.device("cpu")  # where the frames and batches live (see `to`)
        self._start_epoch()

    def _too_small_message(self, num_episodes: int) -> str:
        """Why this split cannot fill a batch, and what the user can change (in words, not
        argument names: the commands above name their own options)."""
        frames, episodes = len(self.rows), len(self.episodes)
        held = (
            f" ({num_episodes - episodes} of {num_episodes} episodes held out for validation)"
            if self.split == "train" and episodes < num_episodes
            else ""
        )
        where = f"the {self.split!r} split holds {frames} frames from {episodes} episodes{held}"
        if frames == 0 and self.split == "val":
            return f"{where}: record more episodes or raise the validation fraction"
        if frames == 0:
            return f"{where}: record more episodes or lower the validation fraction"
        return (
            f"{where}, fewer than one batch of {self.batch_size}: record more episodes or "
            "lower the batch size"
        )

    def _build_tensors(self, dataset: EpisodeDataset) -> None:
        """Padded channels-first frames of the split (none for memmap frames, which batches
        read directly); per-frame vectors of the whole dataset."""
        self.frames: torch.Tensor | None = None  # (M, 3, H+2s, W+2s) uint8, or None
        # memmap frames are read per batch with pread (data/frames.py), never mapped in
        self._frame_file = FrameFile(dataset.images) if is_frame_file(dataset.images) else None
        if not isinstance(dataset.images, np.memmap):
            frames = padded_channels_first(dataset.images, self.augment_shift, self.rows.numpy())
            self.frames = torch.from_numpy(frames)
        self._local = torch.full((dataset.num_frames,), -1, dtype=torch.long)  # global -> split
        self._local[self.rows] = torch.arange(len(self.rows))
        self.states = torch.from_numpy(dataset.states)  # (N, D)
        self.actions = torch.from_numpy(dataset.actions)  # (N, A)
        env_states = getattr(dataset, "env_states", None)  # (N, K) privileged subgoals or None
        self.env_states = None if env_states is None else torch.from_numpy(env_states)
        self.task_index = torch.from_numpy(dataset.task_index)  # (N,)
        self.episode_index = torch.from_numpy(dataset.episode_index)  # (N,)
        self.frame_index = torch.from_numpy(dataset.frame_index)  # (N,)
        starts, ends = dataset.episode_bounds[:, 0], dataset.episode_bounds[:, 1]
        self.last_row = torch.from_numpy(np.repeat(ends - 1, ends - starts))  # (N,)

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

    def to(self, device: str | torch.device) -> BatchLoader:
        """Keep the padded frames and the per-frame vectors on `device` (e.g. the GPU): batches
        are then gathered and cropped there, with no host-to-device copy per step. The order
        and augmentation generators stay on the CPU, so the batches are the same."""
        if self.frames is None:
            raise InputError(
                "memmap frames stay on disk and cannot move to a device; decode them into "
                "memory (frame cache 'memory') to keep them on the GPU"
            )
        self.device = torch.device(device)
        for name in (
            "frames", "_local", "states", "actions", "env_states", "task_index", "episode_index",
            "frame_index", "last_row",
        ):  # fmt: skip
            if getattr(self, name) is not None:  # env_states may be absent
                setattr(self, name, getattr(self, name).to(self.device))
        return self

    def set_shard(self, rank: int, world_size: int) -> None:
        """Hand out only slice `rank` of `world_size` of every batch (multi-process training:
        every rank draws the same global batch, its order and its augmentation offsets, and
        keeps its own contiguous part, so N ranks together see one process's batches)."""
        if not 0 <= rank < world_size or self.batch_size % world_size:
            raise InputError(
                f"batch size {self.batch_size} cannot be split evenly over {world_size} "
                f"processes (rank {rank}): use a multiple of {world_size}"
            )
        self.shard = (rank, world_size)

    def batch(self, rows: torch.Tensor) -> Batch:
        """The batch of the given global frame indices (B,) (augmented if `augment_shift` > 0;
        only this process's slice of it after `set_shard`)."""
        rows = rows.long().to(self.device)
        offsets = self._offsets(len(rows))  # drawn for the whole batch on every rank
        perms = None  # (B, 5) colour permutations, drawn for the whole batch on every rank
        if self.color_swap > 0:
            perms = draw_permutations(len(rows), self.color_swap, self._augment_rng)
        coins = None  # (B,) which Korean instructions to scramble, drawn like perms
        if self.ko_scramble > 0:
            coins = draw_coins(len(rows), self.ko_scramble, self._augment_rng)
        rank, world_size = self.shard
        if world_size > 1:
            keep = slice(rank * len(rows) // world_size, (rank + 1) * len(rows) // world_size)
            rows, offsets = rows[keep], None if offsets is None else offsets[keep]
            perms = None if perms is None else perms[keep]
            coins = None if coins is None else coins[keep]
        steps = rows[:, None] + torch.arange(self.chunk, device=rows.device)  # (B, k)
        last = self.last_row.index_select(0, rows)[:, None]  # (B, 1)
        is_pad = steps > last  # (B, k)
        chunk_rows = torch.minimum(steps, last).view(-1)  # (B*k,)
        task_index = self.task_index.index_select(0, rows)  # (B,)
        extra = {}
        if self.env_states is not None:
            extra[ENV_STATE_KEY] = self.env_states.index_select(0, rows)  # (B, K)
        images = self._images(rows, offsets)  # (B, 3, H, W) uint8
        tasks = [self.dataset.tasks[i] for i in task_index.tolist()]
        if perms is not None:
            images, tasks = swap_images(images, perms.to(images.device)), swap_texts(tasks, perms)
        if coins is not None:
            tasks = scramble_texts(tasks, coins)
        return {
            "observation.image": images,
            "observation.state": self.states.index_select(0, rows),  # (B, D)
            "action": self.actions.index_select(0, chunk_rows).view(len(rows), self.chunk, -1),
            "action_is_pad": is_pad,
            "task": tasks,
            "task_index": task_index,
            "episode_index": self.episode_index.index_select(0, rows),
            "frame_index": self.frame_index.index_select(0, rows),
            **extra,
        }

    def _offsets(self, count: int) -> torch.Tensor | None:
        """(count, 2) random crop offsets (dy, dx) in [0, 2s]^2, or None without augmentation."""
        if self.augment_shift == 0:
            return None
        span = 2 * self.augment_shift + 1
        offsets = torch.randint(0, span, (count, 2), generator=self._augment_rng)
        return offsets.to(self.device)

    def _images(self, rows: torch.Tensor, offsets: torch.Tensor | None) -> torch.Tensor:
        """Frames (B, 3, H, W), each cropped at its own offset (dy, dx) in [0, 2s]^2."""
        local = self._local.index_select(0, rows)  # (B,) positions in this split's frames
        if bool((local < 0).any()):
            raise InputError(f"batch rows include frames outside the {self.split!r} split")
        if self.frames is None:  # memmap frames: pad and transpose this batch's frames only
            if self._frame_file is not None:
                batch = self._frame_file.read(rows.numpy())  # (B, H, W, 3), not mapped in
                padded = padded_channels_first(batch, self.augment_shift)
            else:
                padded = padded_channels_first(
                    self.dataset.images, self.augment_shift, rows.numpy()
                )
            frames, local = torch.from_numpy(padded), torch.arange(len(rows))  # (B, 3, Hp, Wp)
            if self.augment_shift == 0:
                return frames
        else:
            frames = self.frames  # (M, 3, Hp, Wp)
            if self.augment_shift == 0:
                return frames.index_select(0, local)
        height, width = (side - 2 * self.augment_shift for side in frames.shape[2:])
        assert offsets is not None  # (B, 2), drawn by `batch`
        if frames.device.type == "cpu":  # one numpy slice copy per frame: ~2 us each
            return crop_each(frames.numpy(), local.numpy(), offsets.numpy(), height, width)
        return crop_gather(frames, local, offsets, height, width)

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
            raise InputError(f"loader state is missing key(s) {sorted(missing)}")
        if int(state["num_rows"]) != len(self.rows):
            raise InputError(
                f"loader state is for a split of {int(state['num_rows'])} frames, this loader has "
                f"{len(self.rows)}; build it from the same dataset, split, val_fraction and seed"
            )
        self._order_rng.set_state(_byte_tensor(state["epoch_rng"]))
        self._epoch_rng_state = self._order_rng.get_state()
        self._permutation = torch.randperm(len(self.rows), generator=self._order_rng)
        self._order_rng.set_state(_byte_tensor(state["order_rng"]))
        self._augment_rng.set_state(_byte_tensor(state["augment_rng"]))
        self.epoch, self._cursor = int(state["epoch"]), int(state["cursor"])


def padded_channels_first(
    images: np.ndarray, pad: int, rows: np.ndarray | None = None
) -> np.ndarray:
    """(N, H, W, 3) uint8 frames (only `rows` if given) -> contiguous (M, 3, H+2p, W+2p), edges
    replicated p pixels."""
    rows = np.arange(len(images)) if rows is None else rows
    _, height, width, channels = images.shape
    out = np.empty((len(rows), channels, height + 2 * pad, width + 2 * pad), dtype=np.uint8)
    for start in range(0, len(rows), 1024):  # blocks keep a memmap-backed cache out of RAM
        block = images[rows[start : start + 1024]].transpose(0, 3, 1, 2)  # (b, 3, H, W)
        out[start : start + 1024, :, pad : pad + height, pad : pad + width] = block
    if pad:
        out[:, :, :pad] = out[:, :, pad : pad + 1]
        out[:, :, pad + height :] = out[:, :, pad + height - 1 : pad + height]
        out[:, :, :, :pad] = out[:, :, :, pad : pad + 1]
        out[:, :, :, pad + width :] = out[:, :, :, pad + width - 1 : pad + width]
    return out


def crop_gather(
    frames: torch.Tensor, index: torch.Tensor, offsets: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """`crop_each` as one `index_select` of crop rows (any device: the GPU path)."""
    _, channels, padded_h, padded_w = frames.shape
    corner = index * (channels * padded_h * padded_w) + offsets[:, 0] * padded_w + offsets[:, 1]
    plane = torch.arange(channels, device=frames.device) * (padded_h * padded_w)  # (C,)
    line = torch.arange(height, device=frames.device) * padded_w  # (H,)
    starts = corner[:, None, None] + plane[None, :, None] + line[None, None, :]  # (B, C, H)
    rows_of_frames = frames.view(-1).unfold(0, width, 1)  # (L, W) view: row i starts at byte i
    crops = rows_of_frames.index_select(0, starts.view(-1))  # (B*C*H, W)
    return crops.view(len(index), channels, height, width)


def crop_each(
    frames: np.ndarray, index: np.ndarray, offsets: np.ndarray, height: int, width: int
) -> torch.Tensor:
    """(B, C, height, width) uint8: frame index[i] of the padded `frames` (M, C, Hp, Wp) cropped
    at its corner offsets[i] = (dy, dx)."""
    out = np.empty((len(index), frames.shape[1], height, width), dtype=frames.dtype)
    for i, (frame, (dy, dx)) in enumerate(zip(index.tolist(), offsets.tolist(), strict=True)):
        out[i] = frames[frame, :, dy : dy + height, dx : dx + width]
    return torch.from_numpy(out)


def _byte_tensor(value: Any) -> torch.Tensor:
    """A generator state as the uint8 CPU tensor `Generator.set_state` wants (JSON lists too)."""
    return torch.as_tensor(value, dtype=torch.uint8).cpu().clone()
