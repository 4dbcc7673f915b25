"""C++/OpenMP top-k, SpGEMM and SSpMM for the CPU (``cpu_kernels.cpp``), built once and cached.

Top-k: per row a binary search over the 16-bit prefixes of orderable integer keys (each
probe one vectorised count), then bit masks collect the kept entries and ``nth_element``
settles the few sharing the threshold prefix; about 4x faster than ``torch.topk``, which
costs more than the SpGEMM itself on the CPU.

Forward (row-parallel, MaxK-GNN Eq. 3): rows of A are cut into parts of equal cost (k per
nonzero plus dim per row), handed to threads dynamically; for row i the kernel zeroes the
output row (the paper's shared-memory row buffer; 1 KiB at dim 256, so it stays in L1) and
adds w_ij · values[j, l] at indices[j, l] for every nonzero: k scalar FMAs per nonzero
instead of SpMM's dim. Scalar on purpose: AVX-512 gather/scatter measured slower on Zen 4.

Backward (MaxK-GNN Eq. 4, no A^T): dXs[j, l] = Σ_i w_ij · dY[i, indices[j, l]]. Each thread
owns a range of columns j (balanced by nonzeros per column, a count cached per graph) and
walks every row of A, finding its column range inside the row by binary search (columns are
sorted), so no two threads write the same dXs row: no atomics, no transpose, and the
summation order (ascending i) does not depend on the thread count. The inner loop is a
gather from the dY row, which stays in L1 while the row's nonzeros are processed.

Both loops are bound by memory operations, not arithmetic: ids are read 8 bytes at a time,
and the CBSR rows of the nonzeros a few steps ahead are prefetched (they are visited in
random order and do not stay in L2 beside the streamed CSR arrays and output).

Built on first use by ``ops/cpp_build.py`` (``-O3 -march=native -fopenmp``, cached, named by a
hash of source, flags, torch version and CPU flags). Threads: torch's intra-op pool
(``torch.set_num_threads``).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from ops.cpp_build import load_cpp_kernels
from ops.sparse import CsrAdjacency

CPP_FILE = Path(__file__).with_suffix(".cpp")  # the kernels; their text names the build


class CpuKernels:
    """The compiled module plus the per-graph arrays it needs (cached on the adjacency)."""

    def __init__(self, module) -> None:
        self.module = module

    @staticmethod
    def _opmath(dtype: torch.dtype) -> torch.dtype:
        return torch.float64 if dtype == torch.float64 else torch.float32

    @staticmethod
    def _col64(adj: CsrAdjacency) -> torch.Tensor:
        return adj.col if adj.col.dtype == torch.int64 else adj.cached("col64", adj.col.long)

    def topk(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """CBSR (values, indices) of the k largest entries per row (NaN counts as largest)."""
        values, indices = self.module.topk(x.contiguous(), k, x.shape[1] > 256)
        return values, indices

    def spgemm(
        self, adj: CsrAdjacency, values: torch.Tensor, indices: torch.Tensor, dim: int
    ) -> torch.Tensor:
        acc = self._opmath(values.dtype)
        y = self.module.spgemm(
            adj.rowptr, self._col64(adj), adj.weight_as(acc), values, indices, dim
        )
        return y.to(values.dtype)

    def sspmm(
        self, adj: CsrAdjacency, grad_out: torch.Tensor, indices: torch.Tensor
    ) -> torch.Tensor:
        acc = self._opmath(grad_out.dtype)

        def colptr() -> torch.Tensor:  # nonzeros before each column: balances the threads
            counts = torch.bincount(adj.col.long(), minlength=adj.num_cols)
            return torch.cat([counts.new_zeros(1), counts.cumsum(0)])

        dxs = self.module.sspmm(
            adj.rowptr,
            self._col64(adj),
            adj.weight_as(acc),
            grad_out,
            indices,
            adj.cached("colptr", colptr),
        )
        return dxs.to(grad_out.dtype)


@functools.cache
def load_kernels() -> CpuKernels | None:
    """The compiled kernels, or None (with a warning) when they cannot be built here."""
    module = load_cpp_kernels("maxk", CPP_FILE, ["topk", "spgemm", "sspmm"])
    return None if module is None else CpuKernels(module)
