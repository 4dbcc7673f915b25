"""Sparse × dense products in plain PyTorch, the specification (any float dtype, float64 too).

    SpMM             Y = A · X          (N_rows, C) from X (N_cols, C)
    transposed SpMM  Z = A^T · D        (N_cols, C) from D (N_rows, C), no A^T built

Edges are summed with ``index_add`` chunk by chunk, so memory stays O(chunk · C), and
autograd through these functions gives the reference gradients (``torch.autograd.gradcheck``
holds in float64).
"""

from __future__ import annotations

import torch

from .csr import CsrAdjacency

EDGE_CHUNK = 1 << 16


def _scatter_edges(
    dst: torch.Tensor, src: torch.Tensor, weight: torch.Tensor, x: torch.Tensor, rows: int
) -> torch.Tensor:
    """out[dst[e]] += weight[e] · x[src[e]] over every edge e, chunk by chunk; (rows, C)."""
    out = x.new_zeros(rows, x.shape[1])
    for start in range(0, max(dst.numel(), 1), EDGE_CHUNK):  # ≥ 1 pass: keeps the graph
        sl = slice(start, start + EDGE_CHUNK)
        out = out.index_add(0, dst[sl], weight[sl, None] * x[src[sl]])
    return out


def spmm_reference(adj: CsrAdjacency, x: torch.Tensor) -> torch.Tensor:
    """Dense Y = A · x, (N_rows, C) from x (N_cols, C)."""
    row, col = adj.row_index(), adj.col.long()
    return _scatter_edges(row, col, adj.weight_as(x.dtype), x, adj.num_rows)


def spmm_transposed_reference(adj: CsrAdjacency, dy: torch.Tensor) -> torch.Tensor:
    """Dense A^T · dy, (N_cols, C) from dy (N_rows, C), without forming A^T."""
    row, col = adj.row_index(), adj.col.long()
    return _scatter_edges(col, row, adj.weight_as(dy.dtype), dy, adj.num_cols)
