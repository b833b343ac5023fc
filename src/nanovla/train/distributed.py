"""Multi-process training on torch.distributed: set-up, tear-down, rank helpers, a launcher.

How a run becomes N processes (data parallelism, as PyTorch's DDP tutorial and nanoGPT do it):

    torchrun --standalone --nproc-per-node N -m nanovla train ...   # or: nanovla train --nproc N

torchrun starts N copies of the command with `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`
and `MASTER_PORT` set. `init()` joins them into one process group (gloo on CPU, NCCL on CUDA);
the engine then wraps the model in `DistributedDataParallel`, which all-reduces (averages) the
gradients during `backward()`, so every rank applies the same update and the weights stay
identical. The loader gives rank r the r-th slice of the batch one process would draw
(`BatchLoader.set_shard`): the global batch, the data order and the augmentation offsets are
those of the single-process run, so N processes follow the single-process loss curve (up to
float rounding and BatchNorm, whose statistics are per rank on CPU: torch has no CPU
SyncBatchNorm; on CUDA the engine converts BatchNorm to SyncBatchNorm). Rank 0 alone logs,
evaluates and writes checkpoints; the others wait for it at `wait_for_main()`.

One machine: `MASTER_ADDR` defaults to 127.0.0.1 and `GLOO_SOCKET_IFNAME` to `lo` (the
loopback interface), so gloo never goes looking for a network interface; set them yourself
for several machines.

A rank that dies or hangs: every collective of the main process group has a timeout
(`NANOVLA_DIST_TIMEOUT` seconds, default 60, instead of torch's 30 minutes), so the other ranks
raise `RankFailure` (one line from the CLI) within a minute; a rank that exits closes its
sockets and the others notice at their next collective, usually at once. Under torchrun the
agent also stops the remaining ranks when one fails. Waiting for rank 0's own work
(evaluation, checkpoint writing, recording demonstrations) uses a second gloo group with a long
timeout (`NANOVLA_DIST_WAIT`, default 6 h), so a slow evaluation is not mistaken for a dead rank.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from nanovla.errors import InputError, NanovlaError

TIMEOUT_ENV = "NANOVLA_DIST_TIMEOUT"
"""seconds a collective of the training process group may wait before it fails"""
DEFAULT_TIMEOUT_S = 60.0
WAIT_ENV = "NANOVLA_DIST_WAIT"
"""seconds the other ranks wait for rank 0's own work (evaluation, checkpoints, collection)"""
DEFAULT_WAIT_S = 6 * 3600.0

_wait_group: Any = None  # gloo group with the long timeout, for `wait_for_main`


class RankFailure(NanovlaError, RuntimeError):
    """Another rank died or stopped answering: this rank stops too (the message says which)."""


def is_distributed() -> bool:
    """True inside an initialized process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Processes in the group (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that logs, evaluates and saves."""
    return rank() == 0


def launched_world_size() -> int:
    """`WORLD_SIZE` as torchrun set it (1 when this process was not started by a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _seconds(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise InputError(f"{name}={value!r}: must be a number of seconds") from None
    if seconds <= 0:
        raise InputError(f"{name}={value!r}: must be > 0")
    return seconds


def init(device_type: str = "cpu") -> bool:
    """Join the process group torchrun describes in the environment; True when this call did.

    A no-op (False) for a single process or when a group already exists. gloo on CPU, NCCL on
    CUDA (each rank on GPU `LOCAL_RANK`). See the module docstring for the defaults and timeouts.
    """
    global _wait_group
    if launched_world_size() <= 1 or dist.is_initialized():
        return False
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    timeout = timedelta(seconds=_seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        dist.init_process_group(backend, timeout=timeout)
    except (RuntimeError, ValueError) as error:
        raise RankFailure(f"could not join the process group ({_first_line(error)})") from error
    wait = timedelta(seconds=_seconds(WAIT_ENV, DEFAULT_WAIT_S))
    _wait_group = dist.new_group(backend="gloo", timeout=wait)
    return True


def teardown() -> None:
    """Leave the process group (if any)."""
    global _wait_group
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _wait_group = None


@contextlib.contextmanager
def session(device_type: str = "cpu") -> Iterator[None]:
    """`init()` on entry (when torchrun started this process), `teardown()` on exit."""
    started = init(device_type)
    try:
        yield
    finally:
        if started:
            teardown()


def wait_for_main() -> None:
    """Every rank waits here until all have arrived (rank 0 after its own work); a no-op alone."""
    if not is_distributed():
        return
    try:
        dist.barrier(group=_wait_group)
    except RuntimeError as error:
        raise failure(error) from error


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. records the demonstrations), the others after it."""
    if not is_main():
        wait_for_main()
    yield
    if is_main():
        wait_for_main()


