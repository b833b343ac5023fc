"""`VLM`: a BLIP- or LLaVA-style vision-language model with its tokenizer, ready to caption and
answer, and to be saved and loaded.

    vlm = VLM(VLMConfig(arch="llava"), tokenizer)
    loss, metrics = vlm.loss(images_uint8_nhwc, prompts, targets)        # training
    vlm.answer(images, ["what colour is the small ball?"])               # -> ["green"]
    vlm.caption(images)                                                  # -> ["a table with ..."]
    vlm.save_pretrained("runs/vqa/model"); VLM.from_pretrained("runs/vqa/model")

Generation runs through `nanovla.nn.decoding` (greedy, or beam search with a length penalty) on
the model's step function `step_fn(pixels)`: the first call runs the image and the whole
prompt, every later one feeds the last chosen token against the KV cache (`use_cache=False`
recomputes the whole sequence each step instead: the reference the cache is tested against).
Special tokens other than `<eos>` are never generated (their log-probability is -inf).

A model directory holds ``config.json`` (`VLMConfig` + ``"type": "nanovla_vlm"``),
``model.safetensors`` (with a SHA-256 of its tensors, as policies have) and ``tokenizer.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn

from nanovla.errors import InputError, MissingError
from nanovla.io import read_json_object, write_json
from nanovla.models.policy.pretrained import DIGEST_KEY, read_safetensors, tensors_digest
from nanovla.models.text.tokenizer import PAD_ID
from nanovla.models.vlm.blip import BlipStyle
from nanovla.models.vlm.configuration import VLM_TYPE, VLMConfig
from nanovla.models.vlm.layers import check_images
from nanovla.models.vlm.llava import LlavaStyle
from nanovla.models.vlm.text import (
    CAPTION_PROMPTS,
    EOS_ID,
    SPECIAL_IDS,
    VLMTokenizer,
    check_tokenizer,
    decode,
    encode_prompt,
    left_padded,
    load_tokenizer,
    training_batch,
)
from nanovla.nn.decoding import StepFn, beam_search, greedy_decode

CONFIG_NAME, WEIGHTS_NAME, TOKENIZER_NAME = "config.json", "model.safetensors", "tokenizer.json"
TAG_CLASSES: tuple[tuple[str, int], ...] = (
    ("kind", 3), ("colour", 6), ("size", 4), ("bowl", 6),
)  # fmt: skip
"""the cell-tag heads and their classes: 0 = nothing there, then the object's kind (box, ball),
colour (COLORS), size (SIZES), and the colour of a bowl centred in the cell"""
GENERATION_CHUNK = 256
"""images decoded at once (bounds the KV cache's memory)"""


class VLM(nn.Module):
    """Image + prompt -> text, BLIP-style (`arch="blip"`) or LLaVA-style (`arch="llava"`)."""

    def __init__(self, config: VLMConfig, tokenizer: VLMTokenizer) -> None:
        super().__init__()
        check_tokenizer(tokenizer, "tokenizer")
        if config.vocab_size not in (0, tokenizer.vocab_size):
            raise InputError(f"VLMConfig.vocab_size {config.vocab_size} != the tokenizer's {tokenizer.vocab_size}")  # fmt: skip
        config.vocab_size = tokenizer.vocab_size
        self.config, self.tokenizer = config, tokenizer
        self.net = BlipStyle(config) if config.arch == "blip" else LlavaStyle(config)
        if config.cell_tags:
            self.tagger = nn.Linear(self.net.image.width, sum(n for _, n in TAG_CLASSES))
        blocked = torch.zeros(tokenizer.vocab_size, dtype=torch.bool)
        blocked[[i for i in SPECIAL_IDS if i != EOS_ID]] = True
        self.register_buffer("blocked", blocked, persistent=False)

    def pixels(self, images: object, argument: str = "images") -> Tensor:
        """uint8 (N, H, W, 3) images -> normalized (N, 3, H, W) on the model's device."""
        pixels = check_images(images, self.config.image_size, argument)
        return pixels.to(self.blocked.device)

    def loss(
        self,
        images: object,
        prompts: Sequence[str],
        targets: Sequence[str],
        tags: Tensor | None = None,
        tag_weight: float = 1.0,
    ) -> tuple[Tensor, dict[str, float]]:
        """Mean next-token cross-entropy on `targets` (+ <eos>) given images and prompts; with
        `tags` (B, h*w, 4) long (classes of `TAG_CLASSES` per grid cell, -100 = ignore) and
        `config.cell_tags`, plus `tag_weight` x the tag heads' mean cross-entropy."""
        ids, labels = training_batch(self.tokenizer, prompts, targets, self.config.max_text_len)
        device = self.blocked.device
        encoder = self.net.image
        features = encoder._tokens(self.pixels(images))  # (B, N, C)
        logits = self.net(None, ids.to(device), image=encoder.position(features))  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.to(device).flatten(), ignore_index=-100)
        metrics = {"text_loss": float(loss.detach())}
        if tags is not None and self.config.cell_tags and tag_weight > 0:
            tagged = self.tag_loss(features, tags)
            metrics["tag_loss"] = float(tagged.detach())
            loss = loss + tag_weight * tagged
        metrics["loss"] = float(loss.detach())
        return loss, metrics

    def tag_loss(self, features: Tensor, tags: Tensor) -> Tensor:
        """Mean cross-entropy of the cell-tag heads on image features (B, N, C) (the encoder's
        `_tokens`) against `tags` (B, N, 4) long (-100 = ignore). "Nothing there" (class 0)
        counts a quarter: most cells are empty, and the rare occupied ones are what to learn."""
        if not self.config.cell_tags:
            raise InputError("tags: this model has no cell-tag head (config cell_tags is false)")
        if tags.shape != (*features.shape[:2], len(TAG_CLASSES)):
            raise InputError(f"tags: shape {tuple(tags.shape)}, expected {(*features.shape[:2], len(TAG_CLASSES))}")  # fmt: skip
        heads = self.tagger(features).split([n for _, n in TAG_CLASSES], dim=-1)
        total = features.new_zeros(())
        for k, (head, (_, classes)) in enumerate(zip(heads, TAG_CLASSES)):
            weight = torch.ones(classes, device=features.device)
            weight[0] = 0.25
            target = tags[..., k].to(features.device).flatten()
            total = total + F.cross_entropy(head.flatten(0, 1), target, weight, ignore_index=-100)
        return total / len(heads)

    def _log_probs(self, logits: Tensor) -> Tensor:
        return F.log_softmax(logits.float().masked_fill(self.blocked, float("-inf")), dim=-1)

    def step_fn(self, pixels: Tensor, use_cache: bool = True) -> StepFn:
        """`step(tokens, state) -> (log_probs (B, V), state)` for `nanovla.nn.decoding` over
        images `pixels` (B, 3, H, W); the first call's tokens are the left-padded prompts."""

        def cached(tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
            if state is None:
                logits, state = self.net.prefill(pixels, tokens, tokens != PAD_ID)
            else:
                logits, state = self.net.extend(tokens, state)
            return self._log_probs(logits), state

        def recomputed(tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
            if state is None:
                state = {"pixels": pixels, "ids": tokens, "attend": tokens != PAD_ID}
            else:
                attend = torch.ones_like(tokens, dtype=torch.bool)
                state = {"pixels": state["pixels"], "ids": torch.cat([state["ids"], tokens], 1),
                         "attend": torch.cat([state["attend"], attend], 1)}  # fmt: skip
            logits = self.net(state["pixels"], state["ids"], state["attend"])[:, -1]
            return self._log_probs(logits), state

        return cached if use_cache else recomputed

    @torch.no_grad()
    def generate(
        self,
        images: object,
        prompts: Sequence[str],
        max_new_tokens: int = 48,
        beam_size: int = 1,
        length_penalty: float = 1.0,
        use_cache: bool = True,
        argument: str = "questions",
    ) -> list[str]:
        """The text each image's prompt calls for: greedy when beam_size == 1, else beam search."""
        if isinstance(prompts, str) or len(prompts) != len(images):  # type: ignore[arg-type]
            raise InputError(f"{argument}: need one string per image, got {prompts!r:.80}")
        pixels = self.pixels(images)
        rows = [encode_prompt(self.tokenizer, p, argument) for p in prompts]
        was_training, out = self.training, []
        self.eval()
        for start in range(0, len(rows), GENERATION_CHUNK):
            prefix = left_padded(rows[start : start + GENERATION_CHUNK]).to(pixels.device)
            room = min(max_new_tokens, self.config.max_text_len - prefix.shape[1])
            if room < 1:
                raise InputError(f"{argument}: a prompt of {prefix.shape[1]} tokens leaves no room under max_text_len={self.config.max_text_len}")  # fmt: skip
            step = self.step_fn(pixels[start : start + GENERATION_CHUNK], use_cache)
            if beam_size == 1:
                ids = greedy_decode(step, prefix, EOS_ID, room)
            else:
                ids = beam_search(step, prefix, EOS_ID, beam_size, room, length_penalty)
            out += [decode(self.tokenizer, row) for row in ids]
        self.train(was_training)
        return out

    def answer(self, images: object, questions: Sequence[str], **kwargs: Any) -> list[str]:
        """Answers (N strings) to one question per image (N, H, W, 3) uint8."""
        kwargs.setdefault("max_new_tokens", 12)
        return self.generate(images, questions, argument="questions", **kwargs)

    def caption(self, images: object, language: str = "en", **kwargs: Any) -> list[str]:
        """A caption of each image, in English ("en") or Korean ("ko")."""
        if language not in CAPTION_PROMPTS:
            raise InputError(f"language: unknown {language!r}; choose one of {tuple(CAPTION_PROMPTS)}")  # fmt: skip
        prompts = [CAPTION_PROMPTS[language]] * len(images)  # type: ignore[arg-type]
        return self.generate(images, prompts, argument="images", **kwargs)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write config.json, model.safetensors and tokenizer.json (each atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        temporary = directory / f".{WEIGHTS_NAME}.tmp-{os.getpid()}"
        save_file(tensors, str(temporary), metadata={"format": "pt", DIGEST_KEY: tensors_digest(tensors)})  # fmt: skip
        os.replace(temporary, directory / WEIGHTS_NAME)
        self.tokenizer.save(directory / TOKENIZER_NAME)
        write_json(directory / CONFIG_NAME, {"type": VLM_TYPE, **self.config.to_dict()})
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, argument: str = "model") -> VLM:
        """Load a `save_pretrained` directory; another kind of directory -> InputError naming it."""
        directory = Path(directory)
        if not (directory / CONFIG_NAME).is_file():
            raise MissingError(f"{argument}: {directory} has no {CONFIG_NAME} (not a model directory)")  # fmt: skip
        data = read_json_object(directory / CONFIG_NAME)
        kind = data.get("type", data.get("model_type"))
        if kind != VLM_TYPE:
            raise InputError(f"{argument}: {directory} holds a {kind or 'unknown'} model, not a nanovla VLM ({CONFIG_NAME} needs \"type\": \"{VLM_TYPE}\")")  # fmt: skip
        fields = {k: v for k, v in data.items() if k != "type"}
        fields.setdefault("image_position", "learned")  # saved before the sine-cosine table
        fields.setdefault("cell_tags", False)  # saved before the cell-tag head
        config = VLMConfig.from_dict(fields, str(directory / CONFIG_NAME))
        tokenizer = load_tokenizer(directory / TOKENIZER_NAME)
        check_tokenizer(tokenizer, str(directory / TOKENIZER_NAME))
        model = cls(config, tokenizer)
        state = read_safetensors(directory / WEIGHTS_NAME)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            message = " ".join(str(error).split())[:300]
            raise InputError(f"{argument}: {directory / WEIGHTS_NAME} does not fit {CONFIG_NAME} ({message})") from error  # fmt: skip
        model.eval()
        return model


def is_vlm_directory(directory: Path) -> bool:
    """True if `directory/config.json` says it is a nanovla VLM."""
    try:
        return json.loads((directory / CONFIG_NAME).read_text()).get("type") == VLM_TYPE
    except (OSError, ValueError, AttributeError):
        return False
