"""Evaluation spread over processes: the (split, family) batches of `evaluate` run in a pool.

Every batch of episodes (`run_episodes`: one family, one instruction split, its own seeded
world) depends only on its arguments and the policy's weights, never on the batches before it,
so batches can run anywhere in any order. `map_rollouts(policy, calls, workers)` hands them to a
`torch.multiprocessing` pool of `workers` processes (spawn start method: no forked OpenMP
state, each worker one torch thread) and yields the results in the order of `calls`, so
`evaluate` builds the same eval.json as in one process. Equal results need equal arithmetic: a
worker runs with one intra-op thread, so a one-process evaluation with `torch.set_num_threads(1)`
gives bit-identical actions, frames and successes (tests/test_distributed.py checks it).

The policy travels as files, not as a pickle: it is written once with `save_pretrained` into a
temporary directory and every worker rebuilds it with its class's `from_pretrained` (a policy
without both, e.g. a scripted actor, is evaluated in this process). Only the calls' plain
arguments and the results' numpy arrays cross the process boundary.

When it pays: a worker costs a process start and a policy load (a few seconds), and on 2 cores
two single-threaded workers compete with nothing else only when training is not running; the
pipeline's final evaluation (hundreds of episodes over 6 splits x 4 families) is where it helps.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Iterator
from typing import Any

from nanovla.eval.rollout import ActsOnObservations, RolloutResult, run_episodes
from nanovla.progress import note

_worker_policy: Any = None  # the policy of this worker process, built by `_init_worker`


def can_ship(policy: Any) -> bool:
    """Whether `policy` can be rebuilt in another process (`save_pretrained` + `from_pretrained`)."""
    return callable(getattr(policy, "save_pretrained", None)) and callable(
        getattr(type(policy), "from_pretrained", None)
    )


def _init_worker(module: str, qualname: str, directory: str) -> None:
    global _worker_policy
    import torch  # here, not at the top: `nanovla collect` starts without torch

    torch.set_num_threads(1)
    cls: Any = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    _worker_policy = cls.from_pretrained(directory)
    eval_mode = getattr(_worker_policy, "eval", None)
    if callable(eval_mode):
        eval_mode()


def _run_call(call: dict[str, Any]) -> RolloutResult:
    return run_episodes(_worker_policy, **call)


def map_rollouts(
    policy: ActsOnObservations, calls: list[dict[str, Any]], workers: int = 1
) -> Iterator[RolloutResult]:
    """`run_episodes(policy, **call)` for every call, in order; over `workers` processes when
    `workers` > 1 and the policy can be shipped (see the module docstring), else here."""
    workers = min(workers, len(calls))
    if workers <= 1 or not can_ship(policy):
        if workers > 1:
            note(f"eval: {type(policy).__name__} has no save/from_pretrained: one process")
        for call in calls:
            yield run_episodes(policy, **call)
        return
    import torch.multiprocessing

    cls = type(policy)
    context = torch.multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="nanovla-eval-") as directory:
        policy.save_pretrained(directory)  # type: ignore[attr-defined]
        initargs = (cls.__module__, cls.__qualname__, directory)
        with context.Pool(workers, initializer=_init_worker, initargs=initargs) as pool:
            yield from pool.imap(_run_call, calls)
