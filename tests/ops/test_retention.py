"""Retention (ops/retention): the parallel, recurrent and chunkwise forms agree, the Triton
chunkwise kernel (TRITON_INTERPRET=1 on the CPU, set in tests/conftest.py) matches the float64
reference forward and backward, the normalisation is cancelled by an eps-0 group norm, and bad
input fails with a message that names it.

Tolerances: float64 forms 1e-10; float32 against float64 1e-5 (relative to max |ref|);
float16 inputs 1e-2.
"""

from __future__ import annotations

import pytest
import torch

from ops.retention import (
    RetentionState,
    chunkwise_retention,
    multiscale_gammas,
    retention,
    retention_chunkwise,
    retention_parallel,
    retention_recurrent,
    retention_step,
)

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# name: (B, H, L, d_k, d_v)
SHAPES = {
    "tiny": (1, 1, 1, 4, 3),
    "odd": (2, 3, 37, 8, 5),
    "exact_chunks": (1, 2, 32, 16, 16),
    "wide_v": (1, 2, 21, 6, 70),  # d_v > one Triton value block
}
TOL = {torch.float32: 1e-5, torch.float16: 1e-2}


def qkv(shape, dtype=torch.float64, seed=0):
    b, h, length, dk, dv = shape
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (
        torch.randn(b, h, length, d, generator=gen, dtype=torch.float64).to(dtype)
        for d in (dk, dk, dv)
    )
    return q, k, v, multiscale_gammas(h)


def rel(got, ref):
    return ((got.double() - ref).abs().max() / ref.abs().max().clamp(min=1e-30)).item()


def test_multiscale_gammas() -> None:
    assert multiscale_gammas(3).tolist() == [1 - 2**-5, 1 - 2**-6, 1 - 2**-7]


def test_parallel_by_hand() -> None:
    """Two tokens, one head, d = 1, unnormalised: o_1 = γ q_1 k_0 v_0 + q_1 k_1 v_1."""
    q = torch.tensor([2.0, 3.0], dtype=torch.float64).view(1, 1, 2, 1)
    k = torch.tensor([5.0, 7.0], dtype=torch.float64).view(1, 1, 2, 1)
    v = torch.tensor([11.0, 13.0], dtype=torch.float64).view(1, 1, 2, 1)
    g = torch.tensor([0.5], dtype=torch.float64)
    o = retention_parallel(q, k, v, g, normalize=False).flatten().tolist()
    assert o == [2 * 5 * 11, 0.5 * 3 * 5 * 11 + 3 * 7 * 13]
    # normalised: row 1 divided by max(sqrt(1.5), |0.5·15 + 21|)
    on = retention_parallel(q, k, v, g).flatten()
    assert on[1].item() == pytest.approx(o[1] / 28.5)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_three_forms_agree(shape, normalize) -> None:
    q, k, v, g = qkv(shape)
    par = retention_parallel(q, k, v, g, normalize)
    rec, s_rec = retention_recurrent(q, k, v, g, normalize=normalize)
    for chunk in (1, 4, 16, 64):
        chk, s_chk = retention_chunkwise(q, k, v, g, chunk_size=chunk, normalize=normalize)
        assert rel(chk, par) < 1e-10
        for a, b in zip(s_chk, s_rec, strict=True):
            assert (a - b).abs().max().item() < 1e-10
    assert rel(rec, par) < 1e-10


def test_three_forms_agree_float32() -> None:
    """float32 forms within 1e-5 (relative to max |o|) of the float64 parallel form."""
    q, k, v, g = qkv((2, 4, 200, 16, 16))
    ref = retention_parallel(q, k, v, g)
    f = [t.float() for t in (q, k, v)]
    assert rel(retention_parallel(*f, g), ref) < 1e-5
    assert rel(retention_recurrent(*f, g)[0], ref) < 1e-5
    assert rel(retention_chunkwise(*f, g, chunk_size=32)[0], ref) < 1e-5


def test_prompt_then_decode_continues_exactly() -> None:
    """Chunkwise over a prompt, then recurrent steps, equals the parallel form on the whole."""
    q, k, v, g = qkv((2, 3, 30, 8, 8))
    full = retention_parallel(q, k, v, g)
    out, state = retention_chunkwise(q[:, :, :19], k[:, :, :19], v[:, :, :19], g, chunk_size=8)
    steps = [out]
    for n in range(19, 30):
        o, state = retention_step(q[:, :, n], k[:, :, n], v[:, :, n], g, state)
        steps.append(o.unsqueeze(2))
    assert rel(torch.cat(steps, 2), full) < 1e-10


