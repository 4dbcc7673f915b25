"""Accel-GCN SpMM: degree-sorted, block-partitioned sparse × dense products (ICCAD 2023).

Accel-GCN (Xie et al., ICCAD 2023, arXiv:2308.11825). Public API: ``spmm(adj, x, backend)``
(Y = A · x, differentiable in x; backends "accel" (Triton on CUDA, C++ on the CPU), "cpu",
"triton", "reference", "torch_sparse", "pyg"), ``AccelSpmmFunction``, the graph builder
``csr_from_edge_index`` (GCN/mean/sum weights, optional edge weights), the partition
(``degree_sort``, ``block_partition``, ``AccelGraph``, ``accel_graph``/``accel_graph_t``
cached on the adjacency, ``write_block4``/``read_block4``) and the float64-capable
``spmm_reference``. The sparse operand is ``ops.sparse.CsrAdjacency`` (re-exported).
"""

from __future__ import annotations

import torch

from ops.sparse import NORMS, CsrAdjacency

from .autograd import BACKENDS, AccelSpmmFunction, check_weights, spmm
from .partition import (
    DEG_BOUND,
    FACTORS,
    WARP_NZ,
    WARPS_PER_BLOCK,
    AccelGraph,
    accel_graph,
    accel_graph_t,
    block_partition,
    degree_sort,
    read_block4,
    write_block4,
)
from .reference import spmm_blocks_reference, spmm_reference

__all__ = [
    "BACKENDS",
    "DEG_BOUND",
    "FACTORS",
    "NORMS",
    "WARPS_PER_BLOCK",
    "WARP_NZ",
    "AccelGraph",
    "AccelSpmmFunction",
    "CsrAdjacency",
    "accel_graph",
    "accel_graph_t",
    "block_partition",
    "check_weights",
    "csr_from_edge_index",
    "degree_sort",
    "read_block4",
    "spmm",
    "spmm_blocks_reference",
    "spmm_reference",
    "write_block4",
]


def _check_edge_index(edge_index: torch.Tensor, num_nodes: int) -> None:
    """Raise ValueError naming the first edge whose node id lies outside [0, num_nodes)."""
    if not isinstance(edge_index, torch.Tensor) or edge_index.dim() != 2:
        got = tuple(edge_index.shape) if isinstance(edge_index, torch.Tensor) else edge_index
        raise ValueError(f"edge_index must be a (2, E) integer tensor, got {got!r}")
    if edge_index.shape[0] != 2 or edge_index.is_floating_point():
        raise ValueError(
            f"edge_index has shape {tuple(edge_index.shape)} and dtype {edge_index.dtype}; "
            "pass a (2, E) integer tensor (row 0 sources, row 1 targets)"
        )
    if not isinstance(num_nodes, int) or num_nodes < 0:
        raise ValueError(f"num_nodes={num_nodes!r}: pass the node count, an int ≥ 0")
    outside = ((edge_index < 0) | (edge_index >= num_nodes)).any(dim=0)
    if outside.any():
        e = int(torch.nonzero(outside)[0])
        src, dst = (int(v) for v in edge_index[:, e])
        raise ValueError(
            f"edge_index[:, {e}] = ({src}, {dst}) has a node id outside [0, {num_nodes}) "
            f"(ids span [{int(edge_index.min())}, {int(edge_index.max())}]): pass num_nodes "
            "larger than the largest id, or drop the edges that point outside the graph"
        )


def _check_edge_weight(weight: torch.Tensor, num_edges: int, norm: str) -> None:
    """Raise ValueError naming the first edge weight the normalisation cannot use."""
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        raise ValueError("weight must be a float tensor with one weight per edge")
    if tuple(weight.shape) != (num_edges,):
        raise ValueError(
            f"weight has shape {tuple(weight.shape)} but edge_index has {num_edges} edges: "
            "pass one weight per edge, shape (E,)"
        )
    checks = [(~torch.isfinite(weight), "is not finite")]
    if norm != "sum":
        checks.append((weight < 0, "is negative"))
    for bad, problem in checks:
        if bad.any():
            e = int(torch.nonzero(bad)[0])
            raise ValueError(
                f"weight[{e}] = {float(weight[e])} {problem}, but norm={norm!r} needs finite "
                "non-negative edge weights (degrees are sums of weights): fix the weight, or "
                "use norm='sum' for signed weights"
            )


def csr_from_edge_index(
    edge_index: torch.Tensor,
    num_nodes: int,
    weight: torch.Tensor | None = None,
    norm: str = "gcn",
    add_self_loops: bool = False,
) -> CsrAdjacency:
    """The N×N adjacency A (A[i, j] ≠ 0 for a message j → i) with GNN edge weights.

    Without ``weight`` this is ``CsrAdjacency.from_edge_index`` (duplicate edges merged,
    d_i the number of distinct neighbours). With it, PyG's ``gcn_norm`` with edge weights:
    duplicates are summed, d_i = Σ_j w_ij over row i, and "gcn" gives
    w_ij / sqrt(d_i · d_j), "mean" w_ij / d_i, "sum" w_ij (rows of degree 0 stay 0).

    Args:
        edge_index: (2, E) integer, row 0 the source j, row 1 the target i.
        num_nodes: N; every id must lie in [0, N).
        weight: (E,) float edge weights, finite, and non-negative unless norm="sum"; None: 1.
        norm: "gcn" (default), "mean" or "sum".
        add_self_loops: add (i, i) with weight 1 for every node that lacks a self loop.

    Returns:
        A sorted ``CsrAdjacency`` of shape (N, N).
    """
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r}: choose one of {NORMS}")
    _check_edge_index(edge_index, num_nodes)
    if weight is None:
        return CsrAdjacency.from_edge_index(edge_index, num_nodes, norm, add_self_loops)
    _check_edge_weight(weight, edge_index.shape[1], norm)
    src, dst = edge_index[0].long(), edge_index[1].long()
    if add_self_loops:
        has_loop = torch.zeros(num_nodes, dtype=torch.bool, device=src.device)
        has_loop[src[src == dst]] = True
        nodes = torch.nonzero(~has_loop).flatten()
        src, dst = torch.cat([src, nodes]), torch.cat([dst, nodes])
        weight = torch.cat([weight, weight.new_ones(nodes.numel())])
    key, inverse = torch.unique(dst * num_nodes + src, return_inverse=True)  # row-major sorted
    merged = weight.new_zeros(key.numel()).index_add_(0, inverse, weight)  # duplicates summed
    row, col = key // max(num_nodes, 1), key % max(num_nodes, 1)
    degree = merged.new_zeros(num_nodes).index_add_(0, row, merged)  # (N,) weighted in-degree
    if norm == "gcn":
        inv_sqrt = degree.pow(-0.5).masked_fill_(degree == 0, 0.0)
        merged = inv_sqrt[row] * merged * inv_sqrt[col]
    elif norm == "mean":
        inverse_degree = degree.reciprocal().masked_fill_(degree == 0, 0.0)
        merged = merged * inverse_degree[row]
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.int64, device=row.device)
    rowptr[1:] = torch.bincount(row, minlength=num_nodes).cumsum(0)
    return CsrAdjacency(rowptr, col, merged, num_nodes)
