"""One home for the names that several layers spell: feature keys and file names.

Feature keys follow LeRobot's names, so a nanovla dataset reads as a LeRobot one. The policy is
trained on loader batches (`observation.image` CHW uint8, `task` = the instruction string) and
acts on world observations (`image` HWC uint8, `instruction`); `models/policy/observation.py`
maps the second onto the first, so the network only ever sees the dataset's names.
"""

from __future__ import annotations

# ---------------------------------------------------------------- dataset features (LeRobot)
IMAGE_KEY = "observation.image"
"""(T, 3, H, W) uint8 camera frames in a batch; HWC PNG frames on disk"""
STATE_KEY = "observation.state"
"""(T, D) float32 proprioception"""
ENV_STATE_KEY = "observation.environment_state"
"""privileged simulator state: the world's subgoal positions (object x, y, place x, y)"""
ACTION_KEY = "action"
"""(T, A) float32 the expert's action for each frame's state: what was executed when the expert
drove, the clean label when DART noise or a policy (DAgger) chose the executed action"""
TASK_KEY = "task"
"""the instruction string of a frame (LeRobot's name; in the world it is `instruction`)"""

# ---------------------------------------------------------------- world observations
OBS_IMAGE = "image"
"""(N, H, W, 3) uint8 in a world observation"""
OBS_STATE = "state"
"""(N, 4) float32 proprioception in a world observation"""
OBS_INSTRUCTION = "instruction"
"""the instruction string of each env"""
OBS_FAMILY = "family"
"""the task family of each env (reach, push, pick_place, sort); `task` is LeRobot's instruction"""

# ---------------------------------------------------------------- dataset files (LeRobot v3.0)
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"

# ---------------------------------------------------------------- checkpoints and runs
CHECKPOINTS_DIR = "checkpoints"
LAST_LINK = "last"
PRETRAINED_DIR = "pretrained_model"
TRAINING_STATE_DIR = "training_state"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
TRAIN_CONFIG_FILE = "train_config.json"
RUN_RECORD_FILE = "run.json"
"""what a checkpoint's run trained on (families, image size, dataset): read by evaluation"""
STEP_FILE = "training_step.json"
COMMAND_FILE = "train_command.json"
EVAL_FILE = "eval.json"
LOGS_DIR = "logs"
PLOTS_DIR = "plots"
VIDEOS_DIR = "videos"
LOCK_FILE = ".lock"
