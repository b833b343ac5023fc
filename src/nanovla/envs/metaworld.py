"""Meta-World (Yu et al. 2019, https://arxiv.org/abs/1910.10897) as nanovla sees it.

Meta-World 3.x simulates a Sawyer arm in MuJoCo; each task (`reach-v3`, `push-v3`, ...) is an
environment class with a 39-d observation (hand xyz, gripper opening, two objects' pose, the
same 18 values of the previous step, and the goal xyz), a 4-d action in [-1, 1] (hand dx, dy,
dz, grip) and `info["success"]`. MT10 is ten of those tasks, each with 50 *goal configurations*
(object and goal positions) that the benchmark draws from a seed; `metaworld.policies` holds a
scripted expert per task, a function of the observation alone (so it labels any state).

What this adapter adds, and nothing else (no learning here; `nanovla.envs` sits below every
learner and imports only numpy and metaworld):

- `resolve_tasks`: names (or "MT10") -> task names, refusing an unknown one with the list;
- `instruction`: the task as a language instruction ("push the puck to the goal");
- `goal_configs(task, seed)`: the 50 goal configurations of `metaworld.MT1(task, seed)`, the
  set `metaworld.make_mt_envs(task, seed=seed)` samples from;
- `MetaWorldEnv`: one task's environment reset to a chosen goal configuration, stepped with
  success reported per step, the expert's action for the current observation, offscreen frames.

Departures from Meta-World's own evaluation (`metaworld.evaluation.evaluation`): there each
reset draws a random one of the 50 configurations (with replacement); here episode i of a task
runs configuration i of the seed's 50, so 50 episodes visit each exactly once and a result is a
function of the seed alone. The goal sets are drawn per task (`MT1(task, seed)`), not from
MT10's one shared stream, so evaluating a subset of tasks sees the same configurations as MT10.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

import numpy as np

from nanovla.errors import InputError

EXTRA_HINT = "pip install 'nanovla[metaworld]'"
MT10: tuple[str, ...] = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)
"""the ten tasks of Meta-World's MT10 benchmark, in its order (`metaworld.env_dict.MT10_V3`)"""
BENCHMARKS: dict[str, tuple[str, ...]] = {"MT10": MT10}
"""names that stand for a list of tasks"""
INSTRUCTIONS: dict[str, str] = {
    "reach-v3": "reach the goal position",
    "push-v3": "push the puck to the goal",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "door-open-v3": "open the door",
    "drawer-open-v3": "open the drawer",
    "drawer-close-v3": "close the drawer",
    "button-press-topdown-v3": "press the button down from the top",
    "peg-insert-side-v3": "insert the peg into the hole from the side",
    "window-open-v3": "slide the window open",
    "window-close-v3": "slide the window closed",
}
"""the instruction of each MT10 task; other tasks read their name ("sweep into")"""
GOALS_PER_SEED = 50
"""goal configurations one benchmark seed gives each task (metaworld's `_N_GOALS`)"""
OBS_DIM, ACTION_DIM = 39, 4
ACTION_NAMES = ("dx", "dy", "dz", "grip")


def require_metaworld() -> ModuleType:
    """The `metaworld` module, or one InputError naming the extra that installs it."""
    try:
        module = importlib.import_module("metaworld")
        importlib.import_module("metaworld.policies")
    except ImportError as error:
        raise InputError(
            f"Meta-World is not installed ({error}); install the extra: {EXTRA_HINT}"
        ) from None
    return module


def _registry() -> dict[str, Any]:
    """task name -> environment class, for the tasks that have a scripted expert."""
    require_metaworld()
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS
    from metaworld.policies import ENV_POLICY_MAP

    return {name: cls for name, cls in ALL_V3_ENVIRONMENTS.items() if name in ENV_POLICY_MAP}


def task_names() -> list[str]:
    """Every Meta-World task with a scripted expert (the names `resolve_tasks` accepts)."""
    return list(_registry())


