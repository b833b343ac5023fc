"""nanovla lab clip: PCA against numpy, recall@k on a toy case, zero-shot plumbing, smoke run."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from cli_run import nanovla

from nanovla.errors import InputError
from nanovla.labs.clip import ClipConfig, run
from nanovla.labs.clip_eval import _attribute_prompts, recall_at_k
from nanovla.labs.pca import gram_schmidt, jacobi_eigh, pca


def test_pca_matches_numpy_svd():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 20)) @ np.diag(np.linspace(4.0, 0.2, 20)) + 3.0
    result = pca(x, k=4)
    _, s, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    np.testing.assert_allclose(result.singular_values, s[:4], rtol=1e-8)
    np.testing.assert_allclose(np.abs(result.components), np.abs(vt[:4]), atol=1e-7)
    np.testing.assert_allclose(result.explained_variance, s[:4] ** 2 / 299, rtol=1e-8)
    np.testing.assert_allclose(result.scores, result.transform(x), atol=1e-9)
    np.testing.assert_allclose(result.components @ result.components.T, np.eye(4), atol=1e-10)


def test_attribute_prompts_name_only_the_attribute_and_the_noun():
    kind = _attribute_prompts("kind", 1, "en")  # ball
    assert "a photo of a ball" in kind and "a large ball" in kind
    assert not any(w in t for t in kind for w in ("red", "green", "box"))
    size = _attribute_prompts("size", 0, "en")  # small
    assert set(size) >= {"a small box", "a small ball", "there is a small ball on the table"}
    assert not any(w in t for t in size for w in ("medium", "large", "red", "purple"))
    color = _attribute_prompts("color", 4, "ko")  # purple, both kinds, a particle after batchim
    assert "보라 상자 사진" in color and "테이블 위에 보라 공이 있다" in color
    assert not any(w in t for t in color for w in ("빨간", "작은", "큰", "초록"))


def test_jacobi_and_gram_schmidt_against_numpy():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 6))
    sym = a + a.T
    values, vectors = jacobi_eigh(sym)
    np.testing.assert_allclose(np.sort(values), np.linalg.eigvalsh(sym), atol=1e-10)
    np.testing.assert_allclose(sym @ vectors, vectors * values, atol=1e-9)
    q = gram_schmidt(a[:, :3])
    np.testing.assert_allclose(q.T @ q, np.eye(3), atol=1e-12)


def test_jacobi_on_a_nearly_diagonal_matrix_warns_of_nothing():
    # the off-diagonal norm as sum(a**2) - sum(diag**2) cancels below 0 here: sqrt of < 0
    rng = np.random.default_rng(1)
    diagonal = rng.uniform(0.1, 3, 5) * 10 ** rng.uniform(0, 8, 5)
    noise = rng.standard_normal((5, 5))
    sym = np.diag(diagonal) + 1e-9 * (noise + noise.T)
    assert (sym**2).sum() - (np.diag(sym) ** 2).sum() < 0  # the case: cancellation below 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values, _ = jacobi_eigh(sym)
    np.testing.assert_allclose(np.sort(values), np.linalg.eigvalsh(sym), rtol=0, atol=1e-6)


def test_pca_refuses_bad_input():
    with pytest.raises(InputError, match="k must be"):
        pca(np.zeros((5, 3)), k=4)
    with pytest.raises(InputError, match="NaN"):
        pca(np.full((5, 3), np.nan), k=1)


def test_recall_at_k_on_a_toy_case():
    sim = torch.tensor(
        [
            [0.9, 0.1, 0.0, 0.2],  # own match first            -> rank 0
            [0.8, 0.5, 0.9, 0.1],  # two score higher            -> rank 2
            [0.3, 0.3, 0.3, 0.3],  # all tied: ties count against -> rank 3
            [0.0, 0.9, 0.1, 0.4],  # one higher                   -> rank 1
        ]
    )
    assert recall_at_k(sim, ks=(1, 2, 3, 4)) == {1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}


def test_lab_runs_with_tiny_settings(tmp_path):
    out = tmp_path / "clip"
    result = nanovla(
        "lab", "clip", "--out", str(out), "--steps", "3", "--warmup-steps", "1",
        "--batch-size", "16", "--train-images", "64", "--eval-images", "20", "--gallery", "12",
        "--threads", "1", "--no-progress", cwd=tmp_path, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["zero_shot"]) == {"color", "kind", "size"}
    assert set(metrics["zero_shot_heldout_combos"]) == {"color", "kind", "size"}
    assert set(metrics["recall_at_1"]) == {"image_to_text", "text_to_image"}
    assert set(metrics["zero_shot_by_combo"]) == {"color", "kind", "size", "combo"}
    assert all(0.0 <= v <= 1.0 for v in metrics["zero_shot"].values())
    assert (out / "pca.png").stat().st_size > 0 and (out / "loss.png").is_file()
    from nanovla.data.captions import make_captions
    from nanovla.models.clip import CLIP

    clip = CLIP.from_pretrained(out / "model")
    images = make_captions("test", 3).images
    with torch.no_grad():
        image = clip.encode_image(images)
        text = clip.encode_text(["a red box", "빨간 상자"])
    assert image.shape == (3, 128) and text.shape == (2, 128)
    assert torch.allclose(image.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_lab_refuses_bad_options_in_one_line(tmp_path):
    result = nanovla("lab", "clip", "--out", str(tmp_path / "x"), "--steps", "5",
                     "--warmup-steps", "9", cwd=tmp_path)  # fmt: skip
    assert result.returncode != 0
    assert "--warmup-steps" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x" / "metrics.json").exists()
    for changes, name in (
        (dict(styles=("poem",)), "--styles"),
        (dict(languages=("fr",)), "--languages"),
        (dict(single_object_fraction=1.5), "--single-object-fraction"),
        (dict(batch_size=1), "--batch-size"),
    ):
        with pytest.raises(InputError, match=name):
            run(ClipConfig(out=tmp_path / "y", **changes))


def test_pair_sampler_batches_distinct_captions_and_colourless_grey_images():
    from nanovla.labs.clip import training_sets
    from nanovla.labs.clip_pairs import PairSampler
    from nanovla.world.scene import COLORS

    config = ClipConfig(train_images=60, batch_size=48, grayscale=1.0, languages=("en",),
                        shared_captions=False)  # fmt: skip
    sampler = PairSampler(training_sets(config), config)
    images, texts = sampler.sample()
    assert len(texts) == len(set(texts)) == len(images) <= 48
    grey = (images[..., 0] == images[..., 1]).all(axis=(1, 2)) & (
        images[..., 1] == images[..., 2]
    ).all(axis=(1, 2))
    assert grey.any()
    for is_grey, text in zip(grey, texts, strict=True):
        if is_grey:
            assert not any(color in text.split() for color in COLORS)


def test_colour_free_captions_come_with_grey_images():
    from nanovla.labs.clip import training_sets
    from nanovla.labs.clip_pairs import PairSampler
    from nanovla.world.instructions import COLORS_KO
    from nanovla.world.scene import COLORS

    def grey(images):
        return (images.max(axis=-1) == images.min(axis=-1)).all(axis=(1, 2))

    words = (*COLORS, *COLORS_KO)
    for flag in (True, False):
        config = ClipConfig(train_images=80, batch_size=64, grayscale=0.0, hard_negatives=0.0,
                            grey_when_colour_free=flag)  # fmt: skip
        sampler = PairSampler(training_sets(config), config)
        seen = {True: 0, False: 0}
        for _ in range(5):
            images, texts = sampler.sample()
            for is_grey, text in zip(grey(images), texts, strict=True):
                colour_free = not any(word in text for word in words)
                seen[colour_free] += 1
                assert bool(is_grey) == (flag and colour_free)
        assert seen[True] and seen[False]


def test_grey_by_channel_keeps_one_colour_channel_and_luminance_weights_them():
    from nanovla.labs.clip import training_sets
    from nanovla.labs.clip_pairs import PairSampler

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
    for mode in ("channel", "luminance"):
        config = ClipConfig(train_images=8, grey=mode)
        grey = PairSampler(training_sets(config), config)._grey(images)
        assert grey.shape == images.shape and grey.dtype == np.uint8
        assert (grey == grey[..., :1]).all()
        if mode == "channel":
            assert all(any((g[..., 0] == im[..., c]).all() for c in range(3))
                       for g, im in zip(grey, images, strict=True))  # fmt: skip
        else:
            expected = np.round(images.astype(np.float32) @ np.array([0.299, 0.587, 0.114]))
            np.testing.assert_array_equal(grey[..., 0], expected.astype(np.uint8))


def test_permute_and_hue_views_keep_brightness_and_grey():
    from nanovla.labs.clip import training_sets
    from nanovla.labs.clip_pairs import PairSampler, hue_rotate

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (12, 6, 6, 3), dtype=np.uint8)
    config = ClipConfig(train_images=8, grey="permute")
    permuted = PairSampler(training_sets(config), config)._grey(images)
    for out, image in zip(permuted, images, strict=True):
        orders = [p for p in ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
                  if (out == image[..., list(p)]).all()]  # fmt: skip
        assert orders, "every view is a non-identity channel permutation"
    # hue: 120 degrees cycles the channels, grey pixels stay, brightness (mean of RGB) is kept
    cycled = hue_rotate(images, np.full(len(images), 2 * np.pi / 3))
    np.testing.assert_array_equal(cycled, images[..., [2, 0, 1]])
    angles = rng.uniform(0, 2 * np.pi, len(images))
    grey = np.repeat(images[..., :1], 3, axis=-1)
    np.testing.assert_array_equal(hue_rotate(grey, angles), grey)
    mid = rng.integers(60, 196, (12, 6, 6, 3), dtype=np.uint8)  # far from clipping
    rotated = hue_rotate(mid, np.full(len(mid), 0.3)).astype(float)
    assert np.abs(rotated.mean(-1) - mid.astype(float).mean(-1)).max() <= 1.0


def test_hard_negative_groups_differ_in_one_attribute_and_match_their_images():
    from nanovla.labs.clip import training_sets
    from nanovla.labs.clip_pairs import PairSampler
    from nanovla.world.scene import COLORS, KINDS, SIZES

    config = ClipConfig(train_images=300, batch_size=40, hard_negatives=0.5, grayscale=0.0,
                        languages=("en",), shared_captions=False)  # fmt: skip
    sampler = PairSampler(training_sets(config), config)
    index, texts = sampler._groups(60)
    assert len(index) == len(texts) == 60 and sampler.single[index].all()
    for row, text in zip(index.tolist(), texts, strict=True):
        words = text.split()
        assert KINDS[sampler.kind[row]] in words
        named_size = [s for s in SIZES if s in words]
        named_color = [c for c in COLORS if c in words]
        assert named_size in ([], [SIZES[sampler.size[row]]])
        assert named_color in ([], [COLORS[sampler.color[row]]])
    # the batch keeps its size, distinct captions, and about half of it comes from groups
    images, batch = sampler.sample()
    assert len(batch) == len(set(batch)) == len(images) <= 40


def test_decorrelate_names_the_colour_of_objects_whose_colour_gives_their_kind():
    from nanovla.labs.clip import training_sets
    from nanovla.labs.clip_pairs import PairSampler
    from nanovla.world.instructions import COLORS_KO
    from nanovla.world.scene import COLORS

    words = (*COLORS, *COLORS_KO)
    for flag in (True, False):
        config = ClipConfig(train_images=300, decorrelate=flag, styles=("object",))
        sampler = PairSampler(training_sets(config), config)
        # counted from the training labels: green comes only as a box, purple only as a ball
        assert sampler.confounded.tolist() == [False, True, False, False, True]
        rows = np.arange(len(sampler.images))
        for w in range(len(sampler.texts)):
            texts, named = sampler.captions(np.full(len(rows), w), rows)
            free = np.array([not any(word in t for word in words) for t in texts])
            confounded = sampler.confounded[sampler.color]
            assert (free & confounded).any() != flag
            assert free[~confounded].any()  # other colours keep their colour-free captions
            assert named.any() == flag and not (named & ~confounded).any()


def test_shared_captions_keep_every_image_of_the_batch():
    from nanovla.labs.clip import training_sets
    from nanovla.labs.clip_pairs import PairSampler

    for shared in (True, False):
        config = ClipConfig(train_images=40, batch_size=64, shared_captions=shared)
        images, texts = PairSampler(training_sets(config), config).sample()
        assert len(images) == len(texts)
        assert (len(texts) == 64 > len(set(texts))) if shared else len(texts) == len(set(texts))
