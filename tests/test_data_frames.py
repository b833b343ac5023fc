"""`data/frames.FrameFile`: batches of the memmapped frame cache read by pread, not mapped in."""

import dataclasses
import os
import pickle

import numpy as np
import pytest

from nanovla.data.frames import FrameFile, frame_cache_file, is_frame_file
from nanovla.errors import InputError


@pytest.fixture()
def cache(tmp_path) -> np.memmap:
    path = tmp_path / "frames.uint8.npy"
    frames = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(1024, 64, 64, 3))
    frames[:] = np.random.default_rng(0).integers(0, 256, frames.shape, dtype=np.uint8)
    frames.flush()
    del frames
    return np.load(path, mmap_mode="c")


def _rss_file_kb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile in /proc/self/status")


def test_reads_equal_indexing_in_any_order_with_repeats(cache):
    rows = np.array([5, 1023, 0, 5, 17, 512])
    np.testing.assert_array_equal(FrameFile(cache).read(rows), cache[rows])
    assert FrameFile(cache).read(np.zeros(0, np.int64)).shape == (0, 64, 64, 3)


def test_reading_every_frame_leaves_resident_memory_flat(cache):
    """12 MiB of frames: through the mapping they become resident; through pread they do not."""
    reader, rows = FrameFile(cache), np.random.default_rng(1).permutation(len(cache))
    before = _rss_file_kb()
    for start in range(0, len(rows), 256):
        reader.read(rows[start : start + 256])
    through_pread = _rss_file_kb() - before
    before = _rss_file_kb()
    for start in range(0, len(rows), 256):
        np.ascontiguousarray(cache[np.sort(rows[start : start + 256])])
    through_mapping = _rss_file_kb() - before
    assert through_mapping > 10_000  # kB: the file's 12 MiB mapped in
    assert through_pread < 1_000


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_slice_is_not_taken_for_the_file(cache):
    # the error also means: the half-built FrameFile's __del__ does not raise
    assert is_frame_file(cache) and not is_frame_file(cache[1:]) and not is_frame_file(cache[::2])
    assert not is_frame_file(np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(InputError, match="frame cache file"):
        FrameFile(cache[1:])
    with pytest.raises(InputError, match=r"\[0, 1024\)"):
        FrameFile(cache).read(np.array([1024]))


def test_survives_pickling_and_fork(cache):
    reader = FrameFile(cache)
    reader.read(np.array([3]))  # opens a descriptor in this process
    again = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(again.read(np.array([3, 4])), cache[[3, 4]])
    pid = os.fork()
    if pid == 0:  # the child must open its own descriptor, not share the parent's offset
        ok = np.array_equal(reader.read(np.array([9])), cache[[9]])
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_writer_builds_the_same_file_as_a_memmap_without_mapping_it(tmp_path):
    from nanovla.data.frames import FrameFileWriter

    frames = np.random.default_rng(2).integers(0, 256, (512, 64, 64, 3), dtype=np.uint8)
    writer = FrameFileWriter(tmp_path / "w.npy", frames.shape)
    before = _rss_file_kb()
    for row in np.random.default_rng(3).permutation(len(frames)):
        writer[row] = frames[row]
    writer.flush()
    assert _rss_file_kb() - before < 1_000  # kB: 6 MiB written, none of it resident
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy"), frames)
    with pytest.raises(InputError, match="outside"):
        FrameFileWriter(tmp_path / "x.npy", (2, 4, 4, 3))[2] = frames[0, :4, :4]
    with pytest.raises(InputError, match="expected"):
        FrameFileWriter(tmp_path / "y.npy", (2, 4, 4, 3))[0] = frames[0]


def test_a_killed_builds_staging_file_is_removed_and_a_live_ones_kept(tmp_path):
    from nanovla.data.frames import cached_frames

    array_path = tmp_path / "cache" / "img.uint8.npy"
    array_path.parent.mkdir()
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)  # a pid that no longer exists
    dead = array_path.with_name(f"{array_path.name}.tmp-{child}")
    live = array_path.with_name(f"{array_path.name}.tmp-{os.getppid()}")
    dead.write_bytes(b"half a cache")
    live.write_bytes(b"being built")
    source = tmp_path / "source.bin"
    source.write_bytes(b"x")
    frames = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)

    def decode(allocate):
        writer = allocate()
        for row, frame in enumerate(frames):
            writer[row] = frame
        return writer

    got = cached_frames(array_path, frames.shape, [source], tmp_path, decode)
    np.testing.assert_array_equal(got, frames)
    assert not dead.exists() and live.exists()
    assert sorted(p.name for p in array_path.parent.iterdir()) == sorted(
        ["img.uint8.npy", "img.uint8.json", live.name]
    )


