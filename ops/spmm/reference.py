"""Accel-GCN SpMM in plain PyTorch: the result, and the block-by-block specification.

``spmm_reference`` computes Y = A · X from an ``AccelGraph`` (any float dtype, float64 too);
``spmm_blocks_reference`` walks the block metadata exactly as the kernels of Accel-GCN
(Xie et al., ICCAD 2023, arXiv:2308.11825) do, warp by warp, so it states what each block
computes: slow, for tiny graphs and tests only. Both accumulate in at least float32 (fp16
and bf16 inputs are summed in float32, as the kernels do) and return x's dtype, with rows
in the caller's order.
"""

from __future__ import annotations

import torch

from .partition import DEG_BOUND, WARP_NZ, AccelGraph

EDGE_CHUNK = 1 << 16


def _accumulation_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def _edge_weights(graph: AccelGraph, dtype: torch.dtype) -> torch.Tensor:
    """(E,) weights in ``dtype``, ones when the graph is unweighted."""
    if graph.weight is None:
        return torch.ones(graph.nnz, dtype=dtype, device=graph.device)
    return graph.weight.to(dtype)


def spmm_reference(graph: AccelGraph, x: torch.Tensor) -> torch.Tensor:
    """Y = A · x in the caller's row order, edges summed chunk by chunk with ``index_add``.

    Shapes:
        x: (num_cols, F); returns (num_rows, F) in x's dtype.
    """
    graph.check_features(x)
    dtype = _accumulation_dtype(x)
    features = x.to(dtype)
    weight = _edge_weights(graph, dtype)
    # (E,) output row of each nonzero: sorted row i writes row perm[i]
    out_row = graph.perm.repeat_interleave(graph.rowptr.diff())
    col = graph.col.long()
    out = features.new_zeros(graph.num_rows, x.shape[1])
    for start in range(0, graph.nnz, EDGE_CHUNK):
        sl = slice(start, start + EDGE_CHUNK)
        out.index_add_(0, out_row[sl], weight[sl, None] * features[col[sl]])
    return out.to(x.dtype)


def spmm_blocks_reference(graph: AccelGraph, x: torch.Tensor) -> torch.Tensor:
    """Y = A · x computed block by block from ``graph.meta``, as the kernels do (tiny graphs).

    Each block ``(degree, row_begin, loc_begin, info)``:
      - degree ≤ 384: ``n_rows = info & 0xFFFF`` rows of ``degree`` nonzeros each, stored back
        to back from ``loc_begin``; each row is split into warps of ``w_nz = info >> 16``
        nonzeros; one warp per row stores its sum, several add theirs (atomics on a GPU).
      - degree > 384: one chunk of ``info`` nonzeros of row ``row_begin`` from ``loc_begin``,
        split into warps of 32 nonzeros, added to the row (atomics: other chunks add too).
    Sorted row i is written to output row ``perm[i]``; rows no block covers stay zero.

    Shapes:
        x: (num_cols, F); returns (num_rows, F) in x's dtype.
    """
    graph.check_features(x)
    dtype = _accumulation_dtype(x)
    features = x.to(dtype)
    weight = _edge_weights(graph, dtype)
    col = graph.col.long()
    out = features.new_zeros(graph.num_rows, x.shape[1])
    for degree, row_begin, loc_begin, info in graph.meta.tolist():
        if degree <= DEG_BOUND:
            n_rows, w_nz, row_nz = info & 0xFFFF, info >> 16, degree
        else:
            n_rows, w_nz, row_nz = 1, WARP_NZ, info
        warps_per_row = -(-row_nz // w_nz)
        for r in range(n_rows):
            out_row = int(graph.perm[row_begin + r])
            row_loc = loc_begin + r * row_nz
            partials = []
            for w in range(warps_per_row):
                nz = slice(row_loc + w * w_nz, row_loc + min((w + 1) * w_nz, row_nz))
                partials.append((weight[nz, None] * features[col[nz]]).sum(0))
            if warps_per_row == 1 and degree <= DEG_BOUND:
                out[out_row] = partials[0]
            else:
                for partial in partials:
                    out[out_row] += partial
    return out.to(x.dtype)
