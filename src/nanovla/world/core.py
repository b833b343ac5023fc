"""The batched tabletop world: `World` and `make_world`.

Observations (a dict, batched over N envs):

=============== ================ =============================================================
key             shape / type     meaning
=============== ================ =============================================================
image           (N, H, W, 3) u8  top-down RGB frame (absent when render=False; see `render()`)
state           (N, 4) float32   proprioception only: gripper x, y in table units [0, 1]
                                 (slightly beyond at the rim), gripper closed (0/1),
                                 holding something (0/1). Object positions are *not* here:
                                 the policy must find them in the image.
instruction     list[str]        the episode's instruction
family          list[str]        the episode's task family (reach, push, pick_place, sort);
                                 datasets call the instruction string `task` (LeRobot's name)
=============== ================ =============================================================

`step` returns `(obs, reward, terminated, truncated, info)`: reward (N,) float32 is 1.0 on the
step an episode succeeds, else 0.0; terminated = success; truncated = the family's step limit was
hit without success. Envs reset themselves: where an episode ended, `info["success"]` tells
whether it succeeded and the returned observation is already the next episode's first.
`info["episode_step"]` (N,) is the step index of the returned observation within its episode;
`info["shaped_reward"]` (N,) float32 is the decrease of `tasks.distance_to_go` over the step (an
optional dense, potential-based signal for RL; computed before any auto-reset). On a step where
an episode ended (and images are rendered), `info["final_image"]` (N, H, W, 3) uint8 is the frame
each env reached by this step before any auto-reset: an ended env's terminal frame, the returned
frame elsewhere (gymnasium's vector envs give the same as `final_obs`; only ended envs cost an
extra render).

Determinism: `reset(seed=s)` reseeds the world, so the same seed gives identical scenes, images
and instructions, and (for the same actions) the same sequence of later episodes.

Departures from the seed's DAgger sketch (`state = env.reset()`, `env.step(a) -> (state, reward,
done, info)`, `expert.get_action(state)` on one env): the world is batched over N envs with numpy,
returns gymnasium's five-tuple (terminated vs truncated matter for bootstrapping in PPO), resets
each env itself so a batch never waits for its slowest episode, and keeps the expert inside the
world (`expert_action()`), because the expert needs the full state while the learner must only
get the observation.
"""

from __future__ import annotations

import numpy as np

from nanovla.constants import OBS_FAMILY, OBS_IMAGE, OBS_INSTRUCTION, OBS_STATE
from nanovla.errors import InputError
from nanovla.world.annotate import DETECTION_CLASSES, box_arrays, box_lists, caption_en, caption_ko
from nanovla.world.dynamics import step_dynamics
from nanovla.world.experts import expert_action
from nanovla.world.instructions import resolve_templates, sample_instructions
from nanovla.world.render import Renderer
from nanovla.world.scene import SceneState, allowed_target_combos, sample_scenes
from nanovla.world.tasks import (
    MAX_STEPS,
    TASK_FAMILIES,
    distance_to_go,
    goal_positions,
    parse_tasks,
    step_limits,
    success,
)

STATE_DIM = 4
ACTION_DIM = 3
MIN_IMAGE_SIZE = 32
SCENE_BATCH = 64
"""scenes sampled at once for auto-resets"""


