"""Hugging Face interop: run a local `BlipForConditionalGeneration` or
`LlavaForConditionalGeneration` directory (weights + processor) as the seed does, and build
tiny ones offline.

    nanovla vlm caption --model DIR --image FILE

reads `DIR/config.json`: a nanovla VLM runs through `VLM`; `"model_type": "blip"` through
`BlipProcessor` + `BlipForConditionalGeneration.generate` (the seed's BLIP usage: image ->
caption; with a prompt, the prompt is the caption's beginning as in HF); `"model_type":
"llava"` through `AutoProcessor` + `LlavaForConditionalGeneration.generate` with the seed's
prompt "USER: <image>\\n{prompt}\\nASSISTANT:" (only the new tokens are decoded). Everything
loads from the directory: nothing downloads.

`save_tiny_blip` / `save_tiny_llava` build randomly initialised models from configs, with a
word-level tokenizer and an image processor made in memory, and save them with
`save_pretrained` — the offline stand-ins the tests run through the command. The PIL image
processors are used by name: the default ones want torchvision, which nanovla never installs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from nanovla.errors import InputError

HF_KINDS = ("blip", "llava")
LLAVA_PROMPT = "USER: <image>\n{prompt}\nASSISTANT:"
TINY_WORDS = ("a", "table", "with", "small", "medium", "large", "red", "green", "blue", "yellow",
              "purple", "box", "ball", "bowl", "and", "describe", "the", "image", ".", ",")  # fmt: skip


def hf_kind(directory: Path) -> str | None:
    """ "blip" / "llava" when `directory/config.json` is such a Hugging Face model, else None."""
    try:
        data = json.loads((Path(directory) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kind = data.get("model_type") if isinstance(data, dict) else None
    return kind if kind in HF_KINDS else None


def _transformers():
    try:
        import transformers
    except ImportError as error:
        raise InputError("running a Hugging Face model needs transformers: pip install transformers") from error  # fmt: skip
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return transformers


def hf_generate(
    directory: Path, images: np.ndarray, prompt: str | None, max_new_tokens: int, beam_size: int
) -> list[str]:
    """Text from a Hugging Face blip / llava directory for each (H, W, 3) uint8 image."""
    transformers = _transformers()
    kind = hf_kind(directory)
    processor = transformers.AutoProcessor.from_pretrained(str(directory), local_files_only=True)
    if kind == "blip":
        model = transformers.BlipForConditionalGeneration.from_pretrained(str(directory), local_files_only=True)  # fmt: skip
        text = None if prompt is None else [prompt] * len(images)
    else:
        model = transformers.LlavaForConditionalGeneration.from_pretrained(str(directory), local_files_only=True)  # fmt: skip
        text = [LLAVA_PROMPT.format(prompt=prompt or "Describe the image.")] * len(images)
    model.eval()
    inputs = processor(images=list(images), text=text, return_tensors="pt")
    ids = model.generate(**inputs, max_new_tokens=max_new_tokens, num_beams=beam_size,
                         do_sample=False)  # fmt: skip
    if kind == "llava":
        ids = ids[:, inputs["input_ids"].shape[1] :]
    return [processor.decode(row, skip_special_tokens=True).strip() for row in ids]


def _word_tokenizer(words: list[str], specials: dict[str, str]):
    """A PreTrainedTokenizerFast over `words` (lower-cased, split on whitespace/punctuation)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    transformers = _transformers()
    vocab = {word: i for i, word in enumerate(words)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=specials["unk_token"]))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, **specials)


def save_tiny_blip(directory: str | os.PathLike, image_size: int = 32, seed: int = 0) -> Path:
    """A ~60k-parameter random `BlipForConditionalGeneration` + `BlipProcessor` in `directory`."""
    import torch

    transformers = _transformers()
    from transformers.models.blip import BlipImageProcessorPil

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS]
    tokenizer = _word_tokenizer(words, {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                                        "sep_token": "[SEP]", "mask_token": "[MASK]"})  # fmt: skip
    images = BlipImageProcessorPil(size={"height": image_size, "width": image_size})
    processor = transformers.BlipProcessor(image_processor=images, tokenizer=tokenizer)
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    config = transformers.BlipConfig(
        text_config=dict(vocab_size=len(words), bos_token_id=2, sep_token_id=3, pad_token_id=0,
                         eos_token_id=3, max_position_embeddings=64, **small),
        vision_config=dict(image_size=image_size, patch_size=8, **small), projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = transformers.BlipForConditionalGeneration(config).eval()
    model.save_pretrained(str(directory))
    processor.save_pretrained(str(directory))
    return Path(directory)


def save_tiny_llava(directory: str | os.PathLike, image_size: int = 32, seed: int = 0) -> Path:
    """A random `LlavaForConditionalGeneration` (CLIP vision tower + Llama LM) + processor."""
    import torch

    transformers = _transformers()
    from transformers.models.clip import CLIPImageProcessorPil

    words = ["<pad>", "<unk>", "<s>", "</s>", "<image>", "user", ":", "assistant", *TINY_WORDS]
    tokenizer = _word_tokenizer(words, {"unk_token": "<unk>", "pad_token": "<pad>", "bos_token": "<s>",
                                        "eos_token": "</s>", "extra_special_tokens": {"image_token": "<image>"}})  # fmt: skip
    images = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                   crop_size={"height": image_size, "width": image_size})  # fmt: skip
    processor = transformers.LlavaProcessor(
        image_processor=images, tokenizer=tokenizer, patch_size=8, image_token="<image>",
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
    )  # fmt: skip
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    config = transformers.LlavaConfig(
        vision_config=transformers.CLIPVisionConfig(image_size=image_size, patch_size=8, **small),
        text_config=transformers.LlamaConfig(vocab_size=len(words), num_key_value_heads=2,
                                             max_position_embeddings=128, bos_token_id=2,
                                             eos_token_id=3, pad_token_id=0, **small),
        image_token_index=4, vision_feature_layer=-1, vision_feature_select_strategy="default",
    )  # fmt: skip
    torch.manual_seed(seed)
    model = transformers.LlavaForConditionalGeneration(config).eval()
    model.save_pretrained(str(directory))
    processor.save_pretrained(str(directory))
    return Path(directory)