def failure(error: BaseException) -> RankFailure:
    """A collective's error as the one-line `RankFailure` this rank stops with."""
    return RankFailure(
        f"rank {rank()} of {world_size()}: another rank died or stopped answering "
        f"({_first_line(error)}); this rank stops too (see the other ranks' output for why)"
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_nproc(nproc: int, device_type: str = "cpu") -> None:
    """Refuse `--nproc` values that cannot work here (naming the option)."""
    if nproc < 1:
        raise InputError(f"--nproc must be >= 1, got {nproc}")
    if device_type == "cuda":
        gpus = torch.cuda.device_count()
        if nproc > gpus:
            raise InputError(f"--nproc {nproc} is more than the {gpus} CUDA device(s) torch sees")
        return
    cores = available_cores()
    if nproc > cores:
        raise InputError(f"--nproc {nproc} is more than the {cores} CPU core(s) available here")


def device_type(device: str) -> str:
    """`cpu` | `cuda` | `auto` (a `TrainConfig.device`) -> the device type the run will use."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def launch(nproc: int, module_argv: list[str]) -> int:
    """Run `python -m torch.distributed.run --standalone --nproc-per-node N -m ARGV` (what
    `--nproc N` does); returns its exit status. torchrun stops the other ranks when one fails."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={nproc}", "-m", *module_argv,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run(command, env=env, check=False).returncode


def strip_option(argv: list[str], name: str) -> list[str]:
    """`argv` without `--name VALUE` / `--name=VALUE` (torchrun would read `--nproc` as an
    abbreviation of its own `--nproc-per-node`, so the ranks get the command without it)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


# ------------------------------------------------------------ what the engine calls


def is_comm_error(error: BaseException) -> bool:
    """Whether `error` came out of a collective (a lost peer, a timeout), not out of a bug."""
    if isinstance(error, RankFailure):
        return False  # already the one-line message
    if isinstance(error, getattr(dist, "DistError", ())):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        mark in text for mark in ("gloo", "NCCL", "Connection closed", "Timed out", "timed out")
    )


def wrap_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module | None:
    """`DistributedDataParallel(model)` inside a process group (None alone). On CUDA, BatchNorm
    layers become SyncBatchNorm first (batch statistics over the global batch); on CPU they keep
    per-rank statistics (torch has no CPU SyncBatchNorm)."""
    if not is_distributed():
        return None
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index or 0])
    return DistributedDataParallel(model)


def cuda_device() -> torch.device:
    """The GPU of this rank (`LOCAL_RANK`) inside a process group, else the current one."""
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if is_distributed() else 0)


def shard_loader(loader: Any) -> None:
    """Give this rank its slice of every batch (`loader.set_shard(rank, world_size)`)."""
    if not is_distributed():
        return
    set_shard = getattr(loader, "set_shard", None)
    if set_shard is None:
        raise InputError(
            f"{type(loader).__name__} has no set_shard(rank, world_size): it cannot split "
            "batches over ranks (nanovla.data.BatchLoader can)"
        )
    set_shard(rank(), world_size())


def mean_over_ranks(values: list[torch.Tensor]) -> list[torch.Tensor]:
    """The mean of each 0-d tensor over all ranks (one all-reduce; the logged loss is that of
    the global batch)."""
    if not is_distributed() or not values:
        return values
    stacked = torch.stack([v.detach().float() for v in values])
    dist.all_reduce(stacked)
    return list(stacked / world_size())


class SilentLogger:
    """What a rank other than 0 logs to: nothing (rank 0 alone writes logs)."""

    def __init__(self, path: Any) -> None:
        self.path = path

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Drop the record."""

    def close(self) -> None:
        """Nothing to close."""
