"""Instruction strings -> text vectors, with per-string caching.

Instructions repeat a lot (a few hundred templates over thousands of frames), so:

- every batch is deduplicated: each distinct string is encoded once and the rows are gathered;
- token ids are cached per string always (tokenising is parameter-free);
- text *features* are cached per string when they cannot change: always for the frozen MiniLM,
  and for the trainable encoders only in eval mode (`select_action`). Entering train mode or
  loading weights empties the cache. So `select_action` costs only the vision pass.

Word dropout (`PolicyConfig.word_dropout`, training only): each token of each distinct string
in a batch becomes ``<unk>`` with that probability, so the policy learns to act from the words
it does know when a held-out paraphrase brings words it never saw (which encode as ``<unk>``).

Word insertion (`PolicyConfig.word_insertion`, training only, lstm and transformer encoders):
each distinct string in a batch gets, with that probability, one word of the vocabulary drawn
uniformly and put at a uniform position (EDA's random insertion: Wei & Zou 2019,
https://arxiv.org/abs/1901.11196). Dropout teaches the policy to act without a word; insertion
teaches it to act despite one that belongs to another task ("drive the box into the left edge
with the gripper": "gripper" is otherwise only in reach instructions).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nanovla.errors import InputError
from nanovla.models.policy.configuration_policy import PolicyConfig
from nanovla.models.text.lstm import LSTMTextEncoder
from nanovla.models.text.tokenizer import PAD_ID, UNK_ID, Tokenizer

MAX_CACHED = 4096  # distinct strings kept; a pathological stream of new strings cannot grow it
MAX_TOKENIZED = 65536
"""token lists kept (a few hundred bytes each): the colour swap and the Korean scrambling turn
the default dataset's ~2000 instructions into more than 4096 training strings, and a cache
that is cleared whenever it fills re-tokenizes them over and over"""


def _build_transformer(config: PolicyConfig, tokenizer: Tokenizer) -> nn.Module:
    try:
        from nanovla.models.text.transformer import TransformerTextEncoder
    except ImportError as error:
        raise InputError(
            "text='transformer' needs nanovla.models.text.transformer.TransformerTextEncoder, "
            f"which is not available in this install ({error}); use text='lstm' or 'minilm'"
        ) from None
    return TransformerTextEncoder(
        vocab_size=tokenizer.vocab_size,
        d_model=config.text_hidden_dim,
        max_len=tokenizer.max_length,
        out_dim=config.text_dim,
        pad_id=tokenizer.pad_id,
    )


class InstructionEncoder(nn.Module):
    """list of B instruction strings -> (B, out_dim) float tensor on `device`."""

    def __init__(self, config: PolicyConfig, tokenizer: Tokenizer | None = None) -> None:
        super().__init__()
        self.kind = config.text
        self.tokenizer = tokenizer
        self.word_dropout = config.word_dropout
        self.word_insertion = config.word_insertion if self.kind in ("lstm", "transformer") else 0.0
        if self.kind == "minilm":
            from nanovla.models.text.minilm import MiniLMTextEncoder

            self.encoder: nn.Module = MiniLMTextEncoder()
        elif self.kind.startswith("clip:"):  # the CLIP's text tower reads its own vocabulary
            from nanovla.models.clip_policy import pretrained_text_encoder

            path = self.kind.removeprefix("clip:")
            self.encoder, self.tokenizer = pretrained_text_encoder(path, config.clip_frozen)
        elif self.kind.startswith("translate:"):  # the translation model's encoder, frozen
            from nanovla.models.text.translator import TranslationTextEncoder

            self.encoder = TranslationTextEncoder(self.kind.removeprefix("translate:"))
        else:
            if tokenizer is None:
                raise InputError(
                    f"text={self.kind!r} needs a tokenizer: Tokenizer.from_texts(dataset.tasks) "
                    "or Policy.from_dataset(config, dataset)"
                )
            if self.kind == "lstm":
                self.encoder = LSTMTextEncoder(
                    tokenizer.vocab_size, config.text_embed_dim, config.text_hidden_dim,
                    config.text_dim, pad_id=tokenizer.pad_id,
                )  # fmt: skip
            else:
                self.encoder = _build_transformer(config, tokenizer)
        self.out_dim: int = self.encoder.out_dim
        self._token_cache: dict[str, list[int]] = {}
        self._feature_cache: dict[str, torch.Tensor] = {}
        self.register_load_state_dict_post_hook(lambda module, _keys: module.clear_cache())

    @property
    def frozen(self) -> bool:
        return self.kind == "minilm" or self.kind.startswith("translate:")

    def clear_cache(self) -> None:
        self._feature_cache.clear()

    def train(self, mode: bool = True) -> InstructionEncoder:
        if mode and not self.frozen:
            self.clear_cache()  # weights are about to change
        return super().train(mode)

    def forward(self, texts: Sequence[str], device: torch.device | None = None) -> torch.Tensor:
        """`texts`: B strings -> (B, out_dim); each distinct string is encoded once."""
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise InputError("instructions must be a list of strings")
        unique = list(dict.fromkeys(texts))
        index = {text: i for i, text in enumerate(unique)}
        rows = torch.tensor([index[text] for text in texts], device=device)  # (B,)
        use_cache = self.frozen or not self.training
        if not use_cache:
            return self._encode(unique, device)[rows]  # (B, out_dim)
        missing = [text for text in unique if text not in self._feature_cache]
        if missing:
            if len(self._feature_cache) + len(missing) > MAX_CACHED:
                self._feature_cache.clear()
            # no_grad, but not inference tensors: an eval-mode forward with autograd on (a
            # validation pass) may reuse what select_action cached.
            with torch.inference_mode(False), torch.no_grad():
                features = self._encode(missing, device)
            self._feature_cache.update(zip(missing, features))
        stacked = torch.stack([self._feature_cache[text] for text in unique])  # (U, out_dim)
        return stacked.to(device)[rows]  # (B, out_dim)

    def _encode(self, texts: list[str], device: torch.device | None) -> torch.Tensor:
        """Uncached encoding of distinct strings -> (U, out_dim)."""
        if self.frozen:
            return self.encoder(texts).to(device)
        ids, lengths = self._tokenize(texts)
        if self.training and self.word_insertion > 0:
            assert self.tokenizer is not None  # lstm and transformer encoders have one
            ids, lengths = insert_words(
                ids, lengths, self.word_insertion, self.tokenizer.vocab_size,
                self.tokenizer.max_length,
            )  # fmt: skip
        if self.training and self.word_dropout > 0:
            # Word dropout: hide random tokens as <unk>, as unseen paraphrase words will be.
            hide = torch.rand(ids.shape) < self.word_dropout
            ids = torch.where(hide & (ids != PAD_ID), UNK_ID, ids)
        return self.encoder(ids.to(device), lengths.to(device))

    def _tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ids (U, T) and lengths (U,), tokenising each string only the first time."""
        if len(self._token_cache) + len(texts) > MAX_TOKENIZED:
            self._token_cache.clear()
        for text in texts:
            if text not in self._token_cache:
                self._token_cache[text] = self.tokenizer.tokenize(text)
        return Tokenizer.pad([self._token_cache[text] for text in texts])  # (U, T), (U,)


