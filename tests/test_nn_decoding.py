"""Greedy and beam search (nanovla.nn.decoding) against exhaustive search on a tiny vocabulary."""

import itertools
from typing import Any, NamedTuple

import pytest
import torch

from nanovla.nn.decoding import (
    beam_search,
    greedy_decode,
    length_penalty_factor,
    reorder_state,
)

V, EOS, HIDDEN = 4, 0, 8


class TinyRNN:
    """A fixed random RNN language model: its next-token distribution depends on the whole
    prefix, so search order matters. State: the hidden vector (B, HIDDEN)."""

    def __init__(self, seed: int, eos_bias: float = 0.0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.embed = torch.randn(V + 1, HIDDEN, generator=gen)  # id V = BOS
        self.recur = torch.randn(HIDDEN, HIDDEN, generator=gen) * 0.7
        self.out = torch.randn(HIDDEN, V, generator=gen) * 1.5
        self.out_bias = torch.zeros(V)
        self.out_bias[EOS] = eos_bias
        self.calls = 0

    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        self.calls += 1
        h = torch.zeros(tokens.shape[0], HIDDEN) if state is None else state
        for t in range(tokens.shape[1]):
            h = torch.tanh(h @ self.recur + self.embed[tokens[:, t]])
        return (h @ self.out + self.out_bias).log_softmax(-1), h

    def score(self, prefix: torch.Tensor, sequence: list[int]) -> float:
        log_probs, state = self.step(prefix, None)
        total = 0.0
        for token in sequence:
            total += float(log_probs[0, token])
            log_probs, state = self.step(torch.tensor([[token]]), state)
        return total


def exhaustive(model: TinyRNN, prefix: torch.Tensor, max_new: int, alpha: float) -> list[int]:
    """The best normalized score over every sequence: words then EOS, or max_new words."""
    best, best_seq = float("-inf"), None
    words = [w for w in range(V) if w != EOS]
    for length in range(0, max_new + 1):
        for body in itertools.product(words, repeat=length):
            scored = list(body) + ([EOS] if length < max_new else [])
            score = model.score(prefix, scored) / length_penalty_factor(len(scored), alpha)
            if score > best:
                best, best_seq = score, list(body)
    return best_seq


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.5, -0.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_equals_exhaustive_search(seed: int, alpha: float) -> None:
    model = TinyRNN(seed, eos_bias=-1.0)
    prefix = torch.tensor([[V], [V], [1]])  # three rows: the batch bookkeeping is tested too
    max_new = 4
    found = beam_search(model.step, prefix, EOS, beam_size=40, max_new_tokens=max_new,
                        length_penalty=alpha)  # fmt: skip
    expected = [exhaustive(model, prefix[i : i + 1], max_new, alpha) for i in range(3)]
    assert found == expected


def test_narrow_beams_never_score_below_greedy() -> None:
    """Beam 1 keeps greedy's hypothesis among its candidates (and EOS ends set aside on the
    way), so it scores at least as well; a beam of 3 usually finds the exhaustive optimum."""
    wins = 0
    for seed in range(12):
        model = TinyRNN(seed, eos_bias=-1.0)
        prefix = torch.tensor([[V]])

        def total(tokens: list[int], model: TinyRNN = model) -> float:
            return model.score(torch.tensor([[V]]), tokens + [EOS] * (len(tokens) < 5))

        greedy = greedy_decode(model.step, prefix, EOS, max_new_tokens=5)[0]
        beam1 = beam_search(model.step, prefix, EOS, 1, 5, length_penalty=0.0)[0]
        best = exhaustive(model, prefix, 5, 0.0)
        assert total(best) >= total(beam1) - 1e-6
        assert total(beam1) >= total(greedy) - 1e-6
        wins += beam_search(model.step, prefix, EOS, 3, 5, length_penalty=0.0)[0] == best
    assert wins >= 6


def test_greedy_takes_argmax_and_stops_at_eos() -> None:
    table = torch.tensor([[0.0, 5.0, 1.0, 0.0], [0.0, 1.0, 5.0, 0.0], [9.0, 0.0, 0.0, 0.0]])

    def step(tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        t = 0 if state is None else state + 1  # row r of the table at step r
        rows = torch.full((tokens.shape[0],), min(t, 2), dtype=torch.long)
        return table[rows].log_softmax(-1), t

    assert greedy_decode(step, torch.zeros(2, 3, dtype=torch.long), EOS, 10) == [[1, 2], [1, 2]]
    assert greedy_decode(step, torch.zeros(1, 1, dtype=torch.long), EOS, 1) == [[1]]


def test_greedy_rows_finish_independently() -> None:
    model = TinyRNN(3)
    prefix = torch.tensor([[V], [2], [3]])
    together = greedy_decode(model.step, prefix, EOS, 6)
    alone = [greedy_decode(model.step, prefix[i : i + 1], EOS, 6)[0] for i in range(3)]
    assert together == alone
    assert all(EOS not in row and len(row) <= 6 for row in together)


def test_length_penalty_favours_longer_outputs() -> None:
    lengths = {}
    for alpha in (0.0, 3.0):
        total = 0
        for seed in range(10):
            model = TinyRNN(seed, eos_bias=1.0)
            out = beam_search(model.step, torch.tensor([[V]]), EOS, 4, 8, length_penalty=alpha)
            total += len(out[0])
        lengths[alpha] = total
    assert lengths[3.0] > lengths[0.0]


class Pair(NamedTuple):
    a: torch.Tensor
    b: int


class Reorderable:
    def __init__(self, rows: list[int]) -> None:
        self.rows = rows

    def reorder(self, index: torch.Tensor) -> "Reorderable":
        return Reorderable([self.rows[i] for i in index.tolist()])


def test_reorder_state_walks_nests() -> None:
    x = torch.arange(6).view(3, 2)
    state = {
        "x": x,
        "list": [x[:, 0], (x[:, 1],)],
        "pair": Pair(x, 7),
        "obj": Reorderable([5, 6, 7]),
    }
    index = torch.tensor([2, 2, 0])
    out = reorder_state(state, index)
    assert out["x"].tolist() == [[4, 5], [4, 5], [0, 1]]
    assert out["list"][0].tolist() == [4, 4, 0] and isinstance(out["list"][1], tuple)
    assert isinstance(out["pair"], Pair) and out["pair"].b == 7
    assert out["obj"].rows == [7, 7, 5]
    assert reorder_state(None, index) is None


def test_bad_arguments_are_refused() -> None:
    model = TinyRNN(0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_decode(model.step, torch.tensor([[V]]), EOS, 0)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model.step, torch.tensor([[V]]), EOS, 0, 3)
    with pytest.raises(ValueError, match="prefix"):
        beam_search(model.step, torch.tensor([V]), EOS, 2, 3)


@pytest.mark.parametrize("norm_first", [False, True])
def test_kv_cache_equals_full_recomputation(norm_first: bool) -> None:
    from nanovla.nn.seq2seq import Transformer

    torch.manual_seed(0)
    model = Transformer(11, 13, d_model=16, num_heads=4, num_encoder_layers=2,
                        num_decoder_layers=2, d_ff=32, dropout=0.0, norm_first=norm_first).eval()  # fmt: skip
    src = torch.randint(1, 11, (3, 7))
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[1, 5:] = True  # row 1 is padded: the cached cross-attention keeps the mask
    tgt = torch.randint(0, 13, (3, 6))
    with torch.no_grad():
        memory = model.encode(src, pad)
        full = model.decode(tgt, memory, pad)  # (B, T, V)
        cache = model.new_cache()
        chunks = [model.decode(tgt[:, :2], memory, pad, cache=cache)]  # a 2-token first chunk
        chunks += [model.decode(tgt[:, t : t + 1], memory, pad, cache=cache) for t in range(2, 6)]
    assert cache.length == 6
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, atol=1e-5, rtol=1e-5)
    cached, plain = (model.step_function(src, pad, use_cache=flag) for flag in (True, False))
    bos = torch.zeros(3, 1, dtype=torch.long)
    for search in (
        lambda step: greedy_decode(step, bos, 1, 8),
        lambda step: beam_search(step, bos, 1, 3, 8, length_penalty=0.6),
    ):
        assert search(cached) == search(plain)
