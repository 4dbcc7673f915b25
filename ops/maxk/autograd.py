"""Autograd glue for MaxK-GNN aggregation: checks, backend dispatch, the autograd.Function.

    forward   values, indices = maxk(h, k);  Y = A · scatter(values, indices)   (SpGEMM)
    backward  dXs = (A^T · dY) at indices (SSpMM, from A's CSR);  dh = scatter(dXs)

Backends: "reference" (``reference.py`` under torch autograd, the specification), "cpu"
(``cpu.py``: C++/OpenMP kernels, or vectorised torch when no compiler is available), "triton"
(``triton.py``, wrapped as the ``torch.library`` ops ``effml::maxk_spgemm`` and
``effml::maxk_sspmm`` so ``torch.compile`` keeps the graph whole around them). Default:
"triton" on CUDA, "cpu" elsewhere.
"""

from __future__ import annotations

import torch

from ops.dispatch import resolve_backend
from ops.sparse import CsrAdjacency

from .cbsr import (
    check_cbsr,
    check_indices,
    check_k,
    decode_indices,
    encode_indices,
    maxk_reference,
)
from .cpu import spgemm_cpu, sspmm_cpu, topk_cpu
from .reference import maxk_aggregate_reference, spgemm_reference, sspmm_reference


@torch.library.custom_op(
    "effml::maxk_spgemm",
    mutates_args=(),
    schema="(Tensor meta, Tensor col, Tensor weight, Tensor values, Tensor indices, "
    "int num_rows, int dim) -> Tensor",
)
def _spgemm_op(meta, col, weight, values, indices, num_rows, dim):
    from .triton import spgemm_triton

    return spgemm_triton(meta, col, weight, values, indices, num_rows, dim)


@_spgemm_op.register_fake
def _(meta, col, weight, values, indices, num_rows, dim):
    return values.new_empty(num_rows, dim)


@torch.library.custom_op(
    "effml::maxk_sspmm",
    mutates_args=(),
    schema="(Tensor meta, Tensor col, Tensor weight, Tensor grad_out, Tensor indices, "
    "int num_cols) -> Tensor",
)
def _sspmm_op(meta, col, weight, grad_out, indices, num_cols):
    from .triton import sspmm_triton

    return sspmm_triton(meta, col, weight, grad_out, indices, num_cols)


@_sspmm_op.register_fake
def _(meta, col, weight, grad_out, indices, num_cols):
    return grad_out.new_empty(num_cols, indices.shape[1])


def _check_adjacency(adj: CsrAdjacency) -> None:
    if not isinstance(adj, CsrAdjacency):
        raise ValueError(
            f"adj must be a CsrAdjacency, got {type(adj).__name__}; build one with "
            "CsrAdjacency.from_edge_index(edge_index, num_nodes, norm)"
        )


def _check_operands(adj: CsrAdjacency, x: torch.Tensor, name: str, rows: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"{name} must be a 2-D float tensor")
    if x.device != adj.device:
        raise ValueError(
            f"{name} is on {x.device} but the adjacency is on {adj.device}; "
            f"move one of them (adj.to({str(x.device)!r}) or {name}.to({str(adj.device)!r}))"
        )
    if x.shape[0] != rows:
        raise ValueError(
            f"{name} has {x.shape[0]} rows but the adjacency ({adj.num_rows}×{adj.num_cols}) "
            f"needs {rows}"
        )


