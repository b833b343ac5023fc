"""Autoregressive decoding for any model: greedy search and beam search with a length penalty.

A model is seen through one function, `step(tokens, state) -> (log_probs (B, V), new_state)`:

- on the first call `tokens` is the whole prefix (B, T0) (a BOS token, an image's prompt, ...) and
  `state` is None;
- afterwards `tokens` is the last chosen token (B, 1) and `state` is what the previous call
  returned (a KV cache, the tokens so far, encoder memory: anything the model needs).

`state` is any nest (tuple / list / dict) of batch-first tensors, or objects with
`.reorder(index)` returning the same kind; `reorder_state(state, index)` selects its rows, which
is how beams are expanded, reordered and pruned without the model knowing about beams.

Greedy search takes the most likely token each step. Beam search (as in Sutskever et al. 2014,
with the GNMT length penalty of Wu et al. 2016, https://arxiv.org/abs/1609.08144) keeps the
`beam_size` prefixes with the highest summed log-probability; a hypothesis that emits EOS is set
aside with the score

    sum(log p) / lp(|y|),   lp(n) = ((5 + n) / 6) ** alpha,   alpha = length_penalty,

where |y| counts its generated tokens *including* the EOS (the tokens the model scored); beams
still open after `max_new_tokens` are scored the same way with |y| = max_new_tokens. The answer is
the best such hypothesis. Search stops early for a batch row only when no open beam can still
beat its best finished one: log-probs are <= 0, so an open beam's score can only fall, and its
best possible normalized score is its current sum over lp(max length) when alpha > 0 (over
lp(current length) when alpha <= 0). Early stopping therefore never changes the answer.

Departures from common implementations (HF `generate`, fairseq): no `num_return_sequences`,
no n-gram blocking or sampling; candidates per step are the top 2 * beam_size (so that beam_size
non-EOS continuations survive even when beam_size of them end), as they do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

StepFn = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]


def reorder_state(state: Any, index: torch.Tensor) -> Any:
    """Rows `index` (1-D int64) of every batch-first tensor in the nest `state`.

    Objects with a `.reorder(index)` method reorder themselves; None and non-tensor leaves
    (ints, strings) pass through unchanged.
    """
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.index_select(0, index.to(state.device))
    if hasattr(state, "reorder"):
        return state.reorder(index)
    if isinstance(state, dict):
        return {key: reorder_state(value, index) for key, value in state.items()}
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # a NamedTuple
        return type(state)(*(reorder_state(value, index) for value in state))
    if isinstance(state, list | tuple):
        return type(state)(reorder_state(value, index) for value in state)
    return state


def _check(prefix: torch.Tensor, max_new_tokens: int) -> None:
    if prefix.dim() != 2 or prefix.shape[1] < 1:
        raise ValueError(f"prefix must be (B, T0) with T0 >= 1, got {tuple(prefix.shape)}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")


@torch.no_grad()
def greedy_decode(
    step: StepFn, prefix: torch.Tensor, eos_id: int, max_new_tokens: int
) -> list[list[int]]:
    """Most likely token at each step; per row, the generated ids without prefix and EOS."""
    _check(prefix, max_new_tokens)
    batch = prefix.shape[0]
    log_probs, state = step(prefix, None)
    done = torch.zeros(batch, dtype=torch.bool, device=prefix.device)
    out: list[list[int]] = [[] for _ in range(batch)]
    for position in range(max_new_tokens):
        token = log_probs.argmax(dim=-1).masked_fill(done, eos_id)  # (B,)
        for row, (value, finished) in enumerate(zip(token.tolist(), done.tolist())):
            if not finished and value != eos_id:
                out[row].append(value)
        done |= token == eos_id
        if bool(done.all()) or position == max_new_tokens - 1:
            break
        log_probs, state = step(token[:, None], state)
    return out


def length_penalty_factor(length: int, alpha: float) -> float:
    """GNMT's lp(|y|) = ((5 + |y|) / 6) ** alpha."""
    return ((5.0 + length) / 6.0) ** alpha


