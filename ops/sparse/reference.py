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


def spmm_reference(adj: CsrAdjacency, x: torch.Tensor) -> torch.Tensor:
    """Dense Y = A · x, (N_rows, C) from x (N_cols, C), summing edges chunk by chunk."""
    row, col = adj.row_index(), adj.col.long()
    weight = adj.weight_as(x.dtype)
    y = x.new_zeros(adj.num_rows, x.shape[1])
    for start in range(0, max(adj.nnz, 1), EDGE_CHUNK):  # ≥ 1 pass: keeps the graph
        sl = slice(start, start + EDGE_CHUNK)
        y = y.index_add(0, row[sl], weight[sl, None] * x[col[sl]])
    return y


def spmm_transposed_reference(adj: CsrAdjacency, dy: torch.Tensor) -> torch.Tensor:
    """Dense A^T · dy, (N_cols, C) from dy (N_rows, C), without forming A^T."""
    row, col = adj.row_index(), adj.col.long()
    weight = adj.weight_as(dy.dtype)
    out = dy.new_zeros(adj.num_cols, dy.shape[1])
    for start in range(0, max(adj.nnz, 1), EDGE_CHUNK):  # ≥ 1 pass: keeps the graph
        sl = slice(start, start + EDGE_CHUNK)
        out = out.index_add(0, col[sl], weight[sl, None] * dy[row[sl]])
    return out
