"""nanovla.train: the training engine, its checkpoints, logs, optimizer and schedules.

`Trainer(model, loader, TrainConfig(...), out_dir).fit()` trains any model with
`forward(batch) -> (loss, metrics)` and `save_pretrained(dir)`; checkpoints land in
`out_dir/checkpoints/<step>/` with a `last` link, logs in `out_dir/logs/metrics.jsonl`.
"""

from nanovla.train.checkpoint import latest_checkpoint, load_checkpoint_dir, pretrained_dir
from nanovla.train.config import TrainConfig
from nanovla.train.engine import Batches, EvalFn, Trainer, resolve_device
from nanovla.train.logger import MetricsLogger, plot_loss, read_metrics
from nanovla.train.optim import build_optimizer, build_param_groups
from nanovla.train.rng import seed_everything
from nanovla.train.schedules import build_scheduler

__all__ = [
    "Batches",
    "EvalFn",
    "MetricsLogger",
    "TrainConfig",
    "Trainer",
    "build_optimizer",
    "build_param_groups",
    "build_scheduler",
    "latest_checkpoint",
    "load_checkpoint_dir",
    "plot_loss",
    "pretrained_dir",
    "read_metrics",
    "resolve_device",
    "seed_everything",
]
