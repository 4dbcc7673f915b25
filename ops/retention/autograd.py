"""Retention's dispatch: the three forms, the ``backend=`` choice, autograd for the Triton path.

Backends of :func:`chunkwise_retention` (prompts, training in chunks):
- "reference": ``reference.retention_chunkwise`` under torch autograd (the specification);
- "cpu": the same vectorised torch code (chunk-parallel matmuls; it is the CPU fast path:
  one Python step per chunk, not per token);
- "triton": ``triton.retention_chunk_fwd_triton`` forward; its backward recomputes the
  reference's chunkwise form under autograd (training uses the parallel form, so no Triton
  backward kernel is written);
- "fla": flash-linear-attention's ``chunk_retention`` (CUDA only, optional, its own backward),
  for comparison. fla fixes γ_h = 1 − 2^(−5−h); the value gets an extra column of ones so
  that one call returns both the output and the normaliser's row sums.
Default (None): "triton" on CUDA, "cpu" elsewhere.
"""

from __future__ import annotations

import inspect

import torch

from ops.dispatch import resolve_backend

from .reference import (
    RetentionState,
    check_inputs,
    empty_state,
    multiscale_gammas,
    retention_chunkwise,
    retention_parallel,
    retention_recurrent,
    retention_step,
)

BACKENDS = ("reference", "cpu", "triton", "fla")
FORMS = ("parallel", "recurrent", "chunkwise")


def _closed_form_c(gamma: torch.Tensor, c0: torch.Tensor, length: int, dtype) -> torch.Tensor:
    """c_n (H, L) for n = 0 … L−1 after a state with c = c0: γ^(n+1) c0 + (1 − γ^(n+1))/(1 − γ)."""
    g = gamma.to(dtype)[:, None]
    p = g ** (torch.arange(length, device=gamma.device, dtype=dtype) + 1)
    return p * c0.to(dtype)[:, None] + (1 - p) / (1 - g)


def _normalise(raw, s, c):
    return raw / torch.maximum(c.sqrt().unsqueeze(0), s.abs()).unsqueeze(-1)


