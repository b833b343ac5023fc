"""`Prefetcher`: a loader that builds batch t+1 on a background thread while step t trains.

The training step spends most of its time inside torch kernels, which release the GIL; so a
second Python thread can gather, crop and recolour the next batch (`BatchLoader.next_batch`:
pread of the memmapped frames, random shift, colour swap) in the gaps the step leaves on the
cores. One batch is kept in flight, no more: a deeper queue would only hold memory.

Exact resume is kept. Each prefetched batch travels with the loader's `state_dict()` taken just
before it was built, so `state_dict()` answers where the *consumer* is (the state before the
batch it has not taken yet), never where the worker has run ahead to. `load_state_dict`,
`set_shard` and `to` first wait for the batch in flight and rewind the loader to that state,
so the batches handed out are exactly the wrapped loader's, in order, with or without the
thread (a test checks this, and resume across a checkpoint).

An exception raised while building a batch (a bad frame file, a KeyboardInterrupt) reaches the
caller of the `next_batch` that asks for that batch, as without the thread.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class Prefetcher:
    """Wraps a loader with `next_batch()`, `state_dict()`, `load_state_dict()` (and optionally
    `set_shard`, `to`); anything else is read through to the wrapped loader."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nanovla-prefetch")
        self._pending: Future | None = None  # -> (state before the batch, batch or the error)

    def _build(self) -> tuple[dict[str, Any], dict[str, Any] | BaseException]:
        state = self.loader.state_dict()
        try:
            return state, self.loader.next_batch()
        except BaseException as error:  # handed to the consumer when it asks for this batch
            return state, error

    def next_batch(self) -> dict[str, Any]:
        """The wrapped loader's next batch; starts building the one after it."""
        if self._pending is None:
            _, batch = self._build()
        else:
            pending, self._pending = self._pending, None
            _, batch = pending.result()
        if isinstance(batch, BaseException):
            raise batch
        self._pending = self._executor.submit(self._build)
        return batch

    def _rewind(self) -> None:
        """Wait for the batch in flight and put the loader back where the consumer is."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.loader.load_state_dict(pending.result()[0])

    def state_dict(self) -> dict[str, Any]:
        """The state before the next batch the consumer will get (the batch in flight)."""
        if self._pending is None:
            return self.loader.state_dict()
        return self._pending.result()[0]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rewind()
        self.loader.load_state_dict(state)

    def set_shard(self, rank: int, world_size: int) -> None:
        self._rewind()
        self.loader.set_shard(rank, world_size)

    def to(self, device: Any) -> Prefetcher:
        self._rewind()
        self.loader.to(device)
        return self

    def close(self) -> None:
        """Drop the batch in flight (rewinding the loader) and stop the thread."""
        self._rewind()
        self._executor.shutdown(wait=True)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        if name in ("loader", "_executor", "_pending"):  # not yet set: no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)
