"""`nanovla lab vqa`, `nanovla lab caption` (subprocess smoke runs, tiny settings) and
`nanovla vlm caption|answer` on our models and on tiny Hugging Face BLIP / LLaVA built offline."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from cli_run import nanovla

from nanovla.cli import main as nanovla_main
from nanovla.models.vlm import VLM
from nanovla.models.vlm.hf import save_tiny_blip, save_tiny_llava

TINY = ("--steps", "2", "--batch-size", "8", "--d-model", "16", "--num-layers", "1",
        "--threads", "1", "--warmup", "1")  # fmt: skip


@pytest.fixture(scope="module")
def vqa_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vqa")
    result = nanovla("lab", "vqa", "--out", "run", *TINY, "--eval-scenes", "3", "--tag-steps", "2",
                     "--probe-every", "1", "--caption-fraction", "0.25", cwd=root)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "heldout_templates" in result.stdout and "wall time" in result.stdout
    assert "image tower on cell tags" in result.stdout
    return root / "run"


def test_lab_vqa_writes_metrics_grid_and_a_loadable_model(vqa_run):
    metrics = json.loads((vqa_run / "metrics.json").read_text())
    assert {"colour", "count", "position", "bowl", "all"} <= set(metrics["accuracy"])
    assert set(metrics["splits"]) == {"heldout_scenes", "heldout_templates", "heldout_combos"}
    assert "count" not in metrics["splits"]["heldout_combos"]
    assert metrics["wall_time_s"] > 0 and (vqa_run / "grid.png").stat().st_size > 0
    model = VLM.from_pretrained(vqa_run / "model")
    images = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    answers = model.answer(images, ["is there a red box?", "빨간 상자가 있어?"])
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert len(model.caption(images, beam_size=2)) == 2


def test_lab_caption_writes_bleu_and_attribute_recall(tmp_path):
    result = nanovla("lab", "caption", "--out", "run", *TINY, "--eval-images", "4",
                     "--beam-size", "2", "--arch", "llava", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for split in ("test", "heldout_combos"):
        assert set(metrics["bleu"][split]) == {"greedy", "beam2"}
        assert set(metrics["attribute_recall"][split]["greedy"]) == {"en", "ko"}
    assert (tmp_path / "run" / "grid.png").is_file()
    assert VLM.from_pretrained(tmp_path / "run" / "model").config.arch == "llava"


def _image(path: Path, size: int, channels: int = 3) -> Path:
    shape = (size, size, channels) if channels > 1 else (size, size)
    iio.imwrite(path, np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8))
    return path


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = nanovla_main(["vlm", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _hf_reference(directory: Path, image: np.ndarray, kind: str) -> str:
    """The seed's usage, run directly with transformers."""
    import transformers

    processor = transformers.AutoProcessor.from_pretrained(str(directory))
    if kind == "blip":
        model = transformers.BlipForConditionalGeneration.from_pretrained(str(directory))
        inputs = processor(images=image, return_tensors="pt")
        return processor.decode(model.generate(**inputs, max_new_tokens=10)[0], skip_special_tokens=True).strip()  # fmt: skip
    model = transformers.LlavaForConditionalGeneration.from_pretrained(str(directory))
    prompt = "USER: <image>\nDescribe the image.\nASSISTANT:"
    inputs = processor(text=prompt, images=image, return_tensors="pt")
    ids = model.generate(**inputs, max_new_tokens=10, do_sample=False)
    return processor.decode(ids[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()  # fmt: skip


@pytest.mark.parametrize("kind", ["blip", "llava"])
def test_hugging_face_models_run_through_vlm_caption(kind, tmp_path, capsys):
    directory = (save_tiny_blip if kind == "blip" else save_tiny_llava)(tmp_path / kind)
    image = _image(tmp_path / "scene.png", 40)
    code, out, err = _run(capsys, "caption", "--model", str(directory), "--image", str(image),
                          "--max-new-tokens", "10")  # fmt: skip
    assert code == 0, err
    text = out.strip().split(": ", 1)[1]
    assert text and text == _hf_reference(directory, iio.imread(image), kind)


def test_vlm_commands_on_our_model_and_bad_input(vqa_run, tmp_path, capsys):
    model = str(vqa_run / "model")
    good = str(_image(tmp_path / "good.png", 64))
    code, out, _ = _run(capsys, "caption", "--model", model, "--image", good, good)
    assert code == 0 and out.count("good.png: ") == 2
    code, out, _ = _run(capsys, "answer", "--model", model, "--image", good, "--question", "is there a red box?")  # fmt: skip
    assert code == 0 and out.startswith(good)
    small = str(_image(tmp_path / "small.png", 32))
    gray = str(_image(tmp_path / "gray.png", 64, channels=1))
    other = tmp_path / "clip"
    other.mkdir()
    (other / "config.json").write_text('{"type": "nanovla_clip"}')
    cases = [
        (("caption", "--model", model, "--image", small), "--image: .*small.png is 32x32; this model takes 64x64"),
        (("caption", "--model", model, "--image", gray), "--image: .*gray.png is uint8 of shape \\(64, 64\\)"),
        (("answer", "--model", model, "--image", good, "--question", " "), "--question: empty question"),
        (("caption", "--model", str(other), "--image", good), "--model: .* holds a nanovla_clip model, not a nanovla VLM"),
        (("caption", "--model", str(tmp_path / "none"), "--image", good), "--model: directory not found"),
    ]  # fmt: skip
    import re

    for args, message in cases:
        code, out, err = _run(capsys, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and re.search(message, err), err