def insert_words(
    ids: torch.Tensor, lengths: torch.Tensor, probability: float, vocab_size: int, max_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ids (U, T) and lengths (U,) with, in each row with `probability` (and shorter than
    `max_length`), one word id drawn uniformly from [2, vocab_size) (no <pad>, no <unk>) put at a
    uniform position in [0, length]; the draws use torch's global generator (so a resumed run
    draws the same words). Returns the new (ids, lengths); rows not chosen are unchanged."""
    count, width = ids.shape
    chosen = (torch.rand(count) < probability) & (lengths < max_length)  # (U,)
    words = torch.randint(UNK_ID + 1, max(vocab_size, UNK_ID + 2), (count,))  # (U,)
    where = (torch.rand(count) * (lengths + 1)).long().clamp(max=lengths)  # (U,) in [0, len]
    if vocab_size <= UNK_ID + 1 or not bool(chosen.any()):
        return ids, lengths
    new_lengths = lengths + chosen.long()
    column = torch.arange(int(new_lengths.max()))[None, :]  # (1, T')
    shifted = chosen[:, None] & (column > where[:, None])  # read one column to the left
    source = (column - shifted.long()).clamp(max=width - 1)  # (U, T')
    out = ids.gather(1, source.expand(count, -1))
    out = torch.where(column < new_lengths[:, None], out, PAD_ID)
    out = torch.where(chosen[:, None] & (column == where[:, None]), words[:, None], out)
    return out, new_lengths
