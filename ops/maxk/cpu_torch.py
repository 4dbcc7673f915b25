"""Vectorised-torch SpGEMM / SSpMM: the CPU fallback when the C++ kernels cannot be built.

Both work edge-chunk by edge-chunk on (chunk, k) blocks, never on (E, dim):
forward  Y.view(-1)[row·dim + idx[col]] += w · values[col]       (index_add, no transpose)
backward dXs.view(-1)[col·k + l] += w · dY.view(-1)[row·dim + idx[col, l]]
Half-precision inputs accumulate in float32.
"""

from __future__ import annotations

import torch

from ops.sparse import CsrAdjacency

from .cbsr import decode_indices

EDGE_CHUNK = 1 << 14


def opmath_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for float64, float32 for everything narrower."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def spgemm_torch(
    adj: CsrAdjacency, values: torch.Tensor, indices: torch.Tensor, dim: int
) -> torch.Tensor:
    """(N_rows, dim) = A · scatter(values, indices) with index_add over edge chunks."""
    acc = opmath_dtype(values.dtype)
    row, col = adj.row_index(), adj.col.long()
    weight = adj.weight_as(acc)
    vals = values.to(acc)
    idx = decode_indices(indices)  # (N_cols, k)
    y = torch.zeros(adj.num_rows * dim, dtype=acc, device=values.device)
    for start in range(0, adj.nnz, EDGE_CHUNK):
        sl = slice(start, start + EDGE_CHUNK)
        c = col[sl]
        target = (row[sl, None] * dim + idx[c]).view(-1)  # (chunk·k,)
        y.index_add_(0, target, (weight[sl, None] * vals[c]).view(-1))
    return y.view(adj.num_rows, dim).to(values.dtype)


def sspmm_torch(adj: CsrAdjacency, grad_out: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """(N_cols, k) = (A^T · dY) at the CBSR positions, scattering from A's rows."""
    acc = opmath_dtype(grad_out.dtype)
    row, col = adj.row_index(), adj.col.long()
    weight = adj.weight_as(acc)
    dy = grad_out.to(acc).reshape(-1)
    idx = decode_indices(indices)
    dim, k = grad_out.shape[1], indices.shape[1]
    lanes = torch.arange(k, device=grad_out.device)
    out = torch.zeros(adj.num_cols * k, dtype=acc, device=grad_out.device)
    for start in range(0, adj.nnz, EDGE_CHUNK):
        sl = slice(start, start + EDGE_CHUNK)
        c = col[sl]
        picked = dy[(row[sl, None] * dim + idx[c]).view(-1)].view(-1, k)  # (chunk, k)
        out.index_add_(0, (c[:, None] * k + lanes).view(-1), (weight[sl, None] * picked).view(-1))
    return out.view(adj.num_cols, k).to(grad_out.dtype)
