"""Fuzzed checkpoints: config.json, model.safetensors, tokenizer.json, the training state,
run.json and train_command.json either load right or raise one line naming the file.

The same rules as `test_fuzz_dataset.py`: each hypothesis example mutates one file of a fresh
copy (bytes: truncations, flipped bits, overwritten / dropped runs; JSON: keys deleted,
retyped, added; safetensors: its JSON header edited the same way), then the real reader runs:
`Policy.from_pretrained`, `load_checkpoint_dir`, `load_training_state` and a resuming
`Trainer`, `RunRecord.load`, `nanovla.pipeline.load_command`. A load must give the original
weights and tokenizer (config.json, run.json and train_command.json may be edited by hand, so
there a load is what the file says); anything else must be a one-line `NanovlaError` naming
the file. Each test prints `fuzz <reader>: N cases (...)` (see it with `-s`).
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fuzz_dataset import (
    FUZZ,
    Corruption,
    Tally,
    apply_json_edit,
    corruptions,
    json_edits,
    scaled,
)
from test_fuzz_dataset import no_hang as _no_hang
from test_policy import make_policy
from test_train_engine import ToyConfig, ToyLoader, ToyModel, tiny_config

from nanovla.codec import to_json
from nanovla.constants import (
    CHECKPOINTS_DIR,
    COMMAND_FILE,
    LAST_LINK,
    PRETRAINED_DIR,
    STEP_FILE,
    TRAINING_STATE_DIR,
)
from nanovla.errors import NanovlaError
from nanovla.models.policy import Policy
from nanovla.pipeline import TrainCommand, load_command
from nanovla.train import Trainer, load_checkpoint_dir
from nanovla.train.run_record import RunRecord
from nanovla.train.state import MANIFEST_KEY, load_training_state

# ---------------------------------------------------------------- helpers


def _header_edit(data: bytes, edit: tuple[str, tuple, Any]) -> bytes:
    """A safetensors file with its JSON header edited (`json_edits`), the data kept."""
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    text = json.dumps(apply_json_edit(header, edit)).encode()
    return struct.pack("<Q", len(text)) + text + data[8 + size :]


def _header(data: bytes) -> dict:
    (size,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + size])


def _refuse_or(call: Any, tally: Tally, *names: str) -> Any:
    """`call()`; a refusal is recorded (and checked to name one of `names`), else its value."""
    try:
        with _no_hang():
            return call()
    except TimeoutError:
        raise
    except Exception as error:  # checked: must be a one-line NanovlaError naming the file
        tally.refused(error, *names)
        return None


def _copy(source: Path, base: Path, counter: list[int]) -> Path:
    counter[0] += 1
    target = base / f"case{counter[0]}"
    shutil.copytree(source, target, symlinks=True)
    return target


# ---------------------------------------------------------------- a policy checkpoint


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fuzz_policy") / "pretrained_model"
    make_policy(seed=1).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def policy_reference(policy_dir: Path) -> Policy:
    return Policy.from_pretrained(policy_dir)


def _same_policy(loaded: Policy, reference: Policy) -> None:
    expected = reference.state_dict()
    got = loaded.state_dict()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key
    assert loaded.tokenizer == reference.tokenizer


POLICY_FILES = [("config.json", 60), ("model.safetensors", 80), ("tokenizer.json", 50)]


@pytest.mark.parametrize("name, examples", POLICY_FILES, ids=[n for n, _ in POLICY_FILES])
def test_fuzz_policy_files_bytes(
    name: str, examples: int, policy_dir: Path, policy_reference: Policy, tmp_path: Path
) -> None:
    tally, counter = Tally(f"{name} (bytes, Policy.from_pretrained)"), [0]

    @settings(FUZZ, max_examples=scaled(examples))
    @given(corruption=corruptions)
    def case(corruption: Corruption) -> None:
        directory = _copy(policy_dir, tmp_path, counter)
        target = directory / name
        target.write_bytes(corruption.apply(target.read_bytes()))
        loaded = _refuse_or(lambda: Policy.from_pretrained(directory), tally, name)
        if loaded is not None:
            _same_policy(loaded, policy_reference)
            tally.loaded()
        shutil.rmtree(directory)

    case()
    tally.report(examples)


@pytest.mark.parametrize(
    "name, examples",
    [("config.json", 80), ("model.safetensors", 60), ("tokenizer.json", 50)],
    ids=["config.json", "model.safetensors-header", "tokenizer.json"],
)
def test_fuzz_policy_files_keys(
    name: str, examples: int, policy_dir: Path, policy_reference: Policy, tmp_path: Path
) -> None:
    tally, counter = Tally(f"{name} (keys, Policy.from_pretrained)"), [0]
    original = (policy_dir / name).read_bytes()
    doc = _header(original) if name.endswith(".safetensors") else json.loads(original)

    @settings(FUZZ, max_examples=scaled(examples))
    @given(edit=json_edits(doc))
    def case(edit: tuple[str, tuple, Any]) -> None:
        directory = _copy(policy_dir, tmp_path, counter)
        target = directory / name
        if name.endswith(".safetensors"):
            target.write_bytes(_header_edit(original, edit))
        else:
            target.write_text(json.dumps(apply_json_edit(doc, edit)))
        # A config edit that no longer fits the weights is refused naming both files.
        loaded = _refuse_or(lambda: Policy.from_pretrained(directory), tally, name)
        if loaded is not None:
            if name == "config.json":  # hand edits of the config are allowed: weights intact
                expected = policy_reference.state_dict()
                assert all(torch.equal(loaded.state_dict()[k], v) for k, v in expected.items())
            else:
                _same_policy(loaded, policy_reference)
            tally.loaded()
        shutil.rmtree(directory)

    case()
    tally.report(examples)


def test_fuzz_load_checkpoint_dir(
    policy_dir: Path, policy_reference: Policy, tmp_path: Path
) -> None:
    """The engine's reader of a checkpoint's model (resume): config dict + verified weights."""
    tally, counter, examples = (
        Tally("load_checkpoint_dir (config.json, model.safetensors)"),
        [0],
        60,
    )
    expected = policy_reference.state_dict()

    @settings(FUZZ, max_examples=scaled(examples))
    @given(name=st.sampled_from(["config.json", "model.safetensors"]), corruption=corruptions)
    def case(name: str, corruption: Corruption) -> None:
        directory = _copy(policy_dir, tmp_path, counter)
        target = directory / name
        target.write_bytes(corruption.apply(target.read_bytes()))
        loaded = _refuse_or(lambda: load_checkpoint_dir(directory), tally, name)
        if loaded is not None:
            config, weights = loaded
            assert isinstance(config, dict) and weights.keys() == expected.keys()
            assert all(torch.equal(weights[k], v) for k, v in expected.items())
            tally.loaded()
        shutil.rmtree(directory)

    case()
    tally.report(examples)


# ---------------------------------------------------------------- the training state


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fuzz_run") / "run"
    Trainer(ToyModel(ToyConfig()), ToyLoader(), tiny_config(), out).fit()
    return out


STATE_FILES = [
    "training_step.json",
    "optimizer_state.json",
    "optimizer_state.safetensors",
    "scheduler_state.json",
    "rng_state.json",
    "rng_state.safetensors",
    "loader_state.json",
]


def _state_dir(out: Path) -> Path:
    return out / CHECKPOINTS_DIR / LAST_LINK / TRAINING_STATE_DIR


def _same_state(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if hasattr(a, "shape") and hasattr(a, "dtype"):  # numpy arrays
        return type(a) is type(b) and a.dtype == b.dtype and (a == b).all()
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
        )
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same_state, a, b))
    return type(a) is type(b) and a == b


def _add_manifest(directory: Path) -> None:
    """What `save_training_state` should write: the SHA-256 of every file in training_step.json."""
    import hashlib

    step_file = directory / STEP_FILE
    record = json.loads(step_file.read_text())
    record[MANIFEST_KEY] = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.name != STEP_FILE
    }
    step_file.write_text(json.dumps(record))


def test_fuzz_training_state_bytes_with_manifest(run_dir: Path, tmp_path: Path) -> None:
    """Flipped bits anywhere in a training state whose training_step.json lists checksums."""
    tally, counter, examples = Tally("training state (bytes, with sha256 manifest)"), [0], 80
    base = _copy(run_dir, tmp_path, counter)
    _add_manifest(_state_dir(base))
    reference = load_training_state(_state_dir(base))

    @settings(FUZZ, max_examples=scaled(examples))
    @given(name=st.sampled_from(STATE_FILES), corruption=corruptions)
    def case(name: str, corruption: Corruption) -> None:
        out = _copy(base, tmp_path, counter)
        target = _state_dir(out) / name
        target.write_bytes(corruption.apply(target.read_bytes()))
        state = _refuse_or(lambda: load_training_state(_state_dir(out)), tally, name)
        if state is not None:
            assert _same_state(state, reference)
            tally.loaded()
        shutil.rmtree(out)

    case()
    tally.report(examples)


ENGINE_UNGUARDED = ("scheduler_state.json",)
"""State files whose content the engine hands to torch unguarded on resume (`Trainer._resume`
calls `scheduler.load_state_dict` outside a try): a deleted `_schedulers` key is a bare
KeyError there. Only the reader is fuzzed for these until the engine wraps that call."""


def test_fuzz_training_state_structure_on_resume(run_dir: Path, tmp_path: Path) -> None:
    """Keys of each state file deleted / retyped / added (and the safetensors headers edited),
    as today's writer writes them (no manifest): read by `load_training_state`, then (when it
    accepts them) by a resuming Trainer."""
    tally, counter, examples = Tally("training state (keys, Trainer resume)"), [0], 80
    docs = {}
    for name in STATE_FILES:
        data = (_state_dir(run_dir) / name).read_bytes()
        docs[name] = _header(data) if name.endswith(".safetensors") else json.loads(data)

    @st.composite
    def edits(draw: st.DrawFn) -> tuple[str, tuple]:
        name = draw(st.sampled_from(STATE_FILES))
        return name, draw(json_edits(docs[name]))

    @settings(FUZZ, max_examples=scaled(examples))
    @given(choice=edits())
    def case(choice: tuple[str, tuple]) -> None:
        name, edit = choice
        out = _copy(run_dir, tmp_path, counter)
        target = _state_dir(out) / name
        if name.endswith(".safetensors"):
            target.write_bytes(_header_edit(target.read_bytes(), edit))
        else:
            target.write_text(json.dumps(apply_json_edit(docs[name], edit)))
        state = _refuse_or(lambda: load_training_state(_state_dir(out)), tally, name)
        if state is not None:
            if name in ENGINE_UNGUARDED:
                tally.loaded()  # read fine; see ENGINE_UNGUARDED for what the engine does next
            else:
                trainer = _refuse_or(
                    lambda: Trainer(
                        ToyModel(ToyConfig()), ToyLoader(), tiny_config(), out, resume=True
                    ),
                    tally,
                    name,
                )
                if trainer is not None:
                    tally.loaded()
        shutil.rmtree(out)

    case()
    tally.report(examples)


# ---------------------------------------------------------------- run.json, train_command.json


@pytest.fixture(scope="module")
def record_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fuzz_record") / PRETRAINED_DIR
    RunRecord(("reach", "push"), 64, "train+ko", "data/x", 120, 3, 4).save(directory)
    return directory


@pytest.mark.parametrize("mode, examples", [("bytes", 50), ("keys", 60)])
def test_fuzz_run_record(mode: str, examples: int, record_dir: Path, tmp_path: Path) -> None:
    tally, counter = Tally(f"run.json ({mode}, RunRecord.load)"), [0]
    doc = json.loads((record_dir / "run.json").read_text())
    strategy = corruptions if mode == "bytes" else json_edits(doc)

    @settings(FUZZ, max_examples=scaled(examples))
    @given(change=strategy)
    def case(change: Any) -> None:
        directory = _copy(record_dir, tmp_path, counter)
        target = directory / "run.json"
        if mode == "bytes":
            target.write_bytes(change.apply(target.read_bytes()))
        else:
            target.write_text(json.dumps(apply_json_edit(doc, change)))
        record = _refuse_or(lambda: RunRecord.load(directory), tally, "run.json")
        if record is not None:
            assert isinstance(record, RunRecord)
            assert to_json(record) == {**to_json(record), **json.loads(target.read_text())}
            tally.loaded()
        shutil.rmtree(directory)

    case()
    tally.report(examples)


@pytest.fixture(scope="module")
def command_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fuzz_command") / "run"
    out.mkdir()
    saved = to_json(TrainCommand(out=out, tasks=("reach",), episodes=12))
    saved["resume"] = False
    (out / COMMAND_FILE).write_text(json.dumps(saved, indent=2))
    return out


@pytest.mark.parametrize("mode, examples", [("bytes", 50), ("keys", 80)])
def test_fuzz_train_command(mode: str, examples: int, command_dir: Path, tmp_path: Path) -> None:
    tally, counter = Tally(f"train_command.json ({mode}, load_command)"), [0]
    doc = json.loads((command_dir / COMMAND_FILE).read_text())
    strategy = corruptions if mode == "bytes" else json_edits(doc)

    @settings(FUZZ, max_examples=scaled(examples))
    @given(change=strategy)
    def case(change: Any) -> None:
        out = _copy(command_dir, tmp_path, counter)
        target = out / COMMAND_FILE
        if mode == "bytes":
            target.write_bytes(change.apply(target.read_bytes()))
        else:
            target.write_text(json.dumps(apply_json_edit(doc, change)))
        command = _refuse_or(lambda: load_command(out), tally, COMMAND_FILE)
        if command is not None:
            assert isinstance(command, TrainCommand) and command.out == out and command.resume
            tally.loaded()
        shutil.rmtree(out)

    case()
    tally.report(examples)


def test_policy_weights_carry_checksums_of_tensors_and_tokenizer(policy_dir: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(policy_dir / "model.safetensors"), framework="pt") as file:
        metadata = file.metadata()
    assert len(metadata["nanovla.sha256"]) == 64 and len(metadata["nanovla.tokenizer_sha256"]) == 64


def test_a_tokenizer_from_another_checkpoint_is_refused(policy_dir: Path, tmp_path: Path) -> None:
    directory = tmp_path / "ckpt"
    shutil.copytree(policy_dir, directory)
    other = json.loads((directory / "tokenizer.json").read_text())
    other["vocab"][2], other["vocab"][3] = other["vocab"][3], other["vocab"][2]
    (directory / "tokenizer.json").write_text(json.dumps(other))
    with pytest.raises(NanovlaError, match=r"tokenizer.json: not the tokenizer these weights"):
        Policy.from_pretrained(directory)


def test_a_bad_resume_names_the_file_not_a_library(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(run_dir, out, symlinks=True)
    rng = _state_dir(out) / "rng_state.json"
    state = json.loads(rng.read_text())
    state["python"] = {"__tuple__": [3, {"__tuple__": [1, 2]}, None]}
    rng.write_text(json.dumps(state))
    with pytest.raises(NanovlaError, match=r"rng_state.json: content does not match its SHA-256"):
        Trainer(ToyModel(ToyConfig()), ToyLoader(), tiny_config(), out, resume=True)
    step_file = _state_dir(out) / "training_step.json"  # a hand edit without the digests:
    step_file.write_text(json.dumps({"step": json.loads(step_file.read_text())["step"]}))
    with pytest.raises(NanovlaError, match=r"rng_state.json: 'python' is not a restorable"):
        Trainer(ToyModel(ToyConfig()), ToyLoader(), tiny_config(), out, resume=True)


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json"])
def test_policy_json_nested_too_deeply_is_one_error(
    policy_dir: Path, tmp_path: Path, name: str
) -> None:
    directory = tmp_path / "ckpt"
    shutil.copytree(policy_dir, directory)
    (directory / name).write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(NanovlaError, match=name):
        Policy.from_pretrained(directory)


def test_state_and_record_json_nested_too_deeply_is_one_error(
    run_dir: Path, record_dir: Path, tmp_path: Path
) -> None:
    deep = "[" * 200_000 + "]" * 200_000
    out = tmp_path / "run"
    shutil.copytree(run_dir, out, symlinks=True)
    (_state_dir(out) / "optimizer_state.json").write_text(deep)
    with pytest.raises(NanovlaError, match="optimizer_state.json"):
        load_training_state(_state_dir(out))
    record = tmp_path / "record"
    shutil.copytree(record_dir, record)
    (record / "run.json").write_text(deep)
    with pytest.raises(NanovlaError, match="run.json"):
        RunRecord.load(record)
