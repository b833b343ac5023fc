"""nanovla.data: LeRobotDataset v3.0 datasets — write, load, batch, collect.

```python
from nanovla.data import EpisodeDataset, BatchLoader
dataset = EpisodeDataset("data/suite")            # frames decoded once to uint8
loader = BatchLoader(dataset, batch_size=64, chunk=4, augment_shift=4)
batch = loader.next_batch()                       # dict of tensors, see nanovla.data.loader
```
`nanovla collect` (the rollout loop in nanovla.data.recording, the options and the writer
around it in nanovla.data.collect, the command in nanovla.eval.collect) makes the datasets;
`DatasetWriter` writes them.

Names are imported lazily (PEP 562): `nanovla collect` needs no torch, and importing torch
costs seconds on a busy 2-core machine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nanovla.data.dataset import EpisodeDataset
    from nanovla.data.format import ACTION_KEY, CODEBASE_VERSION, IMAGE_KEY, STATE_KEY, read_info
    from nanovla.data.loader import BatchLoader, split_episodes
    from nanovla.data.writer import DatasetWriter, Episode, write_dataset

_EXPORTS = {
    "ACTION_KEY": "format",
    "CODEBASE_VERSION": "format",
    "IMAGE_KEY": "format",
    "STATE_KEY": "format",
    "read_info": "format",
    "EpisodeDataset": "dataset",
    "BatchLoader": "loader",
    "split_episodes": "loader",
    "DatasetWriter": "writer",
    "Episode": "writer",
    "write_dataset": "writer",
}

__all__ = [
    "ACTION_KEY",
    "CODEBASE_VERSION",
    "IMAGE_KEY",
    "STATE_KEY",
    "BatchLoader",
    "DatasetWriter",
    "Episode",
    "EpisodeDataset",
    "read_info",
    "split_episodes",
    "write_dataset",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nanovla.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nanovla.data.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value