def resolve_tasks(names: Sequence[str]) -> tuple[str, ...]:
    """Task names, with "MT10" expanded and duplicates dropped; an unknown name -> InputError
    listing the allowed names."""
    if isinstance(names, str):
        names = [names]
    allowed = task_names()
    tasks: list[str] = []
    for name in names:
        expanded = BENCHMARKS.get(name, (name,))
        for task in expanded:
            if task not in allowed:
                raise InputError(
                    f"unknown Meta-World task {name!r}; choose from {', '.join(BENCHMARKS)} or "
                    f"{', '.join(allowed)}"
                )
            if task not in tasks:
                tasks.append(task)
    if not tasks:
        raise InputError("no Meta-World task given; e.g. --tasks MT10 or --tasks reach-v3")
    return tuple(tasks)


def instruction(task: str) -> str:
    """The language instruction of `task`."""
    return INSTRUCTIONS.get(task) or task.removesuffix("-v3").replace("-", " ")


@dataclass(frozen=True)
class GoalConfig:
    """One seeded goal configuration of a task: configuration `index` of seed `seed`."""

    task: str
    seed: int
    index: int
    data: Any
    """metaworld's `Task` (pickled constructor arguments and the random vector)"""


@lru_cache(maxsize=64)
def goal_configs(task: str, seed: int) -> tuple[GoalConfig, ...]:
    """The 50 goal configurations `metaworld.MT1(task, seed=seed)` draws for `task`."""
    metaworld = require_metaworld()
    (task,) = resolve_tasks([task])
    if seed < 0:
        raise InputError(f"Meta-World seeds must be >= 0, got {seed}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        benchmark = metaworld.MT1(task, seed=seed)
    return tuple(GoalConfig(task, seed, i, data) for i, data in enumerate(benchmark.train_tasks))


def goals_for(task: str, episodes: int, seed: int) -> list[GoalConfig]:
    """`episodes` goal configurations of `task`: seed `seed`'s 50, then seed + 1's, ..."""
    if episodes < 1:
        raise InputError(f"episodes per task must be >= 1, got {episodes}")
    goals: list[GoalConfig] = []
    for offset in range((episodes + GOALS_PER_SEED - 1) // GOALS_PER_SEED):
        goals += goal_configs(task, seed + offset)
    return goals[:episodes]


class MetaWorldEnv:
    """One Meta-World task's environment, reset to chosen goal configurations.

    `reset(goal)` -> observation (39,) float32; `step(action)` -> (observation, success, done)
    with `done` at metaworld's time limit (`max_steps`, 500); `expert_action(obs)` is the
    scripted expert's action, clipped to the action box as the env clips it; `render()` an
    offscreen frame (`image_size` > 0; needs MUJOCO_GL=egl or osmesa without a display).
    """

    def __init__(self, task: str, image_size: int = 0) -> None:
        (self.task,) = resolve_tasks([task])
        from metaworld.policies import ENV_POLICY_MAP

        options: dict[str, Any] = {}
        if image_size > 0:
            options = dict(render_mode="rgb_array", width=image_size, height=image_size)
        self.env = _registry()[self.task](**options)
        self.expert = ENV_POLICY_MAP[self.task]()
        self.max_steps: int = int(self.env.max_path_length)
        self.image_size = image_size
        self.instruction = instruction(self.task)
        self.steps = 0

    def reset(self, goal: GoalConfig) -> np.ndarray:
        """Start an episode on `goal` (a configuration of this env's task) -> obs (39,)."""
        if goal.task != self.task:
            raise InputError(f"goal configuration of {goal.task!r} given to a {self.task!r} env")
        self.env.set_task(goal.data)
        obs, _ = self.env.reset()
        self.steps = 0
        return obs.astype(np.float32)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, bool, bool]:
        """Apply `action` (4,) -> (obs (39,) float32, success this step, time limit reached)."""
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        obs, _reward, _terminated, truncated, info = self.env.step(action)
        self.steps += 1
        return obs.astype(np.float32), bool(info["success"]), bool(truncated)

    def expert_action(self, obs: np.ndarray) -> np.ndarray:
        """The scripted expert's action (4,) float32 for observation `obs` (39,)."""
        with warnings.catch_warnings():  # "Constant(s) may be too high": the env clips
            warnings.simplefilter("ignore")
            action = self.expert.get_action(np.asarray(obs, dtype=np.float64))
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def render(self) -> np.ndarray:
        """The current frame (image_size, image_size, 3) uint8."""
        if self.image_size <= 0:
            raise InputError("MetaWorldEnv was built with image_size=0: no camera")
        return np.ascontiguousarray(self.env.render(), dtype=np.uint8)

    def close(self) -> None:
        self.env.close()
