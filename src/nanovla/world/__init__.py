"""nanovla.world: the embedded language-conditioned tabletop suite.

A top-down 2D table with a round gripper, boxes and balls in five colors and three sizes, colored
bowls and marked zones; four task families (reach, push, pick_place, sort) with success checks and
step limits; English and Korean instructions with training and held-out paraphrases; scripted
experts that act from any state; a batched sprite renderer with masks, boxes and captions.

    from nanovla.world import make_world
    world = make_world("pick_place", num_envs=64, seed=0)
    obs = world.reset(seed=0)
    obs, reward, terminated, truncated, info = world.step(world.expert_action())

Importing this package registers the gymnasium ids nanovla/Reach-v0, nanovla/Push-v0,
nanovla/PickPlace-v0, nanovla/Sort-v0 and nanovla/Suite-v0 (`gymnasium.make` gives one env,
`gymnasium.make_vec(id, num_envs=N)` the natively batched vector env).
"""

from nanovla.world.annotate import DETECTION_CLASSES
from nanovla.world.core import ACTION_DIM, STATE_DIM, World, make_world
from nanovla.world.gym_env import GYM_IDS, TabletopEnv, register_envs
from nanovla.world.gym_vector import TabletopVectorEnv
from nanovla.world.instructions import SPLITS, TEMPLATES
from nanovla.world.scene import COLORS, HELDOUT_COMBOS, KINDS, SIZES, ZONES, SceneState
from nanovla.world.tasks import MAX_STEPS, TASK_FAMILIES

register_envs()

__all__ = [
    "ACTION_DIM",
    "COLORS",
    "DETECTION_CLASSES",
    "GYM_IDS",
    "HELDOUT_COMBOS",
    "KINDS",
    "MAX_STEPS",
    "SIZES",
    "SPLITS",
    "STATE_DIM",
    "TASK_FAMILIES",
    "TEMPLATES",
    "ZONES",
    "SceneState",
    "TabletopEnv",
    "TabletopVectorEnv",
    "World",
    "make_world",
    "register_envs",
]