def _collect(out, **options):
    from nanovla.data.collect import CollectConfig, collect

    config = CollectConfig(task="reach,push", episodes=12, num_envs=4, out=out, progress=False)
    return collect(dataclasses.replace(config, **options))


def test_a_cache_written_while_collecting_is_the_decoded_one_and_decodes_nothing(
    tmp_path, monkeypatch
):
    from nanovla.data.dataset import EpisodeDataset

    spooled, plain = _collect(tmp_path / "a", frame_cache=True), _collect(tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no staging left
    assert frame_cache_file(spooled, "observation.image").is_file()
    assert not (plain / "cache").exists()
    decoded = EpisodeDataset(plain, cache="memmap", progress=False).images

    def refuse(*args, **kwargs):
        raise AssertionError("the spooled cache should have been reused")

    monkeypatch.setattr("nanovla.data.dataset.EpisodeDataset._decode_into", refuse)
    reused = EpisodeDataset(spooled, cache="memmap", progress=False).images
    np.testing.assert_array_equal(reused, decoded)
    monkeypatch.undo()
    # a damaged spooled cache is rebuilt like any other (its CRC no longer matches)
    path = frame_cache_file(spooled, "observation.image")
    with open(path, "r+b") as file:
        file.seek(-1, os.SEEK_END)
        last = file.read(1)[0]
        file.seek(-1, os.SEEK_END)
        file.write(bytes([last ^ 1]))
    np.testing.assert_array_equal(
        EpisodeDataset(spooled, cache="memmap", progress=False).images, decoded
    )


def test_a_discarded_or_absorbing_writer_leaves_no_spool(tmp_path):
    from nanovla.data.writer import DatasetWriter, Episode

    def episode(value: int) -> Episode:
        return Episode(
            images=np.full((3, 8, 8, 3), value, np.uint8),
            states=np.zeros((3, 2), np.float32),
            actions=np.zeros((3, 2), np.float32),
            task="reach the red box",
        )

    with pytest.raises(RuntimeError), DatasetWriter(tmp_path / "a", 10, frame_cache=True) as w:
        w.add_episode(episode(1))
        assert len(list(tmp_path.iterdir())) == 1  # the spool's staging directory
        raise RuntimeError("collection failed")
    assert list(tmp_path.iterdir()) == []
    writer, shard = (
        DatasetWriter(tmp_path / "b", 10, frame_cache=True),
        DatasetWriter(tmp_path / "s", 10),
    )
    writer.add_episode(episode(1))
    shard.add_episode(episode(2))
    writer.absorb(shard)  # the shard's frames exist only as PNG: no cache from the spool
    writer.add_episode(episode(3))
    root = writer.finalize()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"] and not (root / "cache").exists()


@pytest.mark.parametrize(
    ("options", "named"), [({"video": True}, "--video"), ({"shards": 2}, "--shards 2")]
)
def test_frame_cache_with_video_or_shards_is_refused_before_anything_is_written(
    tmp_path, options, named
):
    from nanovla.errors import InputError

    with pytest.raises(InputError, match=f"--frame-cache .*not with {named}"):
        _collect(tmp_path / "a", frame_cache=True, **options)
    assert list(tmp_path.iterdir()) == []
