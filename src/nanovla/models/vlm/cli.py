"""`nanovla vlm caption|answer`: run a vision-language model on image files.

    nanovla vlm caption --model runs/lab-caption/model --image scene.png
    nanovla vlm answer --model runs/lab-vqa/model --image scene.png --question "what colour is the small ball?"
    nanovla vlm caption --model path/to/hf-blip --image photo.png     # a local Hugging Face BLIP / LLaVA

`--model` is a nanovla VLM directory (`VLM.save_pretrained`) or a local Hugging Face
`BlipForConditionalGeneration` / `LlavaForConditionalGeneration` directory with its processor
(`nanovla.models.vlm.hf`). Prints one line per image: the file and the generated text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro

from nanovla.errors import InputError, MissingError
from nanovla.models.vlm.hf import hf_generate, hf_kind


@dataclass
class CaptionArgs:
    """Caption images with a nanovla VLM or a local Hugging Face BLIP / LLaVA."""

    model: Path
    """model directory: a nanovla VLM (config.json with "type": "nanovla_vlm") or a Hugging Face
    blip / llava directory saved with save_pretrained (weights + processor)"""
    image: list[Path] = field(default_factory=list)
    """image file(s) (PNG, JPEG): RGB (an alpha channel is dropped); a nanovla VLM needs the
    image size it was trained on"""
    language: str = "en"
    """caption language of a nanovla VLM: en or ko"""
    prompt: str | None = None
    """Hugging Face models only: LLaVA's instruction (default "Describe the image.") or the
    beginning of BLIP's caption"""
    beam_size: int = 1
    """1 = greedy decoding, > 1 = beam search with this many beams"""
    max_new_tokens: int = 48
    """longest generated text in tokens"""


@dataclass
class AnswerArgs:
    """Answer a question about images with a nanovla VLM (or a local Hugging Face LLaVA)."""

    model: Path
    """model directory (as for `nanovla vlm caption`)"""
    question: str
    """the question, asked about every image"""
    image: list[Path] = field(default_factory=list)
    """image file(s) (PNG, JPEG)"""
    beam_size: int = 1
    """1 = greedy decoding, > 1 = beam search"""
    max_new_tokens: int = 12
    """longest answer in tokens"""


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 of an image file; missing or not an RGB image -> error naming --image."""
    import imageio.v3 as iio

    if not path.is_file():
        raise MissingError(f"--image: file not found: {path}")
    try:
        image = np.asarray(iio.imread(path))
    except (OSError, ValueError, RuntimeError) as error:
        raise InputError(f"--image: {path} is not a readable image ({error})") from error
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InputError(f"--image: {path} is {image.dtype} of shape {image.shape}; expected 8-bit RGB (H, W, 3)")  # fmt: skip
    return image[..., :3]


def _run(args: CaptionArgs | AnswerArgs) -> list[str]:
    if not args.image:
        raise InputError("--image: give at least one image file")
    if args.beam_size < 1 or args.max_new_tokens < 1:
        raise InputError(f"--beam-size and --max-new-tokens: must be >= 1, got {args.beam_size}, {args.max_new_tokens}")  # fmt: skip
    if not args.model.is_dir():
        raise MissingError(f"--model: directory not found: {args.model}")
    images = [read_image(path) for path in args.image]
    question = args.question if isinstance(args, AnswerArgs) else None
    if question is not None and not question.strip():
        raise InputError("--question: empty question; ask something")
    if hf_kind(args.model) is not None:
        prompt = question if question is not None else args.prompt
        return [hf_generate(args.model, image[None], prompt, args.max_new_tokens, args.beam_size)[0] for image in images]  # fmt: skip
    from nanovla.models.vlm.modeling import VLM

    model = VLM.from_pretrained(args.model, argument="--model")
    size = model.config.image_size
    for path, image in zip(args.image, images, strict=True):
        if image.shape[:2] != (size, size):
            raise InputError(f"--image: {path} is {image.shape[1]}x{image.shape[0]}; this model takes {size}x{size} images")  # fmt: skip
    batch = np.stack(images)
    decoding = dict(beam_size=args.beam_size, max_new_tokens=args.max_new_tokens)
    if question is not None:
        return model.answer(batch, [question] * len(images), **decoding)
    return model.caption(batch, args.language, **decoding)


def main(argv: list[str]) -> int:
    """Entry point of `nanovla vlm`."""
    args = tyro.extras.subcommand_cli_from_dict(
        {"caption": CaptionArgs, "answer": AnswerArgs}, args=argv, prog="nanovla vlm",
        description="Run a vision-language model (nanovla VLM or Hugging Face BLIP / LLaVA) on images.",
    )  # fmt: skip
    for path, text in zip(args.image, _run(args), strict=True):
        print(f"{path}: {text}")
    return 0