def _triton_args(adj: CsrAdjacency, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    return adj.edge_groups(), adj.col, adj.weight_as(acc)


def _topk(h, k, backend):
    if backend == "cpu":
        return topk_cpu(h, k)
    values, idx = torch.topk(h, k, dim=1, sorted=False)  # (N, k) each
    return values, encode_indices(idx, h.shape[1])


def _spgemm(adj, values, indices, dim, backend):
    if backend == "triton":
        meta, col, weight = _triton_args(adj, values.dtype)
        return torch.ops.effml.maxk_spgemm(meta, col, weight, values, indices, adj.num_rows, dim)
    return spgemm_cpu(adj, values, indices, dim)


def _sspmm(adj, grad_out, indices, backend):
    if backend == "triton":
        meta, col, weight = _triton_args(adj, grad_out.dtype)
        return torch.ops.effml.maxk_sspmm(meta, col, weight, grad_out, indices, adj.num_cols)
    return sspmm_cpu(adj, grad_out, indices)


class MaxKFunction(torch.autograd.Function):
    """CBSR top-k with MaxK's mask rule as backward: dx = scatter(dvalues) into zeros."""

    @staticmethod
    def forward(ctx, x, k, backend):
        values, indices = _topk(x, k, backend)
        ctx.mark_non_differentiable(indices)
        ctx.save_for_backward(indices)
        ctx.width = x.shape[1]
        return values, indices

    @staticmethod
    def backward(ctx, grad_values, grad_indices):
        (indices,) = ctx.saved_tensors
        grad_x = grad_values.new_zeros(grad_values.shape[0], ctx.width)
        return grad_x.scatter_(1, decode_indices(indices), grad_values), None, None


def maxk(x: torch.Tensor, k: int, backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest entries of each row of x as CBSR (values, indices) (MaxK-GNN Sec. 3).

    Args:
        x: (N, width) float, width ≤ 65535.
        k: entries kept per row, 1 ≤ k ≤ width.
        backend: "reference"/"triton" use ``torch.topk``; "cpu" (the default off CUDA) the
            C++ selection. Which of equal entries is kept is unspecified.

    Returns:
        values (N, k) in x's dtype, differentiable (the gradient flows to the kept positions
        only: MaxK's mask rule), and indices (N, k) uint8 (width ≤ 256) or int16 (low 16
        bits; read them with ``decode_indices``). The order inside a row is unspecified.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise ValueError("x must be a 2-D (N, width) float tensor")
    check_k(k, x.shape[1])
    backend = resolve_backend(backend, x, op="maxk")
    if backend == "reference":
        return maxk_reference(x, k)
    return MaxKFunction.apply(x, k, backend)


class SpgemmFunction(torch.autograd.Function):
    """Y = A · scatter(values, indices) with the SSpMM backward (gradient to values only)."""

    @staticmethod
    def forward(ctx, values, indices, adj, dim, backend):
        ctx.save_for_backward(indices)
        ctx.adj, ctx.backend = adj, backend
        return _spgemm(adj, values.contiguous(), indices.contiguous(), dim, backend)

    @staticmethod
    def backward(ctx, grad_y):
        (indices,) = ctx.saved_tensors
        grad_values = _sspmm(ctx.adj, grad_y.contiguous(), indices, ctx.backend)
        return grad_values, None, None, None, None


def spgemm(
    adj: CsrAdjacency,
    values: torch.Tensor,
    indices: torch.Tensor,
    dim: int,
    backend: str | None = None,
) -> torch.Tensor:
    """Dense (N_rows, dim) = A · scatter(CBSR) (MaxK-GNN's SpGEMM), differentiable in values.

    Args:
        adj: A, N_rows × N_cols CSR with edge weights.
        values, indices: CBSR (N_cols, k) from ``maxk``; indices uint8 (dim ≤ 256) or int16.
        dim: width of the dense matrix the CBSR encodes.
        backend: "reference", "cpu" or "triton"; None picks triton on CUDA, cpu otherwise.
    """
    _check_adjacency(adj)
    _check_operands(adj, values, "values", adj.num_cols)
    check_cbsr(values, indices, dim)
    backend = resolve_backend(backend, values, op="maxk")
    if backend == "reference":
        return spgemm_reference(adj, values, indices, dim)
    return SpgemmFunction.apply(values, indices, adj, dim, backend)


def sspmm(
    adj: CsrAdjacency,
    grad_out: torch.Tensor,
    indices: torch.Tensor,
    backend: str | None = None,
) -> torch.Tensor:
    """(N_cols, k) = (A^T · dY).gather(1, indices), computed from A's CSR (no A^T built).

    Args:
        adj: the forward's A (N_rows × N_cols); need not be symmetric.
        grad_out: dY, (N_rows, dim).
        indices: the forward's CBSR indices (N_cols, k).
        backend: as in ``spgemm``. The "cpu" and "triton" results carry no autograd graph.
    """
    _check_adjacency(adj)
    _check_operands(adj, grad_out, "grad_out", adj.num_rows)
    check_indices(indices, grad_out.shape[1])
    if indices.device != grad_out.device:
        raise ValueError(f"indices are on {indices.device} but grad_out on {grad_out.device}")
    if indices.shape[0] != adj.num_cols:
        raise ValueError(
            f"indices have {indices.shape[0]} rows but the adjacency has {adj.num_cols} columns"
        )
    backend = resolve_backend(backend, grad_out, op="maxk")
    if backend == "reference":
        return sspmm_reference(adj, grad_out, indices)
    with torch.no_grad():
        return _sspmm(adj, grad_out.contiguous(), indices.contiguous(), backend)


class MaxKAggregateFunction(torch.autograd.Function):
    """Y = A · maxk(h, k) (and optionally maxk(h, k) dense) with the SSpMM backward.

    Arguments (positional): h, adj, k, backend, return_dense; checked by ``maxk_aggregate``.
    Backward (MaxK's mask rule): dXs = SSpMM(A, dY, indices) [+ dH_masked at indices], and
    dh = scatter(dXs) into zeros, so only the kept positions receive gradient.
    """

    @staticmethod
    def forward(ctx, h, adj, k, backend, return_dense):
        dim = h.shape[1]
        values, indices = _topk(h, k, backend)  # (N, k) each
        y = _spgemm(adj, values, indices, dim, backend)
        ctx.save_for_backward(indices)
        ctx.adj, ctx.backend, ctx.dim, ctx.return_dense = adj, backend, dim, return_dense
        if return_dense:
            return y, h.new_zeros(h.shape).scatter_(1, decode_indices(indices), values)
        return y

    @staticmethod
    def backward(ctx, grad_y, grad_masked=None):
        (indices,) = ctx.saved_tensors
        grad_values = _sspmm(ctx.adj, grad_y.contiguous(), indices, ctx.backend)  # (N, k)
        idx = decode_indices(indices)
        if ctx.return_dense and grad_masked is not None:
            grad_values = grad_values + grad_masked.gather(1, idx)
        grad_h = grad_values.new_zeros(grad_values.shape[0], ctx.dim).scatter_(1, idx, grad_values)
        return grad_h, None, None, None, None


def maxk_aggregate(
    adj: CsrAdjacency,
    h: torch.Tensor,
    k: int,
    backend: str | None = None,
    return_dense: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """MaxK-GNN aggregation Y = A · maxk(h, k) through SpGEMM, backward through SSpMM.

    Args:
        adj: A, N_rows × N_cols CSR with edge weights (``CsrAdjacency.from_edge_index``).
        h: (N_cols, dim) float features before the nonlinearity, dim ≤ 65535.
        k: entries kept per row, 1 ≤ k ≤ dim.
        backend: "reference", "cpu" or "triton"; None picks triton on CUDA, cpu otherwise.
        return_dense: also return maxk(h, k) as a dense (N_cols, dim) matrix (e.g. SAGE's root
            term); gradients of both outputs are summed into dh.

    Returns:
        Y (N_rows, dim) in h's dtype, or (Y, h_masked) with return_dense.
    """
    _check_adjacency(adj)
    _check_operands(adj, h, "h", adj.num_cols)
    check_k(k, h.shape[1])
    backend = resolve_backend(backend, h, op="maxk")
    if backend == "reference":
        return maxk_aggregate_reference(adj, h, k, return_dense)
    return MaxKAggregateFunction.apply(h, adj, k, backend, return_dense)
