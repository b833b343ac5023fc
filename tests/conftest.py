"""Shared test setup: offline, headless, deterministic, and light on the 2-core CI machine."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

# pytest-xdist runs one worker per core; one intra-op thread each keeps them from fighting.
torch.set_num_threads(1)
