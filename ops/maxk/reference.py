"""MaxK-GNN's sparse kernels, the specification in plain PyTorch (any float dtype, float64 too).

    SpGEMM  Y = A · scatter(values, indices)                       (N_rows, dim)
    SSpMM   dXs[j, l] = Σ_i A[i, j] · dY[i, indices[j, l]]          (N_cols, k)
            = (A^T · dY).gather(1, indices)
    layer   Y = A · maxk(h, k)

MaxK-GNN, https://arxiv.org/abs/2312.08656, Sec. 4 (Eq. 3 forward, Eq. 4 backward), written
on the SpMM references of ``ops.sparse`` (edges in chunks, memory O(chunk · dim)). Autograd
through these functions gives the reference gradients (``torch.autograd.gradcheck`` holds in
float64).
"""

from __future__ import annotations

import torch

from ops.sparse import CsrAdjacency, spmm_reference, spmm_transposed_reference

from .cbsr import cbsr_to_dense, check_cbsr, decode_indices, maxk_reference


def spgemm_reference(
    adj: CsrAdjacency, values: torch.Tensor, indices: torch.Tensor, dim: int
) -> torch.Tensor:
    """Y = A · scatter(values, indices): (N_rows, dim) from CBSR (N_cols, k)."""
    return spmm_reference(adj, cbsr_to_dense(values, indices, dim))


def sspmm_reference(
    adj: CsrAdjacency, grad_out: torch.Tensor, indices: torch.Tensor
) -> torch.Tensor:
    """(A^T · dY) sampled at the CBSR positions: (N_cols, k) from dY (N_rows, dim)."""
    return spmm_transposed_reference(adj, grad_out).gather(1, decode_indices(indices))


def maxk_aggregate_reference(
    adj: CsrAdjacency, h: torch.Tensor, k: int, return_dense: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Y = A · maxk(h, k) under plain autograd; with return_dense also maxk(h, k) as dense."""
    values, indices = maxk_reference(h, k)
    check_cbsr(values, indices, h.shape[1])
    y = spgemm_reference(adj, values, indices, h.shape[1])
    if return_dense:
        return y, cbsr_to_dense(values, indices, h.shape[1])
    return y
