"""Colour-swap augmentation (data/color_swap.py): exact against re-rendering, text renaming,
and the loader's use of it (seeded, resumable, off by default)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nanovla.data.color_swap import (
    SHADES,
    draw_permutations,
    red_green_table,
    swap_images,
    swap_text,
    swap_texts,
)
from nanovla.errors import InputError
from nanovla.world import make_world
from nanovla.world.render import GRIPPER_RGB, TABLE_RGB, ZONE_RGB, ZONE_RIM_RGB


def _keys(rgb: np.ndarray) -> set[int]:
    return set((rgb[:, 0].astype(np.int64) << 16 | rgb[:, 1] << 8 | rgb[:, 2]).tolist())


def test_palette_keys_are_distinct_from_each_other_and_the_background() -> None:
    keys = _keys(SHADES.reshape(-1, 3))
    assert len(keys) == SHADES.shape[0] * SHADES.shape[1]
    others = np.stack([TABLE_RGB, ZONE_RGB, ZONE_RIM_RGB, GRIPPER_RGB])
    assert not keys & _keys(others)


def test_red_green_table_names_each_slot_and_refuses_shared_pairs() -> None:
    slots = SHADES.reshape(-1, 3)
    table = red_green_table(slots)
    keys = slots[:, 0].astype(np.int64) * 256 + slots[:, 1]
    assert table[keys].tolist() == list(range(len(slots)))
    assert (np.delete(table, keys) == len(slots)).all()
    with pytest.raises(ValueError, match="red, green"):
        red_green_table(np.stack([slots[0], slots[0] + np.array([0, 0, 1], dtype=np.uint8)]))


def test_a_colour_sharing_red_and_green_with_the_palette_is_left_alone() -> None:
    near = SHADES[0, 0].copy()
    near[2] ^= 1  # the blue channel alone differs from a palette colour
    frame = torch.from_numpy(np.stack([SHADES[0, 0], near])).T.reshape(1, 3, 1, 2).contiguous()
    swapped = swap_images(frame, torch.tensor([[1, 0, 2, 3, 4]]))
    assert swapped[0, :, 0, 0].tolist() == SHADES[1, 0].tolist()  # the palette pixel: recoloured
    assert swapped[0, :, 0, 1].tolist() == near.tolist()  # the near miss: untouched


@pytest.mark.parametrize("task", ["pick_place", "push", "sort"])
def test_swapped_frame_equals_the_render_of_the_recoloured_scene(task: str) -> None:
    world = make_world(task, num_envs=6, seed=3)
    for _ in range(5):  # move things, so the gripper overlaps and holds objects sometimes
        world.step(world.expert_action(noise=0.5))
    frames = torch.from_numpy(world.render()).permute(0, 3, 1, 2).contiguous()
    perms = draw_permutations(6, 1.0, torch.Generator().manual_seed(0))
    swapped = swap_images(frames, perms)
    state = world.get_state()
    for name in ("obj_color", "bowl_color"):
        state[name] = np.take_along_axis(perms.numpy(), state[name].astype(np.int64), 1).astype(
            state[name].dtype
        )
    world.set_state(state)
    expected = torch.from_numpy(world.render()).permute(0, 3, 1, 2)
    assert torch.equal(swapped, expected)
    assert not torch.equal(swapped, frames)  # the test would catch a no-op


def test_identity_rows_and_the_input_are_left_alone() -> None:
    world = make_world("reach", num_envs=4, seed=1)
    frames = torch.from_numpy(world.render()).permute(0, 3, 1, 2).contiguous()
    before = frames.clone()
    perms = torch.arange(5).repeat(4, 1)
    perms[1] = torch.tensor([1, 0, 2, 3, 4])
    swapped = swap_images(frames, perms)
    assert torch.equal(frames, before)
    assert torch.equal(swapped[[0, 2, 3]], frames[[0, 2, 3]])


def test_text_renames_every_colour_word_at_once() -> None:
    # red -> blue, blue -> red: a sequential replace would give "blue ... blue"
    perm = [2, 1, 0, 3, 4]
    assert swap_text("put the red box in the blue bowl", perm) == "put the blue box in the red bowl"
    assert swap_text("빨간 상자를 파란 그릇에 넣어", perm) == "파란 상자를 빨간 그릇에 넣어"
    assert swap_text("reached the bored box", perm) == "reached the bored box"  # whole words
    perms = torch.tensor([[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]])
    assert swap_texts(["go to the green ball", "go to the green ball"], perms) == [
        "go to the green ball",
        "go to the yellow ball",
    ]


def test_permutations_are_seeded_and_respect_the_probability() -> None:
    a = draw_permutations(2000, 0.5, torch.Generator().manual_seed(7))
    b = draw_permutations(2000, 0.5, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert torch.equal(a.sort(dim=1).values, torch.arange(5).expand(2000, 5))
    moved = (a != torch.arange(5)).any(dim=1).float().mean().item()
    assert 0.5 * (1 - 1 / 120) - 0.05 < moved < 0.5 * (1 - 1 / 120) + 0.05
    assert not (draw_permutations(50, 0.0) != torch.arange(5)).any()
    with pytest.raises(InputError, match="probability"):
        draw_permutations(3, 1.5)
    with pytest.raises(InputError, match="perms"):
        swap_images(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(3, 5).long())


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory):
    from nanovla.data import EpisodeDataset
    from nanovla.data.collect import CollectConfig, collect

    out = tmp_path_factory.mktemp("swap") / "ds"
    collect(CollectConfig(task="pick_place", episodes=6, out=out, num_envs=6, progress=False))
    return EpisodeDataset(out)


def test_loader_swaps_frames_and_instructions_together_and_resumes_exactly(recorded) -> None:
    from nanovla.data import BatchLoader

    def make(p: float) -> BatchLoader:
        return BatchLoader(recorded, batch_size=16, chunk=2, augment_shift=1, seed=4, color_swap=p)

    plain, always = make(0.0), make(1.0)
    a, b = plain.next_batch(), always.next_batch()
    assert torch.equal(a["frame_index"], b["frame_index"])  # same rows, same order
    assert torch.equal(a["action"], b["action"])
    renamed = [x != y for x, y in zip(a["task"], b["task"], strict=True)]
    assert sum(renamed) >= 12  # 1 - 1/120 of the rows get a permutation that moves something
    for i in range(16):  # a renamed instruction comes with a recoloured frame (a frame may
        # change alone: a permutation of colours the instruction does not name)
        changed = not torch.equal(a["observation.image"][i], b["observation.image"][i])
        assert changed or not renamed[i]
    assert a["task"] == [recorded.tasks[i] for i in a["task_index"].tolist()]

    half = make(0.5)
    for _ in range(3):
        half.next_batch()
    state = half.state_dict()
    expected = [half.next_batch() for _ in range(4)]
    resumed = make(0.5)
    resumed.load_state_dict(state)
    got = [resumed.next_batch() for _ in range(4)]
    for x, y in zip(expected, got, strict=True):
        assert x["task"] == y["task"]
        assert torch.equal(x["observation.image"], y["observation.image"])
    with pytest.raises(InputError, match="color_swap"):
        make(-0.1)
