"""Autograd glue for Accel-GCN SpMM: input checks, backend dispatch, the autograd.Function.

    forward   Y  = A · X      the kernel on A's degree-sorted, block-partitioned CSR
    backward  dX = A^T · dY   the same kernel on A^T's own partition (built once, cached)

Accel-GCN (Xie et al., ICCAD 2023, arXiv:2308.11825). Backends of ``spmm``:

- "accel": the Accel kernel for x's device, "triton" on CUDA, "cpu" elsewhere;
- "triton": the combined-warp Triton kernel (``triton.py``; on CPU tensors only under
  ``TRITON_INTERPRET=1``); "cpu": the C++/OpenMP kernel (``cpu.py``);
- "reference": ``reference.py``'s plain PyTorch kernel through the same autograd.Function;
- "torch_sparse": ``ops.sparse.spmm`` on torch.sparse CSR (MKL on the CPU, cuSPARSE on CUDA);
- "pyg": PyTorch Geometric's message-passing path, ``x[col] · w`` gathered per edge and
  summed into rows by ``torch_geometric.utils.scatter`` (what GCNConv runs without
  torch-sparse), differentiated by torch autograd.

Gradients reach x only: the edge weights are constants of the graph (GCN normalisation).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ops.dispatch import check_backend, check_triton_runnable
from ops.sparse import CsrAdjacency
from ops.sparse import spmm as torch_sparse_spmm

from .partition import AccelGraph, accel_graph, accel_graph_t
from .reference import spmm_reference

BACKENDS = ("accel", "cpu", "triton", "reference", "torch_sparse", "pyg")
KERNEL_BACKENDS = ("cpu", "triton", "reference")  # the ones AccelSpmmFunction runs
# dtypes of the Accel kernels; the reference takes any float dtype
CPU_DTYPES = (torch.float32, torch.float16)
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
OP = "ops.spmm.spmm"

Kernel = Callable[[AccelGraph, torch.Tensor], torch.Tensor]


def _kernel(backend: str) -> Kernel:
    """The kernel function of a resolved kernel backend (Triton and C++ loaded on first use)."""
    if backend == "triton":
        from .triton import spmm_triton

        return spmm_triton
    if backend == "cpu":
        from .cpu import spmm_cpu

        return spmm_cpu
    return spmm_reference


class AccelSpmmFunction(torch.autograd.Function):
    """Y = A · x by an Accel kernel; backward dx = A^T · dY by the same kernel on A^T.

    Arguments (positional): adj (``CsrAdjacency``), x (N_cols, F), weighted (bool: the
    adjacency's weights, else unit weights), backend (one of ``KERNEL_BACKENDS``), checked by
    ``spmm``. The partitions of A and A^T are built once per adjacency and cached on it.
    """

    @staticmethod
    def forward(ctx, adj: CsrAdjacency, x: torch.Tensor, weighted: bool, backend: str):
        ctx.adj, ctx.weighted, ctx.backend = adj, weighted, backend
        return _kernel(backend)(accel_graph(adj, weighted), x.contiguous())  # (N_rows, F)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        if not ctx.needs_input_grad[1]:
            return None, None, None, None
        graph_t = accel_graph_t(ctx.adj, ctx.weighted)
        grad_x = _kernel(ctx.backend)(graph_t, grad_y.contiguous())  # (N_cols, F)
        return None, grad_x, None, None


def _unit_weights(adj: CsrAdjacency) -> CsrAdjacency:
    """The same sparsity pattern with every weight 1 (cached on ``adj``)."""
    return adj.cached(
        "unit_weight_adjacency",
        lambda: CsrAdjacency(adj.rowptr, adj.col, torch.ones_like(adj.weight), adj.num_cols),
    )


def _spmm_torch_sparse(adj: CsrAdjacency, x: torch.Tensor, weighted: bool) -> torch.Tensor:
    """torch.sparse CSR SpMM with A and A^T built once per (dtype, weighted) and cached."""
    if x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
        raise TypeError(
            f"{OP}: backend='torch_sparse' on the CPU (MKL) has no {x.dtype} SpMM: pass "
            "float32 or float64 features, or use backend='accel'"
        )
    csr = adj if weighted else _unit_weights(adj)
    a, a_t = adj.cached(
        ("torch_sparse_pair", x.dtype, weighted),
        lambda: (csr.to_torch_sparse(x.dtype), csr.transpose().to_torch_sparse(x.dtype)),
    )
    return torch_sparse_spmm(a, a_t, x)


def _spmm_pyg(adj: CsrAdjacency, x: torch.Tensor, weighted: bool) -> torch.Tensor:
    """PyG's gather-scatter aggregation: out[i] = Σ_e w_e · x[col_e] over the edges of row i."""
    from torch_geometric.utils import scatter

    messages = x.index_select(0, adj.col.long())  # (E, F)
    if weighted:
        messages = messages * adj.weight_as(x.dtype)[:, None]
    return scatter(messages, adj.row_index(), dim=0, dim_size=adj.num_rows, reduce="sum")


def check_weights(adj: CsrAdjacency) -> None:
    """Raise ValueError naming the first NaN, infinite or negative edge weight of ``adj``.

    GCN and mean normalisations need finite, non-negative weights; a graph that passes is
    remembered (its weights are immutable), so the O(E) check runs once per adjacency.
    """

    def scan() -> bool:
        weight = adj.weight
        for bad, problem in (
            (~torch.isfinite(weight), "is not finite"),
            (weight < 0, "is negative"),
        ):
            if bad.any():
                e = int(torch.nonzero(bad)[0])
                raise ValueError(
                    f"{OP}: adj.weight[{e}] = {float(weight[e])} (row "
                    f"{int(adj.row_index()[e])}, column {int(adj.col[e])}) {problem}, but the "
                    "normalised aggregation needs finite non-negative edge weights: fix the "
                    "weights (csr_from_edge_index rejects such input) or pass weighted=False "
                    "for unit weights"
                )
        return True

    adj.cached("weights_checked", scan)


def check_operands(adj: CsrAdjacency, x: torch.Tensor, weighted: bool) -> None:
    """Raise naming the bad value unless ``spmm(adj, x, weighted=weighted)`` can run."""
    if not isinstance(adj, CsrAdjacency):
        raise TypeError(
            f"{OP}: adj must be a CsrAdjacency, got {type(adj).__name__}; build one with "
            "ops.spmm.csr_from_edge_index(edge_index, num_nodes, norm='gcn')"
        )
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
        got = (
            f"{x.dtype} of shape {tuple(x.shape)}"
            if isinstance(x, torch.Tensor)
            else type(x).__name__
        )
        raise ValueError(f"{OP}: x must be a 2-D (N_cols, F) float tensor, got {got}")
    if x.shape[1] == 0:
        raise ValueError(
            f"{OP}: x has shape {tuple(x.shape)}, width 0: pass at least one feature column"
        )
    if x.device != adj.device:
        raise ValueError(
            f"{OP}: x is on {x.device} but the graph is on {adj.device}; move one of them "
            f"(x.to({str(adj.device)!r}) or adj.to({str(x.device)!r}))"
        )
    if x.shape[0] != adj.num_cols:
        raise ValueError(
            f"{OP}: x has {x.shape[0]} rows but the adjacency ({adj.num_rows}×{adj.num_cols}) "
            f"multiplies {adj.num_cols}: pass one feature row per node (column of A)"
        )
    if weighted:
        check_weights(adj)


def resolve_spmm_backend(backend: str | None, x: torch.Tensor) -> str:
    """``backend`` with "accel" (or None) resolved by x's device ("triton" on CUDA, else "cpu").

    Raises:
        ValueError: an unknown backend name.
        TypeError: x's dtype is not one the chosen Accel kernel takes.
        RuntimeError: "triton" on a CPU tensor without ``TRITON_INTERPRET=1``.
    """
    if check_backend(backend, op=OP, allowed=BACKENDS) in (None, "accel"):
        backend = "triton" if x.is_cuda else "cpu"
    if backend == "triton":
        check_triton_runnable(x, op=OP, dtypes=TRITON_DTYPES)
    if backend == "cpu" and x.dtype not in CPU_DTYPES:
        raise TypeError(
            f"{OP}: the CPU Accel kernel takes float32 or float16, got {x.dtype}; cast x, or "
            "use backend='reference' (any float dtype, float64 too)"
        )
    return backend


def spmm(
    adj: CsrAdjacency, x: torch.Tensor, backend: str | None = "accel", weighted: bool = True
) -> torch.Tensor:
    """Y = A · x, differentiable in x, by the chosen backend (see the module docstring).

    Args:
        adj: A, a sorted CSR (``csr_from_edge_index`` builds one with GCN weights).
        x: (N_cols, F) float features on adj's device.
        backend: "accel" (default; None too), "cpu", "triton", "reference", "torch_sparse" or "pyg".
        weighted: multiply by A's edge weights (they must be finite and non-negative);
            False uses unit weights (plain neighbour sums).

    Returns:
        Y, (N_rows, F) in x's dtype, rows in the adjacency's (the caller's) order.
    """
    check_operands(adj, x, weighted)
    backend = resolve_spmm_backend(backend, x)
    if backend == "torch_sparse":
        return _spmm_torch_sparse(adj, x, weighted)
    if backend == "pyg":
        return _spmm_pyg(adj, x, weighted)
    return AccelSpmmFunction.apply(adj, x, weighted, backend)