class World:
    """N tabletop envs stepped together with numpy. Build it with `make_world` (which documents
    the arguments); `autoreset=False` leaves ended episodes alone until `restart(envs)`.

    Attributes: num_envs, image_size, state_dim (4), action_dim (3), families (tuple of family
    names), max_steps (family -> step limit), templates (family -> instruction templates),
    instructions (list[str], the current episodes'), state (the full SceneState; experts and
    success checks read it, a policy must not).
    """

    def __init__(
        self,
        tasks: str | list[str] | tuple[str, ...],
        num_envs: int = 1,
        image_size: int = 64,
        seed: int = 0,
        instructions: str | list[str] | tuple[str, ...] = "train",
        targets: str = "all",
        expert_noise: float = 0.0,
        render: bool = True,
        autoreset: bool = True,
    ) -> None:
        self.families = parse_tasks(tasks)
        if not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise InputError(f"num_envs: must be an integer >= 1, got {num_envs!r}")
        if not isinstance(image_size, int | np.integer) or image_size < MIN_IMAGE_SIZE:
            raise InputError(
                f"image_size: must be an integer >= {MIN_IMAGE_SIZE} (e.g. 64, 96, 128, 224), "
                f"got {image_size!r}"
            )
        if not np.isfinite(expert_noise) or expert_noise < 0:
            raise InputError(f"expert_noise: must be a finite number >= 0, got {expert_noise!r}")
        self.num_envs, self.image_size = int(num_envs), int(image_size)
        self.state_dim, self.action_dim = STATE_DIM, ACTION_DIM
        self.max_steps = {family: MAX_STEPS[family] for family in self.families}
        self.expert_noise = float(expert_noise)
        self.render_images, self.autoreset = render, autoreset
        self.templates = resolve_templates(instructions, self.families)
        self._target_mask = allowed_target_combos(targets)
        self._family_ids = np.array([TASK_FAMILIES.index(f) for f in self.families])
        self._renderer = Renderer(self.image_size)
        self.reset(seed=seed)

    # ----------------------------------------------------------------- episodes
    def reset(self, seed: int | None = None) -> dict:
        """Starts a fresh episode in every env; `seed` reseeds the world first."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            self._noise_rng = np.random.default_rng([seed, 1])
        n = self.num_envs
        self.state = self._sample(n)
        self._pool, self._pool_next = self.state.take(np.arange(0)), 0  # empty scene pool
        self.instructions = sample_instructions(self._rng, self.state, np.arange(n), self.templates)
        self._static_rgb = np.zeros((n, self.image_size, self.image_size, 3), dtype=np.uint8)
        self._static_ids = np.zeros((n, self.image_size, self.image_size), dtype=np.int16)
        self._stale = np.ones(n, dtype=bool)  # static layer must be redrawn
        return self.observe()

    def _sample(self, count: int) -> SceneState:
        family = self._family_ids[self._rng.integers(0, len(self._family_ids), size=count)]
        return sample_scenes(self._rng, family, self._target_mask)

    def restart(self, envs: np.ndarray) -> None:
        """Starts new episodes in the envs at indices `envs` (what auto-reset does; call it
        yourself on a world built with autoreset=False).

        New scenes come from a pool sampled SCENE_BATCH at a time: sampling is vectorized, and a
        few envs ending per step would otherwise pay its fixed cost every step. The pool is
        drawn from the world's seeded stream, so episode sequences stay deterministic.
        """
        done = 0
        while done < len(envs):
            if self._pool_next == len(self._pool.family):
                self._pool, self._pool_next = self._sample(SCENE_BATCH), 0
            count = min(len(envs) - done, len(self._pool.family) - self._pool_next)
            batch = np.arange(self._pool_next, self._pool_next + count)
            self.state.assign(envs[done : done + count], self._pool.take(batch))
            self._pool_next, done = self._pool_next + count, done + count
        texts = sample_instructions(self._rng, self.state, envs, self.templates)
        for env, text in zip(envs.tolist(), texts, strict=True):
            self.instructions[env] = text
        self._stale[envs] = True

    def step(self, actions: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Applies actions (N, 3) in [-1, 1] (dx, dy, grip; grip > 0 closes; values outside
        [-1, 1] are clipped). Returns obs, reward (N,), terminated (N,), truncated (N,), info."""
        actions = self._check_actions(actions)
        before = distance_to_go(self.state)
        step_dynamics(self.state, actions)
        shaped = (before - distance_to_go(self.state)).astype(np.float32)
        solved = success(self.state)
        truncated = (self.state.episode_step >= step_limits(self.state)) & ~solved
        done = solved | truncated
        ended = np.flatnonzero(done)
        final_rows = None  # (len(ended), H, W, 3) terminal frames of the envs about to restart
        if self.autoreset and len(ended):
            if self.render_images:
                self._refresh_static()
                final_rows = self._renderer.rgb(self.state.take(ended), self._static_rgb[ended])
            self.restart(ended)
        info = {
            "success": solved,
            "episode_step": self.state.episode_step.copy(),
            "shaped_reward": shaped,
        }
        obs = self.observe()
        if len(ended) and self.render_images:
            final = obs[OBS_IMAGE]
            if final_rows is not None:
                final = final.copy()
                final[ended] = final_rows
            info["final_image"] = final
        return obs, solved.astype(np.float32), solved, truncated, info

    def _check_actions(self, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self.num_envs, ACTION_DIM):
            raise InputError(
                f"actions: expected shape ({self.num_envs}, {ACTION_DIM}) = (num_envs, dx/dy/grip),"
                f" got {actions.shape}"
            )
        if not np.isfinite(actions).all():
            raise InputError("actions: contain NaN or inf; allowed values are finite, in [-1, 1]")
        return np.clip(actions, -1.0, 1.0)

    # ----------------------------------------------------------------- observing
    def proprio(self) -> np.ndarray:
        """(N, 4) float32: gripper x, y, closed, holding."""
        s = self.state
        return np.concatenate(
            [s.gripper, s.closed[:, None], (s.held >= 0)[:, None]], axis=1
        ).astype(np.float32)

    def observe(self) -> dict:
        """The observation dict of the current state (see the module docstring)."""
        obs = {
            OBS_STATE: self.proprio(),
            OBS_INSTRUCTION: list(self.instructions),
            OBS_FAMILY: [TASK_FAMILIES[f] for f in self.state.family],
        }
        if self.render_images:
            obs[OBS_IMAGE] = self.render()
        return obs

    def _refresh_static(self) -> None:
        if self._stale.any():
            envs = np.flatnonzero(self._stale)
            static = self._renderer.static(self.state.take(envs))
            self._static_rgb[envs], self._static_ids[envs] = static
            self._stale[:] = False

    def render(self) -> np.ndarray:
        """(N, H, W, 3) uint8 frames of the current state."""
        self._refresh_static()
        return self._renderer.rgb(self.state, self._static_rgb)

    def annotations(self) -> dict:
        """Labels of the current frame: instance `masks` (N, H, W) int16 (0 = table, object
        slot + 1, then bowls, then the gripper), `boxes` (per env, a list of (class_name, x0, y0,
        x1, y1) in pixels), `box_array` (N, K, 4) float32 and `box_class` (N, K) int64 (-1 =
        absent) indexed by instance id - 1, `classes` (DETECTION_CLASSES), and `caption_en` /
        `caption_ko` (list[str])."""
        self._refresh_static()
        boxes, classes = box_arrays(self.state, self.image_size)
        envs = range(self.num_envs)
        return {
            "masks": self._renderer.masks(self.state, self._static_ids),
            "boxes": box_lists(boxes, classes),
            "box_array": boxes,
            "box_class": classes,
            "classes": DETECTION_CLASSES,
            "caption_en": [caption_en(self.state, env) for env in envs],
            "caption_ko": [caption_ko(self.state, env) for env in envs],
        }

    # ----------------------------------------------------------------- experts and state
    def expert_action(self, noise: float | None = None, grip_noise: bool = False) -> np.ndarray:
        """(N, 3) float32 scripted-expert actions for the current state, perturbed by `perturb`
        with std `noise` (default: the world's `expert_noise`; 0 gives the clean expert)."""
        return self.perturb(expert_action(self.state), noise, grip_noise)

    def perturb(
        self, actions: np.ndarray, noise: float | None = None, grip_noise: bool = False
    ) -> np.ndarray:
        """(N, 3) float32 `actions` plus Gaussian noise of std `noise` (default: the world's
        `expert_noise`) on the motion (dx, dy), clipped to [-1, 1]. The grip is left as given
        unless `grip_noise`: a noisy grip opens mid-carry and drops the object. The noise comes
        from the world's own seeded stream (reseeded by `reset(seed=...)`, independent of the
        scene stream), and none is drawn when the std is 0. DART collection and `nanovla world
        demo --noise` both perturb through here."""
        std = self.expert_noise if noise is None else float(noise)
        if not np.isfinite(std) or std < 0:
            raise InputError(f"noise: must be a finite number >= 0, got {noise!r}")
        actions = np.asarray(actions, dtype=np.float32)
        if std == 0:
            return actions
        dims = ACTION_DIM if grip_noise else 2
        noisy = actions.astype(np.float64)  # a copy: the caller's array is left alone
        noisy[:, :dims] += self._noise_rng.normal(0.0, std, size=(len(noisy), dims))
        return np.clip(noisy, -1.0, 1.0).astype(np.float32)

    def goal_positions(self) -> np.ndarray:
        """(N, 4) float32 (object x, y, place x, y) of each env's current subgoal in table units
        (privileged: for auxiliary training targets and analysis, never an observation)."""
        return goal_positions(self.state)

    def get_state(self) -> dict[str, np.ndarray]:
        """A copy of the full world state (numpy arrays, including the instructions)."""
        arrays = self.state.to_dict()
        arrays["instruction"] = np.array(self.instructions)
        return arrays

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restores a dict from `get_state` (copied). The random stream is not part of it."""
        self.state = SceneState.from_dict(state, self.num_envs)
        if "instruction" in state:
            self.instructions = [str(text) for text in state["instruction"]]
        self._stale[:] = True


def make_world(
    tasks: str | list[str] | tuple[str, ...],
    num_envs: int = 1,
    image_size: int = 64,
    seed: int = 0,
    instructions: str | list[str] | tuple[str, ...] = "train",
    targets: str = "all",
    expert_noise: float = 0.0,
    render: bool = True,
) -> World:
    """Builds a batched tabletop world.

    tasks: a family in TASK_FAMILIES, "suite" (all of them), or a list of families (each episode
    draws its family uniformly). instructions: "train" | "heldout" | "ko" | "ko_heldout", several
    joined with "+" ("train+ko"), or a list of templates with an `{object}` slot. targets: "all" |
    "train" | "heldout" restricts the (kind, color) of target objects (see HELDOUT_COMBOS).
    expert_noise: default std of the Gaussian noise on the expert's motion (`World.perturb`).
    render=False skips images in observations (state-only stepping is much faster);
    `World.render()` still works.
    """
    return World(tasks, num_envs, image_size, seed, instructions, targets, expert_noise, render)