def test_group_norm_with_eps_zero_cancels_the_normalisation() -> None:
    q, k, v, g = qkv((1, 2, 25, 4, 6))
    a = retention_parallel(q, k, v, g, normalize=True)
    b = retention_parallel(q, k, v, g, normalize=False)

    def per_head_norm(x):
        return (x - x.mean(-1, keepdim=True)) / x.std(-1, unbiased=False, keepdim=True)

    assert rel(per_head_norm(a), per_head_norm(b)) < 1e-9


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_triton_forward_matches_reference(shape, normalize, dtype) -> None:
    q, k, v, g = qkv(shape, seed=1)
    ref, ref_state = retention_chunkwise(q, k, v, g, normalize=normalize)
    got, state = chunkwise_retention(
        q.to(dtype), k.to(dtype), v.to(dtype), g, normalize=normalize, backend="triton"
    )
    tol = TOL[dtype] * (100 if dtype == torch.float16 and not normalize else 1)
    assert got.dtype == dtype
    assert rel(got, ref) < tol
    assert rel(state.S, ref_state.S) < tol
    assert rel(state.z, ref_state.z) < tol
    assert rel(state.c, ref_state.c) < tol


def test_triton_continues_from_a_state() -> None:
    q, k, v, g = qkv((2, 2, 40, 8, 8), seed=2)
    ref = retention_parallel(q, k, v, g)
    f = [t.float() for t in (q, k, v)]
    a, state = chunkwise_retention(*(t[:, :, :23] for t in f), g, backend="triton")
    b, _ = chunkwise_retention(*(t[:, :, 23:] for t in f), g, state=state, backend="triton")
    assert rel(torch.cat([a, b], 2), ref) < 1e-5


@pytest.mark.parametrize("shape", [SHAPES["odd"], SHAPES["wide_v"]], ids=["odd", "wide_v"])
def test_triton_backward_matches_reference(shape) -> None:
    q, k, v, g = qkv(shape, seed=3)
    gen = torch.Generator().manual_seed(4)
    grad_out = torch.randn(v.shape, generator=gen, dtype=torch.float64)
    leaves64 = [t.clone().requires_grad_() for t in (q, k, v)]
    ref, _ = retention_chunkwise(*leaves64, g)
    ref.backward(grad_out)
    leaves32 = [t.float().requires_grad_() for t in (q, k, v)]
    got, _ = chunkwise_retention(*leaves32, g, backend="triton")
    got.backward(grad_out.float())
    for a, b in zip(leaves32, leaves64, strict=True):
        assert rel(a.grad, b.grad) < 1e-5


def test_form_dispatch_and_cpu_backend() -> None:
    q, k, v, g = qkv(SHAPES["odd"])
    par, none = retention(q, k, v, g, form="parallel")
    assert none is None
    for form in ("recurrent", "chunkwise"):
        out, state = retention(q, k, v, g, form=form, backend="cpu")
        assert isinstance(state, RetentionState)
        assert rel(out, par) < 1e-10


def test_bad_input() -> None:
    q, k, v, g = qkv(SHAPES["odd"])
    with pytest.raises(ValueError, match=r"gamma \(2,\) must be \(H,\) = \(3,\)"):
        retention(q, k, v, g[:2])
    with pytest.raises(ValueError, match=r"gamma=.*lie in \(0, 1\)"):
        retention(q, k, v, torch.tensor([0.5, 1.0, 0.9], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"v \(2, 3, 36, 5\) must be"):
        retention(q, k, v[:, :, 1:], g)
    with pytest.raises(ValueError, match="form='sideways'"):
        retention(q, k, v, g, form="sideways")
    with pytest.raises(ValueError, match="backend='cuda'"):
        chunkwise_retention(q, k, v, g, backend="cuda")
    with pytest.raises(ValueError, match="chunk_size=0"):
        retention_chunkwise(q, k, v, g, chunk_size=0)
    with pytest.raises(TypeError, match="float64"):
        chunkwise_retention(q, k, v, g, backend="triton")


def test_fla_backend_refuses_cpu_or_is_absent() -> None:
    q, k, v, g = qkv(SHAPES["odd"], dtype=torch.float32)
    with pytest.raises((ImportError, RuntimeError), match="fla|flash-linear-attention"):
        chunkwise_retention(q, k, v, g, backend="fla")


@requires_cuda
@pytest.mark.parametrize("backend", ["triton", "fla"])
def test_cuda_backends_match_reference(backend) -> None:
    if backend == "fla":
        pytest.importorskip("fla", reason="flash-linear-attention is not installed")
    q, k, v, g = qkv((2, 4, 300, 32, 64), seed=5)
    ref, _ = retention_chunkwise(q, k, v, g)
    cuda = [t.float().cuda() for t in (q, k, v)]
    got, _ = chunkwise_retention(*cuda, g.cuda(), backend=backend)
    assert rel(got.cpu(), ref) < 1e-3  # TF32 dots on the GPU
