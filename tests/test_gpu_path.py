"""The GPU path: the loader's frame cache on a device, pinned non-blocking batch copies, autocast
with the loss scaler. The CPU parts run everywhere; the CUDA tests skip without a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train_engine import ToyConfig, ToyLoader, ToyModel, tiny_config

from nanovla.data import BatchLoader, EpisodeDataset, write_dataset
from nanovla.data.synthetic import synthetic_episodes
from nanovla.errors import InputError
from nanovla.train import Trainer

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gpu") / "ds"
    write_dataset(root, synthetic_episodes(10, lengths=(5, 9), image_size=12, seed=1), fps=10)
    return root


def _batches(loader: BatchLoader, count: int = 3) -> list[dict]:
    return [loader.next_batch() for _ in range(count)]


def _assert_same(ours: list[dict], reference: list[dict]) -> None:
    for a, b in zip(ours, reference, strict=True):
        for key, value in b.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(a[key].cpu(), value), key
            else:
                assert a[key] == value, key


def _loader(dataset: EpisodeDataset) -> BatchLoader:
    return BatchLoader(dataset, 6, chunk=3, augment_shift=2, seed=5)


def test_loader_moved_to_a_device_gives_the_same_batches(dataset_dir: Path) -> None:
    dataset = EpisodeDataset(dataset_dir, progress=False)
    moved = _loader(dataset).to("cpu")  # the same code path as "cuda", on the CPU
    assert moved.device == torch.device("cpu")
    _assert_same(_batches(moved), _batches(_loader(dataset)))


def test_memmap_frames_cannot_move(dataset_dir: Path) -> None:
    dataset = EpisodeDataset(dataset_dir, cache="memmap", progress=False)
    with pytest.raises(InputError, match="memmap frames stay on disk"):
        _loader(dataset).to("cpu")


@CUDA
def test_loader_on_the_gpu_gives_the_same_batches(dataset_dir: Path) -> None:
    dataset = EpisodeDataset(dataset_dir, progress=False)
    on_gpu = _batches(_loader(dataset).to("cuda"))
    assert on_gpu[0]["observation.image"].is_cuda
    _assert_same(on_gpu, _batches(_loader(dataset)))


@CUDA
@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_training_on_cuda_runs_with_each_precision(tmp_path: Path, amp: str) -> None:
    model = ToyModel(ToyConfig())
    trainer = Trainer(model, ToyLoader(), tiny_config(device="cuda", amp=amp), tmp_path)
    assert next(trainer.model.parameters()).is_cuda
    assert (trainer.scaler is not None) == (amp == "fp16")
    batch = trainer.to_device(ToyLoader().next_batch())
    assert batch["x"].is_cuda
    final = trainer.fit()
    assert final["step"] == 8 and torch.isfinite(torch.tensor(final["train/loss"]))