class _Hypotheses:
    """Finished hypotheses of one batch row: the best normalized score and its tokens."""

    def __init__(self) -> None:
        self.best_score = float("-inf")
        self.best_tokens: list[int] = []

    def add(self, tokens: list[int], total: float, length: int, alpha: float) -> None:
        score = total / length_penalty_factor(length, alpha)
        if score > self.best_score:
            self.best_score, self.best_tokens = score, tokens

    def settled(self, best_open: float, length: int, max_length: int, alpha: float) -> bool:
        """True when no open beam (best summed log-prob `best_open`) can still win."""
        bound_length = max_length if alpha > 0 else length
        return self.best_score >= best_open / length_penalty_factor(bound_length, alpha)


def _expand_first_step(
    log_probs: torch.Tensor, state: Any, beam_size: int
) -> tuple[torch.Tensor, Any, torch.Tensor]:
    """(B, V) log-probs and B-row state -> B*K rows; beam scores (B, K) with only beam 0 open,
    so that the first step picks K different tokens instead of one token K times."""
    batch = log_probs.shape[0]
    rows = torch.arange(batch, device=log_probs.device).repeat_interleave(beam_size)
    scores = torch.full((batch, beam_size), float("-inf"), device=log_probs.device)
    scores[:, 0] = 0.0
    return log_probs[rows], reorder_state(state, rows), scores


@torch.no_grad()
def beam_search(
    step: StepFn,
    prefix: torch.Tensor,
    eos_id: int,
    beam_size: int,
    max_new_tokens: int,
    length_penalty: float = 1.0,
) -> list[list[int]]:
    """Beam search (module docstring); per row, the best hypothesis without prefix and EOS."""
    _check(prefix, max_new_tokens)
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    batch, device = prefix.shape[0], prefix.device
    log_probs, state = step(prefix, None)
    log_probs, state, scores = _expand_first_step(log_probs, state, beam_size)
    vocab = log_probs.shape[-1]
    tokens = torch.zeros(batch * beam_size, 0, dtype=torch.long, device=device)
    finished = [_Hypotheses() for _ in range(batch)]
    done = [False] * batch
    candidates = min(2 * beam_size, beam_size * vocab)
    for length in range(1, max_new_tokens + 1):
        total = scores[:, :, None] + log_probs.float().view(batch, beam_size, vocab)
        top_scores, top_index = total.view(batch, -1).topk(candidates, dim=-1)  # (B, C)
        beam, word = top_index // vocab, top_index % vocab
        is_eos = word == eos_id
        for row, k in (is_eos & top_scores.isfinite()).nonzero().tolist():
            if not done[row]:
                source = row * beam_size + int(beam[row, k])
                finished[row].add(tokens[source].tolist(), float(top_scores[row, k]), length,
                                  length_penalty)  # fmt: skip
        open_scores = top_scores.masked_fill(is_eos, float("-inf"))
        scores, pick = open_scores.topk(beam_size, dim=-1)  # (B, K), sorted, stable enough
        source = beam.gather(1, pick) + torch.arange(batch, device=device)[:, None] * beam_size
        source = source.view(-1)
        chosen = word.gather(1, pick).view(-1)
        tokens = torch.cat([tokens[source], chosen[:, None]], dim=1)
        for row in range(batch):
            best_open = float(scores[row, 0])
            if not done[row] and (
                best_open == float("-inf")
                or finished[row].settled(best_open, length, max_new_tokens, length_penalty)
            ):
                done[row] = True
        if length == max_new_tokens or all(done):
            break
        scores = scores.masked_fill(torch.tensor(done, device=device)[:, None], float("-inf"))
        log_probs, state = step(chosen[:, None], reorder_state(state, source))
    for row in range(batch):  # beams still open at max_new_tokens end there
        for k in range(beam_size):
            if not done[row] and float(scores[row, k]) > float("-inf"):
                finished[row].add(tokens[row * beam_size + k].tolist(), float(scores[row, k]),
                                  tokens.shape[1], length_penalty)  # fmt: skip
    return [hypotheses.best_tokens for hypotheses in finished]
