"""`nanovla lab ...`: every lab with tiny settings writes metrics.json and its PNGs; bad
arguments are one-line errors with exit code 2. The full-size accuracy targets are measured by
running the labs from the command line (see each lab's docstring), not here."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nanovla.cli import main as nanovla_main
from nanovla.labs import attention, basics, classify, cli, segment, transfer
from nanovla.labs.crops import class_names, labels_for, render_crops
from nanovla.labs.fit import random_shift

REPO = Path(__file__).resolve().parents[1]


def _lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nanovla.cli", "lab", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def _assert_pngs(out: Path, *names: str) -> None:
    for name in names:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name


def test_classify_mlp_cli_writes_metrics_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "classify"
    result = _lab(
        "classify", "--model", "mlp", "--epochs", "3", "--threads", "1", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout and "wall time" in result.stdout
    metrics = _metrics(out)
    assert metrics["model"] == "mlp" and metrics["data"] == "digits"
    assert metrics["num_train"] + metrics["num_test"] == 1797
    assert metrics["num_test"] == 360
    assert len(metrics["history"]["test_accuracy"]) == 3
    # Three epochs already learn something (chance is 10 %).
    assert metrics["test_accuracy"] > 0.5
    assert sum(map(sum, metrics["confusion"])) == 360
    _assert_pngs(out, "confusion.png", "curves.png")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["classify", "--model", "vgg"], "--model"),
        (["classify", "--data", "mnist"], "--data"),
        (["transfer", "--source", "shape"], "--source"),
        (["attention", "--task", "sort"], "--task"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    args: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # In process through the `nanovla` entry point (what the console script runs).
    code = nanovla_main(["lab", *args, "--out", str(tmp_path / "never")])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], lines
    assert not (tmp_path / "never").exists()


def test_lab_help_lists_every_lab(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    for name in cli.LABS:
        assert name in shown
    with pytest.raises(SystemExit):
        cli.main(["classify", "--help"])
    shown = capsys.readouterr().out
    assert "--model" in shown and "resnet18" in shown and "--train-limit" in shown


def test_classify_lenet_in_process(tmp_path: Path) -> None:
    config = classify.ClassifyConfig(
        model="lenet", epochs=1, train_limit=200, out=tmp_path, threads=1
    )
    metrics = classify.run(config)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["num_train"] == 200
    assert _metrics(tmp_path)["config"]["model"] == "lenet"


def test_digit_split_is_fixed_and_stratified() -> None:
    (train_x, train_y), (test_x, test_y) = classify.load_digits_split(8)
    (_, again_y), _ = classify.load_digits_split(8)
    assert torch.equal(train_y, again_y)
    assert train_x.shape == (1437, 1, 8, 8) and test_x.shape == (360, 1, 8, 8)
    counts = torch.bincount(test_y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # every digit ~10 % of the test set
    assert classify.load_digits_split(28)[0][0].shape[-2:] == (28, 28)


def test_basics_checks_the_seed_gradients(tmp_path: Path) -> None:
    metrics = basics.run(basics.BasicsConfig(out=tmp_path, steps=40, points=64))
    assert metrics["gradients"]["dy_dx"] == pytest.approx([0.5, 0.8])
    assert metrics["gradients"]["dy_dw"] == pytest.approx([2.0, 3.0])
    assert metrics["gradients"]["dy_db"] == 1.0
    assert metrics["activations"]["ReLU"] == [0.0, 0.0, 0.0, 1.0, 2.0]
    assert metrics["mlp"]["final_loss"] < metrics["mlp"]["initial_loss"]
    saved = _metrics(tmp_path)
    assert saved["final_loss"] == pytest.approx(metrics["final_loss"])
    _assert_pngs(tmp_path, "loss_curve.png", "activations.png")


def test_attention_lab_learns_reverse(tmp_path: Path) -> None:
    config = attention.AttentionConfig(out=tmp_path, steps=150, d_model=32, batch_size=64)
    metrics = attention.run(config)
    assert metrics["token_accuracy"] > 0.5  # chance is 10 %
    assert metrics["attention_entropy"] < metrics["uniform_entropy"]
    assert len(metrics["head_entropy"]) == config.num_heads
    _assert_pngs(
        tmp_path, "attention_heads.png", "attention_heads_untrained.png", "positional_encoding.png"
    )


def test_head_statistics_of_a_perfect_reverse_head() -> None:
    targets = attention.target_positions("reverse", 4)
    weights = torch.eye(4)[targets].expand(2, 3, 4, 4)  # every query on its target key
    entropy, on_target = attention.head_statistics(weights, targets)
    assert entropy == pytest.approx([0.0] * 3, abs=1e-6)
    assert on_target == pytest.approx([1.0] * 3)
    uniform = torch.full((1, 1, 4, 4), 0.25)
    assert attention.head_statistics(uniform, targets)[0][0] == pytest.approx(math.log(4))


def test_transfer_lab_tiny(tmp_path: Path) -> None:
    config = transfer.TransferConfig(
        out=tmp_path, source_scenes=60, target_scenes=60, pretrain_epochs=1, epochs=2, shots=2,
        width=4,
    )  # fmt: skip
    metrics = transfer.run(config)
    for key in ("feature_extraction_accuracy", "fine_tuning_accuracy", "from_scratch_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["num_few_shot"] == 2 * 6
    assert metrics["target_classes"][0] == "box/small"
    _assert_pngs(tmp_path, "transfer.png")


def test_crops_are_labelled_by_their_colors() -> None:
    images, attributes = render_crops(8, seed=1, image_size=64, crop=16, colors=("red", "blue"))
    assert images.shape[1:] == (3, 16, 16) and 0 <= images.min() and images.max() <= 1
    assert set(attributes["color"].tolist()) <= {0, 2}  # red, blue in COLORS order
    labels = labels_for(attributes, ("color",), ("red", "blue"))
    assert torch.equal(labels, (attributes["color"] == 2).long())
    assert class_names(("kind", "color"), ("red", "blue")) == [
        "box/red", "box/blue", "ball/red", "ball/blue",
    ]  # fmt: skip
    # An exactly centred crop of a red object has a red centre pixel.
    images, attributes = render_crops(4, seed=2, image_size=64, crop=16, colors=("red",))
    centre = images[:, :, 8, 8]  # (M, 3)
    assert (centre[:, 0] > centre[:, 1] + 0.2).all()


def test_segment_lab_tiny(tmp_path: Path) -> None:
    config = segment.SegmentConfig(
        out=tmp_path, epochs=1, train_frames=16, test_frames=8, num_envs=8, base_width=4, depth=2
    )
    metrics = segment.run(config)
    assert set(metrics["class_iou"]) == set(segment.SEGMENT_CLASSES)
    assert 0.0 <= metrics["miou"] <= 1.0
    _assert_pngs(tmp_path, "predictions.png", "curves.png")


def test_segment_masks_follow_the_annotations() -> None:
    images, masks = segment.render_frames(4, seed=3, image_size=64, num_envs=4)
    assert images.shape == (4, 3, 64, 64) and masks.shape == (4, 64, 64)
    present = set(masks.unique().tolist())
    assert {0, 3, 4} <= present  # table, bowls and the gripper are in every scene
    assert present & {1, 2}  # and at least one box or ball


def test_class_iou() -> None:
    truth = torch.tensor([[0, 0, 1, 1]])
    predicted = torch.tensor([[0, 1, 1, 1]])
    iou = segment.class_iou(predicted, truth, 3)
    assert iou[0] == pytest.approx(0.5) and iou[1] == pytest.approx(2 / 3)
    assert math.isnan(iou[2])


def test_random_shift_moves_content_by_at_most_the_shift() -> None:
    image = torch.zeros(1, 1, 5, 5)
    image[0, 0, 2, 2] = 1.0
    generator = torch.Generator().manual_seed(0)
    shifted = random_shift(image.expand(32, 1, 5, 5), generator, 1)
    rows, columns = torch.nonzero(shifted[:, 0])[:, 1:].T
    assert shifted.sum() == 32  # one pixel each, never lost at a shift of 1
    assert rows.min() >= 1 and rows.max() <= 3 and columns.min() >= 1 and columns.max() <= 3
    assert len(set(zip(rows.tolist(), columns.tolist()))) > 1


def test_class_weights_favour_rare_classes() -> None:
    masks = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)
    weights = segment.class_weights(masks, 4)
    assert weights[2] > weights[1] > weights[0] and weights[3] == 0
    frequency = torch.tensor([0.9, 0.09, 0.01, 0.0])
    assert (weights * frequency).sum() == pytest.approx(1.0)
