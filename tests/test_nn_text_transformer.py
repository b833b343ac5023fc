"""TransformerTextEncoder: shapes, padding invariance, the three ways to give padding, errors."""

import pytest
import torch

from nanovla.models.text.transformer import TransformerTextEncoder

VOCAB, PAD = 20, 0


def _encoder(**kwargs: object) -> TransformerTextEncoder:
    torch.manual_seed(0)
    args = dict(vocab_size=VOCAB, d_model=32, num_heads=4, num_layers=2, d_ff=64, pad_id=PAD)
    return TransformerTextEncoder(**(args | kwargs)).eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.tensor([[5, 6, 7, 8, 9], [3, 4, PAD, PAD, PAD]])
    return tokens, torch.tensor([5, 2])


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_shapes_and_out_dim(positional: str) -> None:
    tokens, lengths = _batch()
    assert _encoder(positional=positional)(tokens, lengths).shape == (2, 32)
    projected = _encoder(out_dim=12, positional=positional)
    assert projected.out_dim == 12
    assert projected(tokens, lengths).shape == (2, 12)


def test_lengths_padding_mask_and_pad_id_agree() -> None:
    encoder = _encoder(out_dim=8)
    tokens, lengths = _batch()
    by_lengths = encoder(tokens, lengths)
    torch.testing.assert_close(encoder(tokens, padding_mask=tokens == PAD), by_lengths)
    torch.testing.assert_close(encoder(tokens), by_lengths)


def test_padding_does_not_change_the_encoding() -> None:
    encoder = _encoder(out_dim=8)
    alone = encoder(torch.tensor([[3, 4]]))  # no padding at all
    tokens, lengths = _batch()
    in_batch = encoder(tokens, lengths)[1:]
    torch.testing.assert_close(in_batch, alone, atol=1e-5, rtol=1e-5)
    junk = tokens.clone()
    junk[1, 2:] = 17  # garbage after the real tokens, masked by lengths
    torch.testing.assert_close(encoder(junk, lengths)[1:], alone, atol=1e-5, rtol=1e-5)
    longer = torch.cat([tokens, torch.full((2, 3), PAD)], dim=1)  # more padding
    torch.testing.assert_close(
        encoder(longer, lengths), encoder(tokens, lengths), atol=1e-5, rtol=1e-5
    )


def test_word_order_matters_and_gradients_flow() -> None:
    encoder = _encoder(out_dim=8).train()
    forward = encoder(torch.tensor([[5, 6, 7]]))
    backward = encoder(torch.tensor([[7, 6, 5]]))
    assert not torch.allclose(forward, backward)  # positional encoding makes order visible
    forward.sum().backward()
    grads = [p.grad for p in encoder.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert encoder.embedding.weight.grad[PAD].abs().sum() == 0  # pad embedding is never trained


def test_gradient_checkpointing_equality() -> None:
    encoder = _encoder(out_dim=8).train()
    tokens, lengths = _batch()
    plain = encoder(tokens, lengths)
    grads = torch.autograd.grad(plain.sum(), list(encoder.parameters()), allow_unused=True)
    encoder.encoder.set_grad_checkpointing(True)
    ckpt = encoder(tokens, lengths)
    ckpt_grads = torch.autograd.grad(ckpt.sum(), list(encoder.parameters()), allow_unused=True)
    torch.testing.assert_close(ckpt, plain)
    for got, want in zip(ckpt_grads, grads):
        assert (got is None) == (want is None)
        if got is not None:
            torch.testing.assert_close(got, want)


def test_bad_input_is_a_clear_error() -> None:
    encoder = _encoder(max_len=8)
    tokens, lengths = _batch()
    with pytest.raises(ValueError, match="int64"):
        encoder(tokens.float())
    with pytest.raises(ValueError, match="not both"):
        encoder(tokens, lengths, padding_mask=tokens == PAD)
    with pytest.raises(ValueError, match="lengths"):
        encoder(tokens, torch.tensor([6, 2]))
    with pytest.raises(ValueError, match="max_len"):
        encoder(torch.ones(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="non-padding"):
        encoder(torch.tensor([[PAD, PAD]]))
    with pytest.raises(ValueError, match="positional"):
        _encoder(positional="rotary")
    with pytest.raises(ValueError, match="pad_id"):
        _encoder(pad_id=VOCAB)