class TritonChunkRetention(torch.autograd.Function):
    """Triton forward of chunkwise retention; backward through the reference's chunkwise form."""

    @staticmethod
    def forward(ctx, q, k, v, S0, z0, gamma, c0, chunk_size, normalize):
        from .triton import retention_chunk_fwd_triton

        raw, s, S, z = retention_chunk_fwd_triton(q, k, v, gamma, S0, z0)
        length = q.shape[2]
        c = _closed_form_c(gamma.to(q.device), c0, length, torch.float64).float()
        out = _normalise(raw, s, c) if normalize else raw
        ctx.save_for_backward(q, k, v, S0, z0, gamma, c0)
        ctx.chunk_size, ctx.normalize = chunk_size, normalize
        return out.to(v.dtype), S.to(S0.dtype), z.to(z0.dtype)

    @staticmethod
    def backward(ctx, g_out, g_S, g_z):
        q, k, v, S0, z0, gamma, c0 = ctx.saved_tensors
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(t.requires_grad) for t in (q, k, v, S0, z0)]
            out, state = retention_chunkwise(
                *leaves[:3], gamma, RetentionState(leaves[3], leaves[4], c0),
                chunk_size=ctx.chunk_size, normalize=ctx.normalize,
            )  # fmt: skip
            pairs = [(t, g) for t, g in ((out, g_out), (state.S, g_S), (state.z, g_z))]
            pairs = [(t, g) for t, g in pairs if g is not None]
            wanted = [t for t in leaves if t.requires_grad]
            grads = torch.autograd.grad(
                [t for t, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True
            )
        it = iter(grads)
        result = [next(it) if t.requires_grad else None for t in leaves]
        return (*result, None, None, None, None)


def _fla_chunk(q, k, v, gamma, state: RetentionState, normalize: bool):
    """flash-linear-attention's chunk retention with a ones column for the row sums."""
    try:
        from fla.ops.retention import chunk_retention
    except ImportError as err:
        raise ImportError(
            "retention: backend='fla' needs flash-linear-attention: pip install "
            "flash-linear-attention (CUDA only), or use backend='triton'"
        ) from err
    if not q.is_cuda:
        raise RuntimeError("retention: backend='fla' runs on CUDA tensors only; use 'cpu'")
    expected = multiscale_gammas(q.shape[1]).to(gamma.device, torch.float64)
    if not torch.allclose(gamma.double(), expected):
        raise ValueError(
            f"retention: backend='fla' fixes γ_h = 1 − 2^(−5−h); got gamma={gamma.tolist()}: "
            "use multiscale_gammas(H) or another backend"
        )
    v_aug = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
    h0 = torch.cat([state.S, state.z.unsqueeze(-1)], dim=-1).float()
    kwargs = dict(scale=1.0, initial_state=h0, output_final_state=True)
    if "head_first" in inspect.signature(chunk_retention).parameters:
        out, ht = chunk_retention(q, k, v_aug, head_first=True, **kwargs)
    else:
        tr = [t.transpose(1, 2).contiguous() for t in (q, k, v_aug)]
        out, ht = chunk_retention(*tr, **kwargs)
        out = out.transpose(1, 2)
    raw, s = out[..., :-1], out[..., -1]
    c = _closed_form_c(gamma, state.c, q.shape[2], torch.float64)
    new = RetentionState(
        ht[..., :-1].to(state.S.dtype), ht[..., -1].to(state.z.dtype), c[:, -1].to(state.c.dtype)
    )
    return (_normalise(raw, s, c.to(raw.dtype)) if normalize else raw), new


def chunkwise_retention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    gamma: torch.Tensor,
    state: RetentionState | None = None,
    chunk_size: int = 64,
    normalize: bool = True,
    backend: str | None = None,
) -> tuple[torch.Tensor, RetentionState]:
    """Chunkwise retention (RetNet Eq. 7) from ``state`` (None: empty) on the chosen backend.

    Shapes: q, k (B, H, L, d_k), v (B, H, L, d_v), gamma (H,). Returns (B, H, L, d_v) and the
    state after the last token. "triton" and "fla" use their own chunk length (16 and fla's).
    """
    backend = resolve_backend(backend, q, op="retention", allowed=BACKENDS)
    check_inputs(q, k, v, gamma)
    state = empty_state(q, v) if state is None else state
    if q.shape[2] == 0:
        return v.new_zeros(v.shape), state
    if backend in ("reference", "cpu"):
        return retention_chunkwise(q, k, v, gamma, state, chunk_size, normalize)
    if backend == "fla":
        return _fla_chunk(q, k, v, gamma, state, normalize)
    out, S, z = TritonChunkRetention.apply(
        q, k, v, state.S, state.z, gamma, state.c, chunk_size, normalize
    )
    c_end = _closed_form_c(gamma, state.c, q.shape[2], torch.float64)[:, -1].to(state.c.dtype)
    return out, RetentionState(S, z, c_end)


def retention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    gamma: torch.Tensor,
    form: str = "parallel",
    state: RetentionState | None = None,
    chunk_size: int = 64,
    normalize: bool = True,
    backend: str | None = None,
) -> tuple[torch.Tensor, RetentionState | None]:
    """Retention in one of its three forms; (B, H, L, d_v) and the final state (None for parallel).

    ``form="parallel"`` (training; always from an empty state, plain torch), ``"recurrent"``
    (one token at a time, plain torch), ``"chunkwise"`` (dispatches on ``backend``, see
    :func:`chunkwise_retention`).
    """
    if form not in FORMS:
        raise ValueError(f"retention: form={form!r}: choose one of {FORMS}")
    if form == "parallel":
        if state is not None:
            raise ValueError(
                "retention: form='parallel' starts from an empty state; pass state=None or use "
                "form='chunkwise' to continue from a state"
            )
        return retention_parallel(q, k, v, gamma, normalize), None
    if form == "recurrent":
        return retention_recurrent(q, k, v, gamma, state, normalize)
    return chunkwise_retention(q, k, v, gamma, state, chunk_size, normalize, backend)


__all__ = [
    "BACKENDS",
    "FORMS",
    "RetentionState",
    "TritonChunkRetention",
    "chunkwise_retention",
    "retention",
    "retention_step",
]
