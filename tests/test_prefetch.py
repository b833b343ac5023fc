"""`Prefetcher` (data/prefetch.py): the same batches as the loader it wraps, exact resume,
errors at the batch that raised them."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from nanovla.data import BatchLoader, EpisodeDataset, write_dataset
from nanovla.data.prefetch import Prefetcher
from nanovla.data.synthetic import synthetic_episodes


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> EpisodeDataset:
    root = tmp_path_factory.mktemp("prefetch") / "ds"
    write_dataset(root, synthetic_episodes(12, lengths=(4, 9), image_size=10, seed=3), fps=10)
    return EpisodeDataset(root, progress=False)


def _make(dataset: EpisodeDataset) -> BatchLoader:
    return BatchLoader(dataset, batch_size=8, chunk=2, augment_shift=1, seed=2, color_swap=0.5)


def _same(a: dict, b: dict) -> bool:
    return all(
        a[key] == b[key] if isinstance(a[key], list) else torch.equal(a[key], b[key]) for key in a
    )


def test_the_batches_are_the_wrapped_loaders_across_epochs(dataset: EpisodeDataset) -> None:
    plain, fetched = _make(dataset), Prefetcher(_make(dataset))
    count = 2 * len(plain) + 3
    assert all(_same(plain.next_batch(), fetched.next_batch()) for _ in range(count))
    assert fetched.epoch == 2  # read through to the wrapped loader
    fetched.close()


def test_state_dict_is_the_consumers_and_resumes_exactly(dataset: EpisodeDataset) -> None:
    plain, fetched = _make(dataset), Prefetcher(_make(dataset))
    for _ in range(5):
        plain.next_batch(), fetched.next_batch()
    state = fetched.state_dict()  # the worker has already built batch 6
    assert state["cursor"] == plain.state_dict()["cursor"]
    expected = [plain.next_batch() for _ in range(7)]
    resumed = Prefetcher(_make(dataset))
    resumed.next_batch()  # a different position, overwritten
    resumed.load_state_dict(state)
    assert all(_same(a, resumed.next_batch()) for a in expected)
    # rewinding for set_shard keeps the order too
    plain.set_shard(1, 2)
    resumed.set_shard(1, 2)
    assert all(_same(plain.next_batch(), resumed.next_batch()) for _ in range(3))


class _Failing:
    """A loader whose third batch raises."""

    def __init__(self) -> None:
        self.calls = 0

    def next_batch(self) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 3:
            raise KeyboardInterrupt
        return {"n": self.calls}

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = state["calls"]


def test_an_error_reaches_the_caller_of_the_batch_that_raised_it() -> None:
    fetched = Prefetcher(_Failing())
    assert fetched.next_batch() == {"n": 1}
    assert fetched.next_batch() == {"n": 2}  # batch 3 is being built and fails in the thread
    assert fetched.state_dict() == {"calls": 2}
    with pytest.raises(KeyboardInterrupt):
        fetched.next_batch()
    assert fetched.next_batch() == {"n": 4}
    fetched.close()
