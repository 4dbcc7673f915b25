"""The SpMM baseline Y = A · X on torch.sparse CSR, with a prebuilt A^T for the backward.

A is a ``torch.sparse_csr_tensor`` (MKL on the CPU, cuSPARSE on a GPU): the aggregation of
DGL's and PyG's sparse message passing, and the baseline MaxK-GNN
(https://arxiv.org/abs/2312.08656, Sec. 6) measures its SpGEMM and SSpMM against. The
backward dX = A^T · dY multiplies by A^T given as its own CSR tensor, built once per graph
(``CachedGraph.torch_sparse``), never transposed per step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

PROFILE_KEYS = ("clock", "sync", "ms")


def _timed(profile: dict | None, product: Callable[[], torch.Tensor]) -> torch.Tensor:
    """product(), its milliseconds added to profile["ms"] (the device idle before and after)."""
    if profile is None:
        return product()
    profile["sync"]()
    start = profile["clock"]()
    out = product()
    profile["sync"]()
    profile["ms"] += (profile["clock"]() - start) * 1e3
    return out


class SpmmFunction(torch.autograd.Function):
    """Y = A · X with torch.sparse CSR, backward dX = A^T · dY from the prebuilt CSR A^T.

    Arguments (positional): a, a_t, x, profile, checked by ``spmm``. Gradients reach x only.
    """

    @staticmethod
    def forward(ctx, a, a_t, x, profile):
        ctx.a_t, ctx.profile = a_t, profile
        return _timed(profile, lambda: torch.sparse.mm(a, x))

    @staticmethod
    def backward(ctx, grad_y):
        grad_y = grad_y.contiguous()
        grad_x = _timed(ctx.profile, lambda: torch.sparse.mm(ctx.a_t, grad_y))
        return None, None, grad_x, None


def _check_operands(a: torch.Tensor, a_t: torch.Tensor, x: torch.Tensor) -> None:
    for name, t in (("a", a), ("a_t", a_t)):
        if not isinstance(t, torch.Tensor) or t.layout != torch.sparse_csr:
            got = t.layout if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(
                f"{name} must be a torch.sparse CSR tensor, got {got}; build the pair with "
                "CachedGraph.torch_sparse(dtype) or CsrAdjacency.to_torch_sparse()"
            )
    if tuple(a_t.shape) != tuple(a.shape)[::-1]:
        raise ValueError(
            f"a_t has shape {tuple(a_t.shape)} but a has {tuple(a.shape)}: a_t must be A^T "
            "(adj.transpose().to_torch_sparse())"
        )
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise ValueError("x must be a 2-D (N_cols, C) float tensor")
    if x.shape[0] != a.shape[1]:
        raise ValueError(
            f"x has {x.shape[0]} rows but A ({a.shape[0]}×{a.shape[1]}) needs {a.shape[1]}"
        )
    for name, t in (("a", a), ("a_t", a_t)):
        if t.dtype != x.dtype or t.device != x.device:
            raise ValueError(
                f"{name} is {t.dtype} on {t.device} but x is {x.dtype} on {x.device}; build the "
                "pair in x's dtype and device (CachedGraph.torch_sparse(x.dtype))"
            )


def spmm(
    a: torch.Tensor, a_t: torch.Tensor, x: torch.Tensor, profile: dict | None = None
) -> torch.Tensor:
    """Y = A · x on torch.sparse CSR; the backward is dx = A^T · dY through ``a_t``.

    Args:
        a: A, (N_rows, N_cols) ``torch.sparse_csr_tensor`` in x's dtype and on x's device.
        a_t: A^T, (N_cols, N_rows) CSR of the same dtype and device.
        x: (N_cols, C) dense float features.
        profile: None, or a dict {"clock": () -> seconds, "sync": () -> None, "ms": float}
            in which every SpMM of this call, forward and backward, adds its time in
            milliseconds to "ms", clocked between two ``sync()`` calls (pass
            ``torch.cuda.synchronize`` on a GPU so the clock sees the kernels).

    Returns:
        Y (N_rows, C) in x's dtype.
    """
    _check_operands(a, a_t, x)
    if profile is not None:
        missing = [key for key in PROFILE_KEYS if key not in profile]
        if missing:
            raise ValueError(
                f"profile lacks {missing}: pass {{'clock': time.perf_counter, 'sync': "
                "torch.cuda.synchronize or (lambda: None), 'ms': 0.0}"
            )
    return SpmmFunction.apply(a, a_t, x, profile)
