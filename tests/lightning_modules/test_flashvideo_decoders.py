"""FlashVideo decoders: the RetNet's parallel, chunkwise and recurrent forms give the same
logits (GroupNorm eps 0, float64), the transformer's KV cache changes nothing, every generator
produces the same tokens as its reference path, and bad lengths fail clearly."""

from __future__ import annotations

import pytest
import torch

from lightning_modules.flashvideo import (
    RetNetDecoder,
    TransformerDecoder,
    generate_maskgit,
    generate_retnet,
    generate_transformer,
)

VOCAB = 23


def tokens(b=2, length=29, seed=0):
    return torch.randint(0, VOCAB, (b, length), generator=torch.Generator().manual_seed(seed))


def retnet(**kw):
    torch.manual_seed(0)
    args = dict(d_model=32, num_heads=4, num_layers=2, max_len=64, norm_eps=0.0) | kw
    return RetNetDecoder(VOCAB, **args).double().eval()


def test_retnet_three_forms_same_logits() -> None:
    model, x = retnet(), tokens()
    with torch.no_grad():
        par = model(x)
        chk, states = model.prefill(x, backend="cpu", chunk_size=8)
        assert (chk - par).abs().max().item() < 1e-10
        _, states = model.prefill(x[:, :1], backend="cpu")
        steps = [model(x[:, :1])[:, 0]]
        for n in range(1, x.shape[1]):
            logits, states = model.step(x[:, n], states, n)
            steps.append(logits)
    assert (torch.stack(steps, 1) - par).abs().max().item() < 1e-10


def test_retnet_triton_prefill_matches_parallel() -> None:
    model, x = retnet(), tokens()
    model = model.float()
    with torch.no_grad():
        par = model(x)
        chk, _ = model.prefill(x, backend="triton")
    assert ((chk - par).abs().max() / par.abs().max()).item() < 1e-5


def test_retnet_state_size_does_not_grow() -> None:
    model = retnet()
    sizes = [RetNetDecoder.state_bytes(model.prefill(tokens(1, n))[1]) for n in (3, 40)]
    assert sizes[0] == sizes[1] == 2 * (4 * 8 * 8 + 4 * 8 + 4) * 8


def test_transformer_cache_matches_no_cache() -> None:
    torch.manual_seed(0)
    model = TransformerDecoder(VOCAB, 32, 4, 2, max_len=64).double().eval()
    x = tokens()
    with torch.no_grad():
        full = model(x)
        cache = model.new_cache(2)
        first = model(x[:, :10], cache)
        rest = [model(x[:, n : n + 1], cache)[:, 0] for n in range(10, x.shape[1])]
    got = torch.cat([first, torch.stack(rest, 1)], 1)
    assert (got - full).abs().max().item() < 1e-10
    assert cache.nbytes() == 2 * 2 * 2 * 4 * x.shape[1] * 8 * 8


def test_generators_agree_and_respect_forced_tokens() -> None:
    prompt = tokens(2, 5)
    forced = {9: 3, 14: 3}
    out_r = generate_retnet(retnet(), prompt, 12, forced=forced, backend="cpu")
    model_r = retnet()
    seq = prompt
    with torch.no_grad():
        for _ in range(12):
            nxt = model_r(seq)[:, -1].argmax(-1)
            if seq.shape[1] in forced:
                nxt[:] = forced[seq.shape[1]]
            seq = torch.cat([seq, nxt[:, None]], 1)
    assert torch.equal(out_r, seq)
    torch.manual_seed(1)
    tf = TransformerDecoder(VOCAB, 32, 4, 2, max_len=64).double().eval()
    a = generate_transformer(tf, prompt, 12, use_cache=True, forced=forced)
    b = generate_transformer(tf, prompt, 12, use_cache=False, forced=forced)
    assert torch.equal(a, b) and (a[:, 9] == 3).all() and (a[:, 14] == 3).all()


def test_maskgit_fills_every_position() -> None:
    torch.manual_seed(2)
    model = TransformerDecoder(VOCAB + 1, 32, 4, 2, max_len=64, causal=False).eval()
    allowed = torch.ones(VOCAB + 1, dtype=torch.bool)
    allowed[VOCAB] = False
    out = generate_maskgit(model, tokens(2, 5), 20, VOCAB, iterations=4, allowed=allowed,
                           forced={7: 1})  # fmt: skip
    assert out.shape == (2, 25)
    assert (out < VOCAB).all() and (out[:, 7] == 1).all()


def test_beyond_context_and_bad_heads() -> None:
    model = retnet(max_len=16)
    with pytest.raises(ValueError, match="sequence length 17 exceeds the trained context"):
        model(tokens(1, 17))
    with pytest.raises(ValueError, match="generate_retnet: sequence length 20 exceeds"):
        generate_retnet(model, tokens(1, 4), 16)
    with pytest.raises(ValueError, match="d_model=30, num_heads=4"):
        RetNetDecoder(VOCAB, d_model=30, num_heads=4)
    tf = TransformerDecoder(VOCAB, 32, 4, 1, max_len=8)
    with pytest.raises(
        ValueError,
        match="generate_transformer: sequence length 10 exceeds the trained context max_len=8",
    ):
        generate_transformer(tf, tokens(1, 4), 6)
