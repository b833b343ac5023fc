"""nanovla.data: LeRobotDataset v3.0 datasets — write, load, batch, collect.

```python
from nanovla.data import EpisodeDataset, BatchLoader
dataset = EpisodeDataset("data/suite")            # frames decoded once to uint8
loader = BatchLoader(dataset, batch_size=64, chunk=4, augment_shift=4)
batch = loader.next_batch()                       # dict of tensors, see nanovla.data.loader
```
`nanovla collect` (nanovla.data.collect) records the datasets; `DatasetWriter` writes them.
"""

from nanovla.data.dataset import EpisodeDataset
from nanovla.data.format import ACTION_KEY, CODEBASE_VERSION, IMAGE_KEY, STATE_KEY, read_info
from nanovla.data.loader import BatchLoader, split_episodes
from nanovla.data.writer import DatasetWriter, Episode, write_dataset

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
