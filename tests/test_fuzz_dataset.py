"""Fuzzed datasets: every reader of a LeRobotDataset either loads it right or names the file.

One small dataset is recorded per module (`nanovla collect`'s function, 3 reach episodes); each
hypothesis example mutates one file of a fresh copy (truncation, flipped bits, overwritten or
dropped bytes, JSON keys deleted / retyped / added, parquet columns dropped / retyped / added /
nulled, rows dropped / duplicated / swapped, index values shifted, vector widths changed, PNG
frames corrupted) and loads it with `EpisodeDataset`. Every case must end one of two ways:

- a `NanovlaError` whose message is one line and names the mutated file (for a mutation of
  meta/info.json that moves what another file must hold, naming info.json is enough);
- a load whose arrays (frames, states, actions, bookkeeping, tasks, episode bounds) equal the
  original's, and whose stats are what the (mutated) stats.json says.

Anything else (a bare pyarrow / PIL / json / numpy error, a hang past `CASE_SECONDS`, a load
that differs) fails the test. Each test prints `fuzz <reader>: N cases (L loaded, R refused)`
(run with `-s` to see it) and asserts that N examples ran.

The parquet files of the fixture are rewritten with page checksums (`write_page_checksum=True`),
as `DatasetWriter` should write them: without a CRC, a flipped bit inside a value page is a
different number that no reader can tell from the real one.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from nanovla.data import EpisodeDataset
from nanovla.data.collect import CollectConfig, collect
from nanovla.errors import NanovlaError

INFO = "meta/info.json"
STATS = "meta/stats.json"
TASKS = "meta/tasks.parquet"
EPISODES = "meta/episodes/chunk-000/file-000.parquet"
DATA = "data/chunk-000/file-000.parquet"
CASE_SECONDS = 20
"""A single load taking longer than this is a hang."""
SCALE = float(os.environ.get("NANOVLA_FUZZ_SCALE", "1"))
"""Multiplies every test's example count; above 1 the examples are also drawn afresh (a
longer, random search: `NANOVLA_FUZZ_SCALE=10 pytest tests/test_fuzz_*.py`)."""
FUZZ = settings(
    deadline=None,
    database=None,
    derandomize=SCALE <= 1,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
"""Shared hypothesis settings: no deadline (CI machines vary), reproducible examples."""


# ---------------------------------------------------------------- shared machinery


@contextmanager
def no_hang(seconds: int = CASE_SECONDS) -> Iterator[None]:
    """Fail (TimeoutError) if the block runs longer than `seconds`: a hang is a failure too."""

    def alarm(signum: int, frame: Any) -> None:
        raise TimeoutError(f"a single fuzz case ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Tally:
    """Counts of one reader's fuzz cases; `report` prints and checks them."""

    reader: str
    counts: Counter

    def __init__(self, reader: str) -> None:
        self.reader, self.counts = reader, Counter()

    def refused(self, error: BaseException, *names: str) -> None:
        """Record an error; it must be a one-line NanovlaError naming one of `names`."""
        message = str(error)
        assert isinstance(error, NanovlaError), f"{type(error).__name__}: {message}"
        assert "\n" not in message, f"multi-line message: {message!r}"
        assert any(name in message for name in names), f"{message!r} names none of {names}"
        self.counts["refused"] += 1

    def loaded(self) -> None:
        self.counts["loaded"] += 1

    def report(self, expected: int) -> None:
        expected = scaled(expected)
        total = self.counts["loaded"] + self.counts["refused"]
        print(
            f"\nfuzz {self.reader}: {total} cases ({self.counts['loaded']} loaded, "
            f"{self.counts['refused']} refused, 0 unhandled)"
        )
        # hypothesis stops early only when it has tried every distinct example of a small space
        assert total >= min(expected, 40), f"only {total} of {expected} fuzz cases ran"


def scaled(examples: int) -> int:
    """`examples` times `SCALE` (the NANOVLA_FUZZ_SCALE environment variable)."""
    return max(1, int(examples * SCALE))


