"""End to end: reach demonstrations -> behavior cloning -> seeded evaluation, and grounding.

The pieces are wired as `nanovla train` wires them (collect -> EpisodeDataset -> BatchLoader ->
Policy.from_dataset -> Trainer -> evaluate), at a size that trains in about half a minute on one
CPU thread. The policy is trained once per module; each test compares it with the same policy
before training (same initial weights, same seeded episodes), so every bound below is one that
the untrained policy is shown, in the test itself, not to reach.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from nanovla.constants import OBS_IMAGE, OBS_INSTRUCTION, OBS_STATE
from nanovla.data import BatchLoader, EpisodeDataset
from nanovla.data.collect import CollectConfig, collect
from nanovla.eval.evaluate import EvalConfig, evaluate
from nanovla.models.policy import Policy, PolicyConfig
from nanovla.train.config import TrainConfig
from nanovla.train.engine import Trainer
from nanovla.world import make_world
from nanovla.world.instructions import TEMPLATES, describe

pytestmark = pytest.mark.slow

EPISODES = 400
"""reach demonstrations recorded (3,707 frames with these seeds)"""
TRAIN_STEPS = 600
"""optimizer steps at batch 64 (about 25 s on one thread of a 2-core machine)"""
EVAL_EPISODES = 100
"""seeded evaluation episodes (the default `EvalConfig.seed` scenes, seen instructions)"""

# Measured with this module's settings (collection seed 0, DART noise 0.3, the default run's
# policy: PolicyConfig(vision_widths=(32,))), by training with torch seeds 0, 1 and 2 and
# evaluating on the 100 seeded reach episodes: trained 68, 76 and 70 successes; the untrained
# policy with torch seeds 0..4: 1, 0, 1, 0 and 0 successes. The bound sits between them, 28
# points below the worst trained run.
SUCCESS_BOUND = 0.40

SWAP_TEMPLATE = "go to {object}"
SWAP_SEED = 7
"""seed of the scenes of the instruction-swap test (away from collection seed 0)"""
# Measured as above: of the 51 usable scenes at SWAP_SEED (of 64), the trained policy (torch
# seeds 0, 1, 2) heads to the named object under *both* instructions in 43, 47 and 44 scenes
# (36-38 of 51 at seed 11); the untrained policy (torch seeds 0..4) in 0 of 51 every time, since
# its action barely depends on the instruction. An instruction-blind policy scores 0 by
# construction: one action cannot head to two objects.
SWAP_BOUND = 0.5


@pytest.fixture(scope="module")
def reach_policies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Policy, Policy]:
    """(trained, untrained): the same initial weights, before and after behavior cloning."""
    root = tmp_path_factory.mktemp("end_to_end")
    path = collect(
        CollectConfig(
            task="reach",
            episodes=EPISODES,
            out=root / "data",
            num_envs=32,
            instructions="train",
            seed=0,
            expert_noise=0.3,
            progress=False,
        )
    )
    dataset = EpisodeDataset(path)
    torch.manual_seed(0)
    config = PolicyConfig(vision_widths=(32,), image_size=64)
    policy = Policy.from_dataset(config, dataset)
    untrained = copy.deepcopy(policy).eval()
    loader = BatchLoader(dataset, 64, chunk=config.chunk, val_fraction=0.0, augment_shift=2)
    train_config = TrainConfig(
        steps=TRAIN_STEPS,
        lr=2e-3,
        warmup_steps=60,
        log_every=100,
        device="cpu",
        num_threads=1,
        tensorboard=False,
        progress=False,
        seed=0,
    )
    Trainer(policy, loader, train_config, root / "run").fit()
    assert (root / "run" / "checkpoints" / "last").exists()
    return policy.eval(), untrained


def _reach_success(policy: Policy) -> float:
    config = EvalConfig(episodes=EVAL_EPISODES, splits=("seen",), gifs=0)
    result = evaluate(policy, ("reach",), config, image_size=64, progress=False)
    seen = result["splits"]["seen"]
    assert seen["episodes"] == EVAL_EPISODES
    return seen["success"]


def test_behavior_cloning_on_reach_beats_the_untrained_policy(
    reach_policies: tuple[Policy, Policy],
) -> None:
    trained, untrained = reach_policies
    before, after = _reach_success(untrained), _reach_success(trained)
    assert before < SUCCESS_BOUND, f"the untrained policy already succeeds in {before:.0%}"
    assert after >= SUCCESS_BOUND, f"trained reach success {after:.0%} < {SUCCESS_BOUND:.0%}"


def _swap_scenes(num_scenes: int) -> tuple[dict, list[str], list[str], np.ndarray, np.ndarray]:
    """Reach scenes with two far-apart objects: (observation of the usable scenes, instruction
    naming object A, instruction naming object B, gripper->A (S, 2), gripper->B (S, 2)).

    A is the scene's own target, B the first other object such that both are > 0.15 table units
    from the gripper and the two directions are more than 45 degrees apart, so "heading to A"
    and "heading to B" are different motions."""
    world = make_world("reach", num_envs=num_scenes, image_size=64, seed=SWAP_SEED)
    obs, state = world.observe(), world.state
    rows, texts_a, texts_b, to_a, to_b = [], [], [], [], []
    for env in range(num_scenes):
        a = int(state.target_obj[env, 0])
        va = state.obj_pos[env, a] - state.gripper[env]
        for b in np.flatnonzero(state.obj_active[env]):
            vb = state.obj_pos[env, b] - state.gripper[env]
            cosine = va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb))
            far = min(np.linalg.norm(va), np.linalg.norm(vb)) > 0.15
            if b != a and far and cosine < np.cos(np.pi / 4):
                rows.append(env)
                texts_a.append(SWAP_TEMPLATE.format(object=describe(state, env, a, False)))
                texts_b.append(SWAP_TEMPLATE.format(object=describe(state, env, int(b), False)))
                to_a.append(va)
                to_b.append(vb)
                break
    index = np.array(rows)
    scenes = {OBS_IMAGE: obs[OBS_IMAGE][index], OBS_STATE: obs[OBS_STATE][index]}
    return scenes, texts_a, texts_b, np.array(to_a), np.array(to_b)


def _heads_to_first(
    policy: Policy, scenes: dict, texts: list[str], first: np.ndarray, second: np.ndarray
) -> np.ndarray:
    """(S,) bool: the policy's first motion (dx, dy) points closer to `first` than `second`."""
    policy.reset()
    actions = policy.select_action({**scenes, OBS_INSTRUCTION: texts})[:, :2]  # (S, 2)

    def cosine(directions: np.ndarray) -> np.ndarray:
        return (actions * directions).sum(1) / np.linalg.norm(directions, axis=1)

    return cosine(first) > cosine(second)


def test_swapping_the_instruction_changes_the_chosen_target(
    reach_policies: tuple[Policy, Policy],
) -> None:
    """Same image, same state, only the instruction differs: the motion follows the object it
    names. Scored per scene as "heads to A when told A *and* to B when told B"."""
    assert SWAP_TEMPLATE in TEMPLATES["train"]["reach"]
    scenes, texts_a, texts_b, to_a, to_b = _swap_scenes(64)
    assert len(texts_a) >= 40 and all(a != b for a, b in zip(texts_a, texts_b, strict=True))
    rates = {}
    for name, policy in zip(("trained", "untrained"), reach_policies, strict=True):
        told_a = _heads_to_first(policy, scenes, texts_a, to_a, to_b)
        told_b = _heads_to_first(policy, scenes, texts_b, to_b, to_a)
        rates[name] = float((told_a & told_b).mean())
    assert rates["untrained"] < SWAP_BOUND, rates
    assert rates["trained"] >= SWAP_BOUND, rates
