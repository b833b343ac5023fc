"""BatchLoader: action chunks and padding at episode ends, episode splits, augmentation, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nanovla.data import BatchLoader, EpisodeDataset, split_episodes, write_dataset
from nanovla.data.synthetic import synthetic_episodes
from nanovla.errors import InputError


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> EpisodeDataset:
    root = tmp_path_factory.mktemp("loader") / "ds"
    write_dataset(root, synthetic_episodes(12, lengths=(4, 9), image_size=10, seed=3), fps=10)
    return EpisodeDataset(root, progress=False)


def _same(a: dict, b: dict) -> bool:
    return all(
        a[key] == b[key] if isinstance(a[key], list) else torch.equal(a[key], b[key]) for key in a
    )


def test_batch_keys_shapes_and_dtypes(dataset: EpisodeDataset) -> None:
    batch = BatchLoader(dataset, batch_size=8, chunk=3, seed=0).next_batch()
    assert batch["observation.image"].shape == (8, 3, 10, 10)
    assert batch["observation.image"].dtype == torch.uint8
    assert batch["observation.state"].shape == (8, 6) and batch["action"].shape == (8, 3, 3)
    assert batch["action_is_pad"].dtype == torch.bool and batch["action_is_pad"].shape == (8, 3)
    assert batch["task"] == [dataset.tasks[i] for i in batch["task_index"].tolist()]
    rows = batch["episode_index"].numpy()
    starts = dataset.episode_bounds[rows, 0] + batch["frame_index"].numpy()
    np.testing.assert_array_equal(batch["observation.state"].numpy(), dataset.states[starts])
    np.testing.assert_array_equal(
        batch["observation.image"].permute(0, 2, 3, 1).numpy(), dataset.images[starts]
    )


def test_chunks_stay_in_episode_and_pad_at_the_end(dataset: EpisodeDataset) -> None:
    chunk = 5
    loader = BatchLoader(dataset, batch_size=len(dataset), chunk=chunk, split="all")
    batch = loader.batch(torch.arange(len(dataset)))
    lengths = np.diff(dataset.episode_bounds, axis=1)[:, 0][batch["episode_index"].numpy()]  # (N,)
    wanted = batch["frame_index"].numpy()[:, None] + np.arange(chunk)  # (N, k)
    # Synthetic actions are [episode, frame, noise]: chunks must come from the frame's episode.
    np.testing.assert_array_equal(
        batch["action"][:, :, 0].numpy(),
        np.repeat(batch["episode_index"].numpy()[:, None], chunk, 1),
    )
    np.testing.assert_array_equal(
        batch["action"][:, :, 1].numpy(), np.minimum(wanted, lengths[:, None] - 1)
    )
    np.testing.assert_array_equal(batch["action_is_pad"].numpy(), wanted >= lengths[:, None])
    last = int(dataset.episode_bounds[0, 1]) - 1
    end = loader.batch(torch.tensor([last]))
    assert end["action_is_pad"].tolist() == [[False, True, True, True, True]]
    assert torch.equal(end["action"][0], torch.from_numpy(dataset.actions[last]).expand(chunk, -1))


def test_split_by_episode_has_no_overlap(dataset: EpisodeDataset) -> None:
    train = BatchLoader(dataset, batch_size=4, split="train", val_fraction=0.25, seed=7)
    val = BatchLoader(dataset, batch_size=4, split="val", val_fraction=0.25, seed=7)
    assert set(train.episodes).isdisjoint(val.episodes) and len(val.episodes) == 3
    assert sorted([*train.episodes, *val.episodes]) == list(range(dataset.num_episodes))
    assert set(dataset.episode_index[val.rows.numpy()]) == set(val.episodes)
    assert np.array_equal(split_episodes(12, 0.25, 7)[1], val.episodes)
    assert not np.array_equal(split_episodes(12, 0.25, 8)[1], val.episodes)


def test_epoch_visits_every_frame_once(dataset: EpisodeDataset) -> None:
    loader = BatchLoader(dataset, batch_size=5, split="train", drop_last=False, seed=1)
    seen = torch.cat(
        [
            torch.from_numpy(dataset.episode_bounds[b["episode_index"].numpy(), 0])
            + b["frame_index"]
            for b in loader
        ]
    )
    assert len(loader) == -(-len(loader.rows) // 5)  # drop_last=False keeps the short batch
    assert sorted(seen.tolist()) == sorted(loader.rows.tolist())
    assert loader.epoch == 0 and sum(1 for _ in loader) == len(loader) and loader.epoch == 1


def test_augmentation_is_a_replicate_padded_shift(dataset: EpisodeDataset) -> None:
    shift = 2
    batch = BatchLoader(dataset, batch_size=16, augment_shift=shift, seed=4).next_batch()
    again = BatchLoader(dataset, batch_size=16, augment_shift=shift, seed=4).next_batch()
    assert batch["observation.image"].dtype == torch.uint8
    assert batch["observation.image"].shape == (16, 3, 10, 10)
    assert torch.equal(batch["observation.image"], again["observation.image"])
    rows = (
        torch.from_numpy(dataset.episode_bounds[batch["episode_index"].numpy(), 0])
        + batch["frame_index"]
    )
    plain = torch.from_numpy(dataset.images[rows.numpy()]).permute(0, 3, 1, 2)
    padded = F.pad(plain.float(), (shift,) * 4, mode="replicate")  # (B, 3, H+2s, W+2s)
    crops = [
        padded[:, :, y : y + 10, x : x + 10]
        for y in range(2 * shift + 1)
        for x in range(2 * shift + 1)
    ]
    matches = torch.stack(
        [(c == batch["observation.image"].float()).flatten(1).all(1) for c in crops]
    )
    assert matches.any(0).all()  # every sample is one of the (2s+1)^2 crops
    assert not torch.equal(batch["observation.image"], plain)  # and not all of them the identity


def test_resume_from_state_dict_gives_the_same_batches(dataset: EpisodeDataset) -> None:
    def make() -> BatchLoader:
        return BatchLoader(dataset, batch_size=7, chunk=2, augment_shift=1, seed=5)

    straight = make()
    for _ in range(len(straight) - 1):  # stop just before an epoch boundary
        straight.next_batch()
    state = straight.state_dict()
    expected = [straight.next_batch() for _ in range(len(straight) + 2)] + [straight.sample()]
    resumed = make()
    resumed.next_batch()  # a different position, overwritten by the state
    resumed.load_state_dict(state)
    got = [resumed.next_batch() for _ in range(len(resumed) + 2)] + [resumed.sample()]
    assert all(_same(a, b) for a, b in zip(expected, got))
    assert resumed.epoch == straight.epoch


def test_val_loader_serves_only_its_frames(dataset: EpisodeDataset) -> None:
    val = BatchLoader(dataset, batch_size=4, split="val", val_fraction=0.25, seed=7)
    assert len(val.frames) == len(val.rows) < dataset.num_frames  # copies only its own frames
    batch = val.next_batch()
    rows = (
        torch.from_numpy(dataset.episode_bounds[batch["episode_index"].numpy(), 0])
        + batch["frame_index"]
    )
    expected = torch.from_numpy(dataset.images[rows.numpy()]).permute(0, 3, 1, 2)
    assert torch.equal(batch["observation.image"], expected)
    outside = torch.tensor([int(BatchLoader(dataset, 4, val_fraction=0.25, seed=7).rows[0])])
    with pytest.raises(ValueError, match="outside the 'val' split"):
        val.batch(outside)


def test_state_dict_from_another_split_is_refused(dataset: EpisodeDataset) -> None:
    state = BatchLoader(dataset, batch_size=4, split="val", val_fraction=0.25).state_dict()
    with pytest.raises(ValueError, match="split of"):
        BatchLoader(dataset, batch_size=4, split="train", val_fraction=0.25).load_state_dict(state)


def test_a_split_smaller_than_a_batch_says_what_the_user_can_change(
    dataset: EpisodeDataset,
) -> None:
    train, val = split_episodes(dataset.num_episodes, 0.1, seed=0)
    frames = int(np.diff(dataset.episode_bounds[train], axis=1).sum())
    with pytest.raises(InputError) as error:
        BatchLoader(dataset, batch_size=1000)
    message = str(error.value)
    assert message == (
        f"the 'train' split holds {frames} frames from {len(train)} episodes ({len(val)} of "
        f"{dataset.num_episodes} episodes held out for validation), fewer than one batch of "
        "1000: record more episodes or lower the batch size"
    )
    with pytest.raises(InputError, match="0 frames from 0 episodes: record more episodes or "):
        BatchLoader(dataset, batch_size=4, split="val", val_fraction=0.0)


def test_bad_arguments(dataset: EpisodeDataset) -> None:
    with pytest.raises(ValueError, match="split must be"):
        BatchLoader(dataset, batch_size=4, split="test")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="val_fraction"):
        BatchLoader(dataset, batch_size=4, val_fraction=1.0)
    with pytest.raises(ValueError, match="cache must be"):
        EpisodeDataset(Path(dataset.root), cache="disk")  # type: ignore[arg-type]


def test_memmap_frames_give_the_same_batches_without_a_frame_copy(tmp_path):
    from nanovla.data import BatchLoader, EpisodeDataset
    from nanovla.data.collect import CollectConfig, collect

    root = collect(
        CollectConfig(task="reach", episodes=6, num_envs=3, out=tmp_path / "d", progress=False)
    )
    batches = {}
    for cache in ("memory", "memmap"):
        dataset = EpisodeDataset(root, cache=cache, progress=False)
        loader = BatchLoader(dataset, 8, chunk=3, augment_shift=2, seed=5)
        batches[cache] = [loader.next_batch() for _ in range(6)]
        if cache == "memmap":
            assert loader.frames is None  # no anonymous copy of the frames
            assert loader._frame_file is not None  # read with pread, not through the mapping
    for a, b in zip(batches["memory"], batches["memmap"], strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert torch.equal(a[key], b[key]), key
            else:
                assert a[key] == b[key], key


def test_auto_frame_cache_memmaps_only_past_the_size_bound(tmp_path, monkeypatch):
    from nanovla.data import EpisodeDataset
    from nanovla.data import dataset as dataset_module
    from nanovla.data.collect import CollectConfig, collect

    root = collect(
        CollectConfig(task="reach", episodes=2, num_envs=2, out=tmp_path / "d", progress=False)
    )
    assert not isinstance(EpisodeDataset(root, cache="auto", progress=False).images, np.memmap)
    monkeypatch.setattr(dataset_module, "AUTO_MEMMAP_BYTES", 0)
    assert isinstance(EpisodeDataset(root, cache="auto", progress=False).images, np.memmap)


def test_cpu_crop_and_gather_crop_agree() -> None:
    from nanovla.data.loader import crop_each, crop_gather

    frames = torch.randint(0, 256, (7, 3, 12, 14), dtype=torch.uint8)
    index = torch.tensor([6, 0, 3, 3, 1])
    offsets = torch.tensor([[0, 0], [4, 4], [2, 1], [0, 3], [4, 0]])
    each = crop_each(frames.numpy(), index.numpy(), offsets.numpy(), 8, 10)
    assert torch.equal(each, crop_gather(frames, index, offsets, 8, 10))
    assert torch.equal(each[1], frames[0, :, 4:12, 4:14])
