"""Transformer layers against torch.nn, the full Transformer, positional encodings, checkpointing."""

import math

import pytest
import torch
from torch import nn

from nanovla.nn.masks import causal_mask, lengths_to_padding_mask
from nanovla.nn.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding
from nanovla.nn.seq2seq import Transformer
from nanovla.nn.transformer import (
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    load_from_torch_layer,
)

B, T, S, D, H, FF = 2, 6, 5, 32, 4, 64


def _randomize(module: nn.Module) -> None:
    """Non-trivial norms and biases, so a mis-mapped weight cannot hide."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.2 + (param == 1) * 1.0)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_matches_torch(norm_first: bool, activation: str) -> None:
    reference = nn.TransformerEncoderLayer(
        D, H, FF, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    ).eval()
    _randomize(reference)
    ours = TransformerEncoderLayer(D, H, FF, 0.0, activation, norm_first=norm_first).eval()
    load_from_torch_layer(ours, reference)
    x = torch.randn(B, T, D)
    padding = lengths_to_padding_mask(torch.tensor([T, 3]), T)  # True = padding
    torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        ours(x, key_padding_mask=padding),
        reference(x, src_key_padding_mask=padding),
        atol=1e-5,
        rtol=1e-5,
    )
    # torch's bool src_mask means True = ignore; ours means True = attend.
    torch.testing.assert_close(
        ours(x, is_causal=True),
        reference(x, src_mask=~causal_mask(T)),
        atol=1e-5,
        rtol=1e-5,
    )


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(norm_first: bool) -> None:
    reference = nn.TransformerDecoderLayer(
        D, H, FF, dropout=0.0, batch_first=True, norm_first=norm_first
    ).eval()
    _randomize(reference)
    ours = TransformerDecoderLayer(D, H, FF, 0.0, norm_first=norm_first).eval()
    load_from_torch_layer(ours, reference)
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    memory_padding = lengths_to_padding_mask(torch.tensor([2, S]), S)
    tgt_padding = lengths_to_padding_mask(torch.tensor([T, 4]), T)
    want = reference(
        x,
        memory,
        tgt_mask=~causal_mask(T),
        tgt_key_padding_mask=tgt_padding,
        memory_key_padding_mask=memory_padding,
    )
    got = ours(
        x,
        memory,
        tgt_key_padding_mask=tgt_padding,
        memory_key_padding_mask=memory_padding,
        tgt_is_causal=True,
    )
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    memory_mask = torch.randn(T, S)  # additive float masks mean the same in both
    torch.testing.assert_close(
        ours(x, memory, memory_mask=memory_mask),
        reference(x, memory, memory_mask=memory_mask),
        atol=1e-5,
        rtol=1e-5,
    )


def test_encoder_stack_matches_torch_pre_norm() -> None:
    layer = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, batch_first=True, norm_first=True)
    reference = nn.TransformerEncoder(
        layer, num_layers=2, norm=nn.LayerNorm(D), enable_nested_tensor=False
    ).eval()
    _randomize(reference)
    ours = TransformerEncoder(2, D, H, FF, dropout=0.0, norm_first=True).eval()
    for mine, theirs in zip(ours.layers, reference.layers):
        load_from_torch_layer(mine, theirs)
    ours.norm.load_state_dict(reference.norm.state_dict())
    x = torch.randn(B, T, D)
    torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-5)


def test_loading_checks_the_layer_kind() -> None:
    encoder = TransformerEncoderLayer(D, H, FF)
    with pytest.raises(ValueError, match="decoder"):
        load_from_torch_layer(encoder, nn.TransformerDecoderLayer(D, H, FF, batch_first=True))
    with pytest.raises(ValueError, match="norm_first"):
        load_from_torch_layer(
            encoder, nn.TransformerEncoderLayer(D, H, FF, batch_first=True, norm_first=True)
        )
    with pytest.raises(ValueError, match="activation differs"):
        load_from_torch_layer(
            encoder, nn.TransformerEncoderLayer(D, H, FF, activation="gelu", batch_first=True)
        )
    with pytest.raises(ValueError, match="activation"):
        TransformerEncoderLayer(D, H, FF, activation="tanh")


@pytest.mark.parametrize("stack", ["encoder", "decoder"])
def test_gradient_checkpointing_gives_same_outputs_and_grads(stack: str) -> None:
    torch.manual_seed(1)
    args = dict(num_layers=2, d_model=D, num_heads=H, d_ff=FF, dropout=0.1, norm_first=True)
    model = TransformerEncoder(**args) if stack == "encoder" else TransformerDecoder(**args)
    x = torch.randn(B, T, D, requires_grad=True)
    inputs = (x,) if stack == "encoder" else (x, torch.randn(B, S, D))

    def run(enable: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.set_grad_checkpointing(enable)
        torch.manual_seed(2)  # same dropout masks in both runs
        out = model(*inputs)
        grads = torch.autograd.grad(out.square().sum(), [x, *model.parameters()])
        return out, grads

    plain_out, plain_grads = run(False)
    ckpt_out, ckpt_grads = run(True)
    torch.testing.assert_close(ckpt_out, plain_out)
    for got, want in zip(ckpt_grads, plain_grads):
        torch.testing.assert_close(got, want)


def _tiny_transformer(norm_first: bool = False) -> Transformer:
    torch.manual_seed(3)
    return Transformer(11, 13, D, H, 2, 2, FF, dropout=0.0, max_len=32, norm_first=norm_first)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_is_causal(norm_first: bool) -> None:
    model = _tiny_transformer(norm_first).eval()
    src = torch.randint(0, 11, (B, S))
    tgt = torch.randint(0, 13, (B, T))
    logits = model(src, tgt)
    assert logits.shape == (B, T, 13)
    changed = tgt.clone()
    changed[:, 3:] = (changed[:, 3:] + 1) % 13  # rewrite the future from position 3 on
    new_logits = model(src, changed)
    torch.testing.assert_close(new_logits[:, :3], logits[:, :3])
    assert not torch.allclose(new_logits[:, 3:], logits[:, 3:])


def test_transformer_source_padding_is_ignored() -> None:
    model = _tiny_transformer().eval()
    src = torch.randint(1, 11, (B, S))
    tgt = torch.randint(0, 13, (B, T))
    padding = lengths_to_padding_mask(torch.tensor([S, 3]), S)
    logits = model(src, tgt, src_key_padding_mask=padding)
    src_junk = src.clone()
    src_junk[1, 3:] = 0
    torch.testing.assert_close(model(src_junk, tgt, src_key_padding_mask=padding), logits)


def test_transformer_learns_to_copy_and_greedy_decodes() -> None:
    torch.manual_seed(4)
    model = Transformer(8, 8, 32, 4, 1, 1, 64, dropout=0.0, max_len=16, norm_first=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    bos, eos = 0, 1
    for _ in range(300):
        src = torch.randint(2, 8, (32, 4))
        tgt = torch.cat([torch.full((32, 1), bos), src, torch.full((32, 1), eos)], dim=1)
        logits = model(src, tgt[:, :-1])  # teacher forcing
        loss = nn.functional.cross_entropy(logits.reshape(-1, 8), tgt[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    src = torch.randint(2, 8, (64, 4))
    out = model.greedy_decode(src, bos_id=bos, eos_id=eos, max_new_tokens=6)
    assert out.shape[1] <= 7 and out[:, 0].eq(bos).all()
    assert (out[:, 1:5] == src).float().mean() > 0.85  # chance is 1/6
    assert out[:, 5].eq(eos).float().mean() > 0.85
    with pytest.raises(ValueError, match="tokens"):
        model(src.float(), src)


@pytest.mark.parametrize("d_model", [16, 7])
def test_sinusoidal_encoding_matches_formula(d_model: int) -> None:
    encoding = SinusoidalPositionalEncoding(d_model, max_len=50)
    pe = encoding.pe[0]
    for pos in (0, 1, 17, 49):
        for i in range(d_model):
            angle = pos / 10000 ** ((i - i % 2) / d_model)
            want = math.sin(angle) if i % 2 == 0 else math.cos(angle)
            assert abs(pe[pos, i].item() - want) < 1e-5
    x = torch.randn(2, 9, d_model)
    torch.testing.assert_close(encoding(x), x + pe[:9])
    with pytest.raises(ValueError, match="max_len"):
        encoding(torch.randn(1, 51, d_model))


def test_learned_positional_embedding() -> None:
    embedding = LearnedPositionalEmbedding(max_len=10, d_model=8)
    x = torch.zeros(3, 4, 8)
    out = embedding(x)
    torch.testing.assert_close(out, embedding.weight[:4].expand(3, 4, 8))
    out.sum().backward()
    assert embedding.weight.grad[:4].eq(3).all() and embedding.weight.grad[4:].eq(0).all()
    with pytest.raises(ValueError, match="expected input"):
        embedding(torch.zeros(3, 4, 5))
