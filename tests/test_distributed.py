"""Multi-process training (DDP over gloo on CPU): ranks stay identical, 2 processes follow the
1-process loss curve at equal global batch, resume works, a dead rank stops the others, and the
loader's shards are the slices of one process's batch.

The runs are `tests/ddp_worker.py` (a tiny conv model, the real BatchLoader and Trainer) started
as one plain process or under torchrun with 2 processes; 8 steps, batch 8, one thread each.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nanovla.data import BatchLoader, EpisodeDataset, write_dataset
from nanovla.data.synthetic import synthetic_episodes
from nanovla.errors import InputError
from nanovla.train import distributed

WORKER = str(Path(__file__).with_name("ddp_worker.py"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
ENV.pop("NANOVLA_TEST_KILL_AT", None)
for _name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(_name, None)
LOSS_RTOL = 1e-5
"""2 processes vs 1: the per-step global-batch loss agrees to this relative tolerance (measured
differences ~1e-7: the mean of two half-batch gradients is the full-batch gradient up to float
rounding)"""
WEIGHT_ATOL = 1e-6
"""2 processes vs 1: final weights agree to this (measured ~5e-8 after 8 AdamW steps)"""


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp") / "ds"
    write_dataset(root, synthetic_episodes(12, lengths=(6, 10), image_size=12, seed=3), fps=10)
    return root


def _run(dataset: Path, out: Path, nproc: int, *args: str) -> subprocess.CompletedProcess:
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    command = [*launcher, WORKER, str(dataset), str(out), *args]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=180)


def _losses(out: Path) -> list[float]:
    lines = (out / "logs" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["train/loss"] for line in lines if "train/loss" in line]


@pytest.fixture(scope="module")
def runs(dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    for name, nproc in (("one", 1), ("two", 2)):
        result = _run(dataset_dir, root / name, nproc, "--steps", "8")
        assert result.returncode == 0, result.stderr[-3000:]
    return {"one": root / "one", "two": root / "two"}


def test_two_ranks_keep_identical_weights(runs: dict[str, Path]) -> None:
    rank0, rank1 = (load_file(str(runs["two"] / f"rank{r}.safetensors")) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"{key} differs between the ranks"


def test_two_processes_follow_the_single_process_run(runs: dict[str, Path]) -> None:
    one, two = _losses(runs["one"]), _losses(runs["two"])
    assert len(one) == len(two) == 8
    assert one != [one[0]] * 8  # the loss moves, so agreeing says something
    assert two == pytest.approx(one, rel=LOSS_RTOL)
    single = load_file(str(runs["one"] / "rank0.safetensors"))
    multi = load_file(str(runs["two"] / "rank0.safetensors"))
    for key in single:
        torch.testing.assert_close(multi[key], single[key], rtol=0, atol=WEIGHT_ATOL)


def test_rank_zero_alone_writes_logs_and_checkpoints(runs: dict[str, Path]) -> None:
    lines = (runs["two"] / "logs" / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines if "train/loss" in line]
    assert steps == list(range(1, 9))  # one record per step: a second writer would double them
    assert (runs["two"] / "checkpoints" / "last").exists()


def test_interrupted_two_process_run_resumes_exactly(
    dataset_dir: Path, runs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "resumed"
    first = _run(dataset_dir, out, 2, "--steps", "8", "--interrupt-at", "5")  # saves step 4
    assert first.returncode == 0, first.stderr[-3000:]
    again = _run(dataset_dir, out, 2, "--steps", "8", "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    straight = load_file(str(runs["two"] / "rank0.safetensors"))
    for rank in (0, 1):
        resumed = load_file(str(out / f"rank{rank}.safetensors"))
        for key in straight:
            assert torch.equal(resumed[key], straight[key]), f"rank {rank}: {key} differs"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("fault", "timeout_s", "rank1_code"),
    [("--die-at", "20", 3), ("--hang-at", "5", -signal.SIGKILL)],
    ids=["dead", "hung"],
)
def test_a_failed_rank_stops_the_other_with_a_message(
    dataset_dir: Path, tmp_path: Path, fault: str, timeout_s: str, rank1_code: int
) -> None:
    """Rank 1 exits (dead) or stops itself (hung: alive, silent) on its 3rd batch, with no
    torchrun to clean up: rank 0 stops with one line, at once or after the collective timeout."""
    env = {**ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    env.update({"WORLD_SIZE": "2", distributed.TIMEOUT_ENV: timeout_s})
    command = [sys.executable, WORKER, str(dataset_dir), str(tmp_path / "run"), fault, "3"]
    procs = [
        subprocess.Popen(
            command,
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for r in (0, 1)
    ]
    try:
        _, err0 = procs[0].communicate(timeout=120)
    finally:
        procs[1].kill()  # the hung one never ends by itself
        procs[1].communicate(timeout=30)
        procs[0].kill()
    assert procs[1].returncode == rank1_code
    assert procs[0].returncode == 2, err0[-3000:]
    assert "rank 0 of 2: another rank died or stopped answering" in err0
    assert "Traceback" not in err0


# ------------------------------------------------------------------ in-process pieces


def test_shards_are_the_slices_of_one_process_batch(dataset_dir: Path) -> None:
    dataset = EpisodeDataset(dataset_dir, progress=False)

    def loader() -> BatchLoader:
        return BatchLoader(dataset, 8, chunk=2, augment_shift=1, seed=4)

    whole = [loader().next_batch() for _ in range(1)][0]
    parts = []
    for rank in range(4):
        shard = loader()
        shard.set_shard(rank, 4)
        parts.append(shard.next_batch())
    for key, value in whole.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(torch.cat([part[key] for part in parts]), value), key
        else:
            assert sum((part[key] for part in parts), []) == value


def test_a_batch_that_does_not_split_evenly_is_refused(dataset_dir: Path) -> None:
    loader = BatchLoader(EpisodeDataset(dataset_dir, progress=False), 6, seed=0)
    with pytest.raises(InputError, match="batch size 6 cannot be split evenly over 4"):
        loader.set_shard(1, 4)


def test_single_process_helpers_and_nproc_limits() -> None:
    assert not distributed.is_distributed() and distributed.rank() == 0
    assert distributed.world_size() == 1 and distributed.is_main()
    assert distributed.init("cpu") is False  # no WORLD_SIZE: nothing to join
    distributed.wait_for_main()  # a no-op alone
    cores = distributed.available_cores()
    distributed.check_nproc(cores)
    with pytest.raises(InputError, match=f"--nproc {cores + 1} is more than the {cores} CPU"):
        distributed.check_nproc(cores + 1)
    argv = ["--out", "r", "--nproc", "2", "--nproc=3", "--seed", "1"]
    assert distributed.strip_option(argv, "--nproc") == ["--out", "r", "--seed", "1"]


def test_nproc_beyond_the_cores_is_refused_by_name() -> None:
    from nanovla.pipeline import main

    too_many = distributed.available_cores() + 1
    with pytest.raises(InputError, match=f"--nproc {too_many} is more than the"):
        main(["--nproc", str(too_many), "--train.device", "cpu"])


@pytest.mark.slow
def test_nanovla_train_nproc_2_runs_end_to_end(tmp_path: Path) -> None:
    """`nanovla train --nproc 2` (torchrun underneath): rank 0 alone logs, saves, evaluates."""
    from cli_run import nanovla

    result = nanovla(
        "train", "--out", "run", "--nproc", "2", "--episodes", "12", "--collect-envs", "6",
        "--batch-size", "16", "--train.steps", "4", "--train.warmup-steps", "1",
        "--train.log-every", "1", "--train.num-threads", "1", "--no-progress",
        "--eval.episodes", "1", "--eval.gifs", "0", "--tasks", "reach", "--eval.splits", "seen",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    assert json.loads((run / "train_command.json").read_text())["nproc"] == 2
    assert result.stdout.count("6 steps") == 0 and result.stdout.count("4 steps -> run") == 2
    lines = (run / "logs" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines if "train/loss" in line] == [1, 2, 3, 4]
    assert (run / "eval.json").is_file()


# ------------------------------------------------------------------ evaluation over processes


def _tiny_policy():
    from nanovla.models.policy import Policy, PolicyConfig
    from nanovla.models.text.tokenizer import Tokenizer

    torch.manual_seed(0)
    config = PolicyConfig(image_size=32, state_dim=4, action_dim=3)
    texts = ["go to the red box", "push the ball", "빨간 상자로 가"]
    stats = {
        "observation.image": {"mean": [[[0.5]], [[0.4]], [[0.3]]], "std": [[[0.2]]] * 3},
        "observation.state": {"mean": [0.5] * 4, "std": [0.3] * 4},
        "action": {"min": [-1.0] * 3, "max": [1.0] * 3},
    }
    tokenizer = Tokenizer.from_texts(texts, level=config.tokenizer_level)
    return Policy(config, dataset_stats=stats, tokenizer=tokenizer).eval()


def test_parallel_evaluation_equals_serial(tmp_path: Path) -> None:
    """Same seeds, one thread: 2 worker processes give the same eval.json and the same rollout
    GIFs (every frame of every seen episode) as this process."""
    from nanovla.eval import EvalConfig, evaluate

    policy = _tiny_policy()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    results, gifs = [], []
    try:
        for workers in (1, 2):
            config = EvalConfig(episodes=2, splits=("seen", "ko"), gifs=2, workers=workers)
            videos = tmp_path / f"videos{workers}"
            result = evaluate(policy, ("reach", "push"), config, 32, videos, progress=False)
            results.append({k: v for k, v in result.items() if k != "videos"})
            gifs.append({path.name: path.read_bytes() for path in sorted(videos.iterdir())})
    finally:
        torch.set_num_threads(threads)
    assert results[0] == results[1]
    assert len(gifs[0]) == 4 and gifs[0] == gifs[1]
    reach = [data for name, data in gifs[0].items() if name.startswith("reach")]
    assert reach[0] != reach[1]  # the episodes differ, so equal GIFs say something


def test_sharded_collection_is_the_same_on_one_or_two_workers(tmp_path: Path) -> None:
    """--shards 2: the dataset depends on the shards, not on how many processes record them."""
    from nanovla.data.collect import CollectConfig, collect

    datasets = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        config = CollectConfig(
            task="reach,push", episodes=5, out=out, num_envs=3, image_size=32, shards=2,
            workers=workers, progress=False,
        )  # fmt: skip
        datasets.append(EpisodeDataset(collect(config), progress=False))
    one, two = datasets
    assert one.num_episodes == two.num_episodes == 5
    assert one.tasks == two.tasks
    for name in ("images", "states", "actions", "episode_bounds"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    assert one.info["nanovla"]["shards"] == 2
    assert len(set(one.tasks)) > 1  # the shards hold different scenes and instructions