@dataclass(frozen=True)
class Corruption:
    """A byte-level mutation: positions are fractions of the file's length."""

    kind: str
    at: float
    size: float
    bits: tuple[float, ...]
    fill: bytes

    def apply(self, data: bytes) -> bytes:
        n = len(data)
        start = min(int(self.at * n), max(n - 1, 0))
        if self.kind == "truncate":
            return data[:start]
        if self.kind == "empty":
            return b""
        if self.kind == "flip":
            out = bytearray(data)
            for bit in self.bits:
                position = min(int(bit * n * 8), n * 8 - 1)
                out[position // 8] ^= 1 << (position % 8)
            return bytes(out)
        length = max(1, int(self.size * 64))
        if self.kind == "overwrite":
            fill = (self.fill * (length // max(len(self.fill), 1) + 1))[:length] or b"\0"
            return data[:start] + fill + data[start + len(fill) :]
        if self.kind == "zero":
            return data[:start] + b"\0" * length + data[start + length :]
        if self.kind == "drop":
            return data[:start] + data[start + length :]
        if self.kind == "duplicate":
            return data[: start + length] + data[start : start + length] + data[start + length :]
        raise AssertionError(self.kind)


fractions = st.floats(0.0, 1.0, exclude_max=True, allow_nan=False)
corruptions = st.builds(
    Corruption,
    kind=st.sampled_from(
        ["truncate", "flip", "flip", "flip", "overwrite", "zero", "drop", "duplicate", "empty"]
    ),  # fmt: skip
    at=fractions,
    size=fractions,
    bits=st.lists(fractions, min_size=1, max_size=4).map(tuple),
    fill=st.binary(min_size=1, max_size=16),
)
"""Truncations, 1-4 flipped bits, overwritten / zeroed / dropped / duplicated runs, empty."""

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from([0, -1, 1, 7, 2**63, "", "float32", "int64", "image", [7], [3], []]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
"""Any JSON value, with the ones most likely to fool a reader (sizes, dtype names) weighted in."""


def json_paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys / indices) inside a JSON document, the root excluded."""
    paths = []
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for key, value in items:
        paths.append((*prefix, key))
        paths += json_paths(value, (*prefix, key))
    return paths


@st.composite
def json_edits(draw: st.DrawFn, doc: Any) -> tuple[str, tuple, Any]:
    """(action, path, value): delete the entry at path, replace it, or add a key beside it."""
    paths = json_paths(doc)
    path = draw(st.sampled_from(paths))
    action = draw(st.sampled_from(["delete", "replace", "replace", "add"]))
    value = draw(json_values)
    if action == "add":
        value = (draw(st.text(min_size=1, max_size=6)), value)
    return action, path, value


def apply_json_edit(doc: Any, edit: tuple[str, tuple, Any]) -> Any:
    """A deep copy of `doc` with `edit` (from `json_edits`) applied."""
    doc = json.loads(json.dumps(doc))
    action, path, value = edit
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if action == "delete":
        del parent[path[-1]]
    elif action == "replace":
        parent[path[-1]] = value
    elif isinstance(parent, dict):
        parent.setdefault(*value)
    else:
        parent.append(value[1])
    return doc


def write_with_checksums(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path, write_page_checksum=True)


# ---------------------------------------------------------------- the dataset under test


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "reach"
    collect(CollectConfig(task="reach", episodes=3, num_envs=3, image_size=32, out=root,
                          progress=False))  # fmt: skip
    for path in root.rglob("*.parquet"):
        write_with_checksums(path, pq.read_table(path))
    return root


@pytest.fixture(scope="module")
def reference(pristine: Path) -> EpisodeDataset:
    return EpisodeDataset(pristine, progress=False)


class Workspace:
    """Fresh copies of the pristine dataset, one per fuzz case."""

    def __init__(self, pristine: Path, base: Path) -> None:
        self.pristine, self.base, self.count = pristine, base, 0

    def copy(self) -> Path:
        self.count += 1
        root = self.base / f"case{self.count}"
        shutil.copytree(self.pristine, root)
        return root

    def done(self, root: Path) -> None:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def workspace(pristine: Path, tmp_path: Path) -> Workspace:
    return Workspace(pristine, tmp_path)


def assert_same(dataset: EpisodeDataset, reference: EpisodeDataset, stats_file: Path) -> None:
    """A load that succeeded is the original dataset (stats: what stats.json now says)."""
    np.testing.assert_array_equal(dataset.images, reference.images)
    np.testing.assert_array_equal(dataset.states, reference.states)
    np.testing.assert_array_equal(dataset.actions, reference.actions)
    for name in ("episode_index", "frame_index", "task_index", "episode_bounds"):
        np.testing.assert_array_equal(getattr(dataset, name), getattr(reference, name))
    if reference.env_states is not None:
        np.testing.assert_array_equal(dataset.env_states, reference.env_states)
    assert dataset.tasks == reference.tasks and dataset.fps == reference.fps
    saved = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
    for key, feature in dataset.stats.items():
        for name, value in feature.items():
            if key in saved and name in saved[key]:
                np.testing.assert_array_equal(
                    value.reshape(-1), np.asarray(saved[key][name], np.float64).reshape(-1)
                )


def load_case(
    root: Path, reference: EpisodeDataset, tally: Tally, *names: str
) -> EpisodeDataset | None:
    """Load `root`; record a refusal (checked to name one of `names`) or check the load."""
    try:
        with no_hang():
            dataset = EpisodeDataset(root, progress=False)
    except TimeoutError:
        raise
    except Exception as error:  # checked: must be a one-line NanovlaError naming the file
        tally.refused(error, *names)
        return None
    assert_same(dataset, reference, root / STATS)
    tally.loaded()
    return dataset


# ---------------------------------------------------------------- byte-level corruption


@pytest.mark.parametrize(
    "relative, examples",
    [(INFO, 60), (STATS, 50), (TASKS, 50), (EPISODES, 60), (DATA, 80)],
    ids=["info.json", "stats.json", "tasks.parquet", "episodes.parquet", "data.parquet"],
)
def test_fuzz_corrupted_bytes(
    relative: str, examples: int, workspace: Workspace, reference: EpisodeDataset
) -> None:
    tally = Tally(f"{relative} (bytes)")

    @settings(FUZZ, max_examples=scaled(examples))
    @given(corruption=corruptions)
    def case(corruption: Corruption) -> None:
        root = workspace.copy()
        target = root / relative
        target.write_bytes(corruption.apply(target.read_bytes()))
        # The episode table's checks name the directory of its files ("meta/episodes: ...").
        also = ("meta/episodes",) if relative == EPISODES else ()
        load_case(root, reference, tally, relative, *also)
        workspace.done(root)

    case()
    tally.report(examples)


# ---------------------------------------------------------------- JSON structure


@pytest.mark.parametrize(
    "relative, examples", [(INFO, 80), (STATS, 60)], ids=["info.json", "stats.json"]
)
def test_fuzz_json_keys(
    relative: str, examples: int, workspace: Workspace, reference: EpisodeDataset, pristine: Path
) -> None:
    tally = Tally(f"{relative} (keys)")
    doc = json.loads((pristine / relative).read_text())

    @settings(FUZZ, max_examples=scaled(examples))
    @given(edit=json_edits(doc))
    def case(edit: tuple[str, tuple, Any]) -> None:
        root = workspace.copy()
        (root / relative).write_text(json.dumps(apply_json_edit(doc, edit)))
        # A changed declaration may be refused where a file disagrees with it: naming
        # info.json (or the disagreeing file under the dataset) is naming the cause.
        load_case(root, reference, tally, relative, "info.json", str(root))
        workspace.done(root)

    case()
    tally.report(examples)


# ---------------------------------------------------------------- parquet structure


def _column_strategies(table: pa.Table) -> st.SearchStrategy:
    names = table.column_names
    rows = len(table)
    row = st.integers(0, rows - 1)
    return st.one_of(
        st.tuples(st.just("drop_column"), st.sampled_from(names)),
        st.tuples(st.just("extra_column"), st.sampled_from(["extra", "task", "index2"])),
        st.tuples(st.just("retype"), st.sampled_from(names),
                  st.sampled_from(["string", "float64", "int32", "float32", "list", "bool"])),
        st.tuples(st.just("null"), st.sampled_from(names), row),
        st.tuples(st.just("drop_rows"), row, st.integers(1, 3)),
        st.tuples(st.just("duplicate_row"), row),
        st.tuples(st.just("swap_rows"), row, row),
        st.tuples(st.just("shift"), st.sampled_from(names), row,
                  st.integers(-3, 3).filter(bool)),
        st.tuples(st.just("width"), st.sampled_from(names), st.sampled_from([-1, 1, 4])),
        st.tuples(st.just("nan"), st.sampled_from(names), row,
                  st.sampled_from([float("nan"), float("inf")])),
        st.tuples(st.just("empty_table")),
    )  # fmt: skip


def _replace(table: pa.Table, name: str, column: pa.Array | pa.ChunkedArray) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, column)


def mutate_table(table: pa.Table, mutation: tuple) -> pa.Table:
    """`table` with one structural mutation (see `_column_strategies`) applied."""
    kind, *args = mutation
    metadata = table.schema.metadata
    if kind == "drop_column":
        table = table.drop_columns([args[0]])
    elif kind == "extra_column":
        table = table.append_column(args[0] + "_fuzz" * (args[0] in table.column_names),
                                    pa.array(np.zeros(len(table), np.int64)))  # fmt: skip
    elif kind == "retype":
        name, target = args
        column = table.column(name)
        values = column.to_pylist()
        if target == "string":
            new = pa.array([None if v is None else str(v) for v in values], pa.string())
        elif target == "list":
            new = pa.array([[v] if not isinstance(v, list) else v for v in values])
        elif target == "bool":
            new = pa.array([bool(v) if not isinstance(v, dict) else True for v in values])
        else:
            kind_type = getattr(pa, target)()
            try:
                if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
                    new = column.cast(pa.list_(kind_type), safe=False)
                else:
                    new = column.cast(kind_type, safe=False)
            except (pa.ArrowException, ValueError, TypeError):
                new = pa.array([str(v) for v in values])
        table = _replace(table, name, new)
    elif kind == "null":
        name, row = args
        values = table.column(name).to_pylist()
        values[row] = None
        table = _replace(table, name, pa.array(values, table.column(name).type))
    elif kind == "drop_rows":
        row, count = args
        table = pa.concat_tables([table.slice(0, row), table.slice(row + count)])
    elif kind == "duplicate_row":
        (row,) = args
        table = pa.concat_tables([table.slice(0, row + 1), table.slice(row)])
    elif kind == "swap_rows":
        a, b = args
        order = list(range(len(table)))
        order[a], order[b] = order[b], order[a]
        table = table.take(order)
    elif kind in ("shift", "nan"):
        name, row, delta = args
        column = table.column(name)
        values = column.to_pylist()
        value = values[row]
        if isinstance(value, bool) or value is None or isinstance(value, dict | str):
            return table.replace_schema_metadata(metadata)
        if isinstance(value, list):
            if not value or not isinstance(value[0], int | float):
                return table
            if kind == "nan" and isinstance(value[0], int):
                return table
            value = list(value)
            value[0] = delta if kind == "nan" else value[0] + delta
        elif kind == "nan" and isinstance(value, int):
            return table
        else:
            value = delta if kind == "nan" else value + delta
        values[row] = value
        table = _replace(table, name, pa.array(values, column.type))
    elif kind == "width":
        name, change = args
        column = table.column(name)
        if not pa.types.is_list(column.type):
            return table
        values = column.to_pylist()
        values = [v[:change] if change < 0 or not v else v + v[-1:] * change for v in values]
        table = _replace(table, name, pa.array(values, column.type))
    elif kind == "empty_table":
        table = table.slice(0, 0)
    return table.replace_schema_metadata(metadata)


@pytest.mark.parametrize(
    "relative, examples",
    [(TASKS, 50), (EPISODES, 80), (DATA, 100)],
    ids=["tasks.parquet", "episodes.parquet", "data.parquet"],
)
def test_fuzz_parquet_columns_and_rows(
    relative: str, examples: int, workspace: Workspace, reference: EpisodeDataset, pristine: Path
) -> None:
    tally = Tally(f"{relative} (columns, rows)")
    table = pq.read_table(pristine / relative)

    @settings(FUZZ, max_examples=scaled(examples))
    @given(mutation=_column_strategies(table))
    def case(mutation: tuple) -> None:
        root = workspace.copy()
        write_with_checksums(root / relative, mutate_table(table, mutation))
        # Rows that no longer tile the episode table may be named by the episodes file.
        load_case(root, reference, tally, relative, EPISODES, DATA, TASKS, "meta/episodes")
        workspace.done(root)

    case()
    tally.report(examples)


# ---------------------------------------------------------------- PNG frames


def _png(frame: np.ndarray, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


png_edits = st.one_of(
    st.tuples(st.just("bytes"), corruptions),
    st.tuples(st.just("mode"), st.sampled_from(["L", "RGBA", "P", "I;16", "1"])),
    st.tuples(st.just("size"), st.integers(1, 40), st.integers(1, 40)),
    st.tuples(st.just("garbage"), st.binary(max_size=64)),
    st.tuples(st.just("jpeg"), st.just(None)),
    st.tuples(
        st.just("missing"), st.sampled_from(["", "frame.png", "../outside.png", "/etc/hostname"])
    ),
)


def _edit_png(data: bytes, frame: np.ndarray, edit: tuple) -> tuple[bytes | None, str | None]:
    kind, arg, *rest = edit
    if kind == "bytes":
        return arg.apply(data), None
    if kind == "mode":
        return _png(frame, arg), None
    if kind == "size":
        resized = np.asarray(Image.fromarray(frame).resize((arg, rest[0])))
        return _png(resized), None
    if kind == "garbage":
        return arg, None
    if kind == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG")
        return buffer.getvalue(), None
    return None, arg or None  # no bytes: a path, possibly outside the dataset


class _Expected:
    """`reference` with frame `row` replaced (what a dataset holding another frame loads as)."""

    def __init__(self, reference: EpisodeDataset, row: int, frame: np.ndarray) -> None:
        self.__dict__.update(reference.__dict__)
        self.images = reference.images.copy()
        self.images[row] = frame


def _with_frame(reference: EpisodeDataset, row: int, frame: np.ndarray) -> Any:
    return _Expected(reference, row, frame)


def test_fuzz_png_frames(workspace: Workspace, reference: EpisodeDataset, pristine: Path) -> None:
    tally = Tally("PNG frames in data.parquet")
    table = pq.read_table(pristine / DATA)
    key = "observation.image"
    cells = table.column(key).to_pylist()
    examples = 60

    @settings(FUZZ, max_examples=scaled(examples))
    @given(row=st.integers(0, len(cells) - 1), edit=png_edits)
    def case(row: int, edit: tuple) -> None:
        root = workspace.copy()
        data, path = _edit_png(cells[row]["bytes"], reference.images[row], edit)
        edited = list(cells)
        edited[row] = {"bytes": data, "path": path}
        mutated = _replace(table, key, pa.array(edited, table.column(key).type))
        write_with_checksums(root / DATA, mutated.replace_schema_metadata(table.schema.metadata))
        expected = reference
        if edit[0] == "jpeg":  # a JPEG cell is a valid (lossy) frame: it loads as it decodes
            frame = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            expected = _with_frame(reference, row, frame)
        load_case(root, expected, tally, DATA)
        workspace.done(root)

    case()
    tally.report(examples)


# ---------------------------------------------------------------- info.json vs the files


def _edit_info(root: Path, change: Callable[[dict], None]) -> None:
    info = json.loads((root / INFO).read_text())
    change(info)
    (root / INFO).write_text(json.dumps(info))


def _refusal(root: Path) -> str:
    with pytest.raises(NanovlaError) as caught:
        EpisodeDataset(root, progress=False)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda i: i["features"]["action"].update(shape=[7]), ["action", "shape [7]", "3 values"]),
        (lambda i: i["features"]["observation.state"].update(shape=[2]), ["observation.state"]),
        (lambda i: i["features"]["action"].update(dtype="float64"), ["action", "float64"]),
        (lambda i: i["features"]["frame_index"].update(dtype="int32"), ["frame_index", "int32"]),
        (lambda i: i["features"]["observation.image"].update(shape=[16, 16, 3]),
         ["observation.image", "[16, 16, 3]"]),
        (lambda i: i.update(fps=i["fps"] * 2), ["fps", "timestamp"]),
        (lambda i: i.update(total_frames=i["total_frames"] + 1), ["total_frames"]),
        (lambda i: i.update(total_episodes=i["total_episodes"] - 1), ["total_episodes"]),
        (lambda i: i.update(total_tasks=i["total_tasks"] + 1), ["total_tasks"]),
        (lambda i: i["features"].update(extra={"dtype": "float32", "shape": [1], "names": None}),
         ["extra"]),
    ],
    ids=["action-shape-7", "state-shape", "action-dtype", "frame_index-dtype", "image-shape",
         "fps", "total_frames", "total_episodes", "total_tasks", "undeclared-column"],
)  # fmt: skip
def test_info_json_declarations_are_checked_against_the_files(
    pristine: Path, tmp_path: Path, change: Callable[[dict], None], words: list[str]
) -> None:
    root = tmp_path / "ds"
    shutil.copytree(pristine, root)
    _edit_info(root, change)
    message = _refusal(root)
    assert "meta/info.json" in message, message
    for word in words:
        assert word in message, message


def test_episode_ranges_that_overlap_or_exceed_the_data_name_the_episode(
    pristine: Path, tmp_path: Path
) -> None:
    table = pq.read_table(pristine / EPISODES)
    stops = table.column("dataset_to_index").to_pylist()
    starts = table.column("dataset_from_index").to_pylist()
    for name, edit in (
        ("overlap", lambda s, e: (s[:1] + [s[1] - 2] + s[2:], e)),
        ("exceed", lambda s, e: (s, e[:-1] + [e[-1] + 5])),
    ):
        root = tmp_path / name
        shutil.copytree(pristine, root)
        new_starts, new_stops = edit(starts, stops)
        lengths = [b - a for a, b in zip(new_starts, new_stops)]
        mutated = _replace(table, "dataset_from_index", pa.array(new_starts, pa.int64()))
        mutated = _replace(mutated, "dataset_to_index", pa.array(new_stops, pa.int64()))
        mutated = _replace(mutated, "length", pa.array(lengths, pa.int64()))
        pq.write_table(mutated, root / EPISODES)
        total = sum(lengths)
        _edit_info(root, lambda i, total=total: i.update(total_frames=total))
        message = _refusal(root)
        assert "episode" in message and ("meta/episodes" in message or DATA in message), message


@pytest.mark.parametrize("relative", [INFO, STATS])
def test_json_nested_too_deeply_is_one_error(pristine: Path, tmp_path: Path, relative: str) -> None:
    root = tmp_path / "ds"
    shutil.copytree(pristine, root)
    (root / relative).write_text("[" * 200_000 + "]" * 200_000)
    assert relative in _refusal(root)


def test_fuzz_memmap_cache_is_rebuilt_when_damaged(
    workspace: Workspace, reference: EpisodeDataset
) -> None:
    """The frame cache is ours, not the user's: a damaged one is rebuilt, never trusted."""
    tally, examples = Tally("frame cache (memmap .npy/.json)"), 30
    root = workspace.copy()
    EpisodeDataset(root, cache="memmap", progress=False)
    cache = root / "cache"
    originals = {p.name: p.read_bytes() for p in cache.iterdir()}

    @settings(FUZZ, max_examples=scaled(examples))
    @given(name=st.sampled_from(sorted(originals)), corruption=corruptions)
    def case(name: str, corruption: Corruption) -> None:
        for other, data in originals.items():
            (cache / other).write_bytes(data)
        (cache / name).write_bytes(corruption.apply(originals[name]))
        with no_hang():
            dataset = EpisodeDataset(root, cache="memmap", progress=False)
        if name.endswith(".npy"):
            np.testing.assert_array_equal(dataset.images, reference.images)
        tally.loaded()

    case()
    tally.report(examples)
