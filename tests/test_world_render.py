"""Renderer and annotations: masks agree with pixels and boxes, sprites are distinct and stay in
the image, captions describe the scene."""

import numpy as np
import pytest

from nanovla.world import DETECTION_CLASSES, make_world
from nanovla.world.render import COLOR_RGB, GRIPPER_ID, PHASES, TABLE_RGB, Renderer
from nanovla.world.scene import COLORS, KINDS, SIZE_RADII, SIZES


def test_render_matches_observation_and_is_pure():
    world = make_world("suite", num_envs=5, seed=0)
    obs = world.reset(seed=0)
    assert np.array_equal(world.render(), obs["image"])
    assert np.array_equal(world.render(), world.render())


def test_masks_agree_with_pixels_and_boxes():
    world = make_world("suite", num_envs=16, seed=1)
    image = world.render()
    notes = world.annotations()
    masks, boxes, classes = notes["masks"], notes["box_array"], notes["box_class"]
    assert masks.shape == (16, 64, 64) and masks.dtype == np.int16
    assert notes["classes"] == DETECTION_CLASSES
    table = np.all(image == TABLE_RGB, axis=-1)
    assert not np.any(table & (masks > 0))  # instance pixels are never plain table
    for env in range(16):
        present = np.unique(masks[env])
        active = np.flatnonzero(world.state.obj_active[env]) + 1
        assert set(active) | {GRIPPER_ID} <= set(present)
        for instance in present[present > 0]:
            rows, cols = np.nonzero(masks[env] == instance)
            x0, y0, x1, y1 = boxes[env, instance - 1]
            assert classes[env, instance - 1] >= 0
            assert cols.min() >= np.floor(x0) - 1 and cols.max() <= np.ceil(x1) + 1
            assert rows.min() >= np.floor(y0) - 1 and rows.max() <= np.ceil(y1) + 1
        assert len(notes["boxes"][env]) == int(world.state.obj_active[env].sum()) + 3


def test_object_pixels_carry_their_color():
    world = make_world("suite", num_envs=16, seed=2)
    image, masks, s = world.render(), world.annotations()["masks"], world.state
    for env in range(16):
        for slot in np.flatnonzero(s.obj_active[env]):
            pixels = image[env][masks[env] == slot + 1].astype(float)  # (P, 3)
            nearest = np.linalg.norm(pixels[:, None] - COLOR_RGB[None], axis=-1).argmin(1)
            # Most pixels (all but rims and highlights) are closest to the object's own color.
            assert np.mean(nearest == s.obj_color[env, slot]) > 0.5


def test_sprites_are_distinct_and_visible_at_64():
    renderer = Renderer(64)
    bank = renderer.objects
    footprints = [{tuple(p) for p in bank.dydx[s * PHASES * PHASES]} for s in range(6)]
    shades = [tuple(bank.shade[s * PHASES * PHASES]) for s in range(6)]
    sizes = [len(f) for f in footprints]
    assert sizes[0] < sizes[1] < sizes[2] and sizes[3] < sizes[4] < sizes[5]
    for size in range(3):  # box vs ball of one size: different pixels or different shading
        assert footprints[size] != footprints[size + 3] or shades[size] != shades[size + 3]
    assert sizes[0] >= 9  # even a small object covers at least 3x3 pixels
    colors = COLOR_RGB
    gaps = np.linalg.norm(colors[:, None] - colors[None], axis=-1) + 1e3 * np.eye(len(colors))
    assert gaps.min() > 80


@pytest.mark.parametrize("size", [64, 224])
def test_objects_at_the_table_edge_stay_inside_the_image(size):
    bank = Renderer(size).objects
    for sprite, radius in enumerate(np.tile(SIZE_RADII, 2)):
        for corner in ([radius, radius], [1 - radius, 1 - radius]):
            for jitter in np.linspace(0, 1e-3, 5):
                pos = np.array([corner]) + jitter * (1 if corner[0] < 0.5 else -1)
                flat, _ = bank.indices(np.array([sprite]), pos, np.array([True]))
                assert flat.min() >= 0 and flat.max() < size * size


def test_gripper_open_and_closed_look_different():
    world = make_world("reach", num_envs=1, seed=0)
    open_frame = world.render()
    world.step(np.array([[0.0, 0.0, 1.0]]))
    assert not np.array_equal(open_frame, world.render())


def test_captions_describe_every_object_in_both_languages():
    world = make_world("sort", num_envs=8, seed=4)
    notes = world.annotations()
    s = world.state
    for env in range(8):
        for slot in np.flatnonzero(s.obj_active[env]):
            name = f"{SIZES[s.obj_size[env, slot]]} {COLORS[s.obj_color[env, slot]]}"
            assert f"{name} {KINDS[s.obj_kind[env, slot]]}" in notes["caption_en"][env]
        assert "그리퍼" in notes["caption_ko"][env] and "그릇" in notes["caption_ko"][env]
