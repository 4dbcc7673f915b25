"""Fast CPU path of MaxK-GNN's SpGEMM and SSpMM.

Dispatches to the C++/OpenMP kernels of ``cpu_kernels.py`` (built once with
``torch.utils.cpp_extension.load_inline``) and falls back to the vectorised-torch path of
``cpu_torch.py``, with a logged warning, when no C++ compiler is available. Non-CPU tensors
(e.g. CUDA with backend="cpu") run the vectorised-torch path.
"""

from __future__ import annotations

import torch

from ops.sparse import CsrAdjacency

from .cbsr import encode_indices
from .cpu_kernels import load_kernels
from .cpu_torch import spgemm_torch, sspmm_torch


def spgemm_cpu(
    adj: CsrAdjacency, values: torch.Tensor, indices: torch.Tensor, dim: int
) -> torch.Tensor:
    """(N_rows, dim) = A · scatter(values, indices)."""
    kernels = load_kernels() if values.device.type == "cpu" else None
    if kernels is None:
        return spgemm_torch(adj, values, indices, dim)
    return kernels.spgemm(adj, values, indices, dim)


def sspmm_cpu(adj: CsrAdjacency, grad_out: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """(N_cols, k) = (A^T · dY) at the CBSR positions, from A's CSR."""
    kernels = load_kernels() if grad_out.device.type == "cpu" else None
    if kernels is None:
        return sspmm_torch(adj, grad_out, indices)
    return kernels.sspmm(adj, grad_out, indices)


def topk_cpu(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CBSR (values, indices) of the k largest entries per row, no autograd graph."""
    kernels = load_kernels() if x.device.type == "cpu" else None
    if kernels is None:
        values, idx = torch.topk(x, k, dim=1, sorted=False)
        return values, encode_indices(idx, x.shape[1])
    return kernels.topk(x, k)
