"""The full encoder-decoder Transformer for sequence-to-sequence tasks (the seed's `Transformer`).

    src tokens -> embed * sqrt(d_model) + PE -> encoder -> memory
    tgt tokens -> embed * sqrt(d_model) + PE -> decoder (causal self-attn, cross-attn) -> logits

Departures from the seed: the causal target mask is built inside (the decoder is autoregressive
by definition, so a caller cannot forget it), padding is given as torch-style key padding masks
(True = padding), pre-norm is an option, and `greedy_decode` generates translations.
`decode(..., cache=KVCache)` runs only the new target tokens (`nanovla.nn.kv_cache`), and
`step_function` wraps the model for `nanovla.nn.decoding`'s greedy and beam search.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nanovla.nn.decoding import StepFn
from nanovla.nn.kv_cache import KVCache
from nanovla.nn.positional import SinusoidalPositionalEncoding
from nanovla.nn.transformer import TransformerDecoder, TransformerEncoder


class Transformer(nn.Module):
    """Encoder-decoder Transformer ("Attention is all you need").

    Args:
        src_vocab_size, tgt_vocab_size: vocabulary sizes of the two languages.
        d_model: token width. num_heads: attention heads. d_ff: feed-forward hidden width.
        num_encoder_layers, num_decoder_layers: depth of each stack.
        dropout: dropout everywhere (embeddings, attention, FFN, residuals).
        max_len: longest sequence the positional encoding covers.
        norm_first: pre-norm layers (more stable for deep stacks) instead of the paper's post-norm.
        activation: "relu" (the paper) or "gelu".
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        d_model: int = 512,
        num_heads: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        d_ff: int = 2048,
        dropout: float = 0.1,
        max_len: int = 5000,
        norm_first: bool = False,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if src_vocab_size < 1 or tgt_vocab_size < 1:
            raise ValueError(
                f"vocabulary sizes must be >= 1, got {src_vocab_size} and {tgt_vocab_size}"
            )
        self.d_model = d_model
        self.src_embedding = nn.Embedding(src_vocab_size, d_model)
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, d_model)
        self.pos_encoding = SinusoidalPositionalEncoding(d_model, max_len)
        stack_args = dict(d_model=d_model, num_heads=num_heads, d_ff=d_ff, dropout=dropout)
        stack_args |= dict(activation=activation, norm_first=norm_first)
        self.encoder = TransformerEncoder(num_encoder_layers, **stack_args)
        self.decoder = TransformerDecoder(num_decoder_layers, **stack_args)
        self.fc_out = nn.Linear(d_model, tgt_vocab_size)
        self.dropout = nn.Dropout(dropout)

    def _embed(self, embedding: nn.Embedding, tokens: Tensor, offset: int = 0) -> Tensor:
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(
                f"tokens must be (B, T) int64, got {tuple(tokens.shape)} {tokens.dtype}"
            )
        # sqrt(d_model) keeps the embedding on the scale of the (unit-amplitude) positional code.
        x = embedding(tokens) * math.sqrt(self.d_model)
        if offset == 0:
            return self.dropout(self.pos_encoding(x))
        if offset + tokens.shape[1] > self.pos_encoding.max_len:  # tokens continue a cached prefix
            raise ValueError(f"position {offset + tokens.shape[1]} exceeds max_len")
        return self.dropout(x + self.pos_encoding.pe[:, offset : offset + tokens.shape[1]])

    def encode(self, src: Tensor, src_key_padding_mask: Tensor | None = None) -> Tensor:
        """src: (B, S) token ids -> memory (B, S, d_model)."""
        return self.encoder(
            self._embed(self.src_embedding, src), key_padding_mask=src_key_padding_mask
        )

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        src_key_padding_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
        cache: KVCache | None = None,
    ) -> Tensor:
        """tgt: (B, T) ids, memory: (B, S, d_model) -> next-token logits (B, T, tgt_vocab).

        With `cache` (from `new_cache`), `tgt` holds only the tokens after the cached ones."""
        hidden = self.decoder(
            self._embed(self.tgt_embedding, tgt, 0 if cache is None else cache.length),
            memory,
            tgt_key_padding_mask=tgt_key_padding_mask,
            memory_key_padding_mask=src_key_padding_mask,
            tgt_is_causal=True,  # position t sees targets <= t only
            cache=cache,
        )  # (B, T, d_model)
        return self.fc_out(hidden)

    def new_cache(self) -> KVCache:
        """An empty key/value cache for this decoder."""
        return KVCache(len(self.decoder.layers))

    def step_function(
        self, src: Tensor, src_key_padding_mask: Tensor | None = None, use_cache: bool = True
    ) -> StepFn:
        """`step(tokens, state) -> (log_probs (B, V), state)` for `nanovla.nn.decoding`.

        Encodes `src` once; the state carries the memory and its padding mask (reordered with
        the beams) and either a `KVCache` (use_cache) or every target token so far (the whole
        prefix is decoded again each step: the reference the cache is tested against).
        """
        memory = self.encode(src, src_key_padding_mask)
        pad = src_key_padding_mask
        if pad is None:
            pad = torch.zeros(src.shape, dtype=torch.bool, device=src.device)

        def step(tokens: Tensor, state: dict | None) -> tuple[Tensor, dict]:
            if state is None:
                state = {"memory": memory, "pad": pad}
                state["past"] = self.new_cache() if use_cache else tokens[:, :0]
            if use_cache:
                logits = self.decode(tokens, state["memory"], state["pad"], cache=state["past"])
            else:
                state = {**state, "past": torch.cat([state["past"], tokens], dim=1)}
                logits = self.decode(state["past"], state["memory"], state["pad"])
            return logits[:, -1].float().log_softmax(dim=-1), state

        return step

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        src_key_padding_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """src: (B, S), tgt: (B, T) token ids (teacher forcing) -> logits (B, T, tgt_vocab).

        Padding masks are (B, S) / (B, T) bool with True = padding (torch's convention).
        """
        memory = self.encode(src, src_key_padding_mask)
        return self.decode(tgt, memory, src_key_padding_mask, tgt_key_padding_mask)

    @torch.no_grad()
    def greedy_decode(
        self,
        src: Tensor,
        bos_id: int,
        eos_id: int,
        max_new_tokens: int = 32,
        src_key_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Translate `src` (B, S) by always taking the most likely next token.

        Returns (B, 1 + n) ids starting with `bos_id`, n <= max_new_tokens; a sequence that has
        produced `eos_id` keeps emitting `eos_id` until every sequence is done. Runs the decoder
        over the whole prefix each step (no key/value cache: simple, fine for short outputs).
        """
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        memory = self.encode(src, src_key_padding_mask)  # (B, S, d_model)
        out = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(max_new_tokens):
            logits = self.decode(out, memory, src_key_padding_mask)[:, -1]  # (B, V)
            next_token = logits.argmax(dim=-1).masked_fill(done, eos_id)  # (B,)
            out = torch.cat([out, next_token[:, None]], dim=1)
            done |= next_token == eos_id
            if bool(done.all()):
                break
        return out
