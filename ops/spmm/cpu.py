"""Accel-GCN's SpMM Y = A · X on the CPU: a C++/OpenMP kernel (``cpu_kernels.cpp``), built once.

Accel-GCN (Xie et al., ICCAD 2023, arXiv:2308.11825) balances GPU blocks by sorting rows by
degree and cutting them into blocks of about equal work. The CPU kernel consumes the same
degree-sorted CSR and block metadata (``partition.py``):

- Threads: the blocks are cut into parts of about equal cost (nonzeros plus two per row; the
  cost before a block is read off its ``row_begin`` and ``loc_begin``, no extra array), four
  parts a thread, handed out dynamically so a thread descheduled on shared cores does not hold
  up the others. One thread, or a small product, runs one part without a parallel region.
- Rows: a block's rows (all of one degree) are summed one at a time; sorted row i is written
  once to output row ``perm[i]``, so results come back in the caller's order. Degree-0 rows,
  the first ones in sorted order, get no block and are zeroed.
- Rows above 384 nonzeros arrive as 384-nonzero chunks, one block each. The chunks of a row
  that fall in one part are summed in one pass; when a part holds only some of them, its
  partial sum goes to one of the part's two fp32 slots (a part can split only its first and
  last row), and the slots are added in part order after the threads join: no atomics, no
  races, and the summation order depends only on the partition.
- Register tiles: the width is covered by tiles of 8, 4, 2 and 1 vectors of 16 fp32 lanes
  (gcc vector types: AVX-512 or pairs of AVX2 registers under ``-march=native``), each tile's
  accumulators held in registers while the row's nonzeros stream past, then stored once; the
  last ``width % 16`` columns are summed lane by lane. Column ids are int32; the row of x four
  nonzeros ahead is prefetched (its rows are visited in random order). fp16 inputs are
  converted on load (F16C) and accumulated in fp32; the output has x's dtype.

Built on first use by ``ops/cpp_build.py`` (cached, named by a hash of source, flags, torch
version and CPU flags). Threads: torch's intra-op pool (``torch.set_num_threads``). Without a
working compiler (or with ``EFFML_SPMM_NO_CPP=1``) the vectorised-torch ``spmm_cpu_torch`` runs
instead, announced once by ``warn_fallback``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from types import ModuleType

import torch

from ops.cpp_build import load_cpp_kernels

from .partition import AccelGraph

CPP_FILE = Path(__file__).with_name("cpu_kernels.cpp")  # the kernel; its text names the build
KERNEL_DTYPES = (torch.float32, torch.float16)
EDGE_CHUNK_ELEMENTS = 1 << 22  # gathered features per index_add step of the torch path


@functools.cache
def load_kernel() -> ModuleType | None:
    """The compiled extension module (its ``spmm``), or None with a warning when unbuildable."""
    return load_cpp_kernels("spmm", CPP_FILE, ["spmm"])


def spmm_cpu(graph: AccelGraph, x: torch.Tensor) -> torch.Tensor:
    """Y = A · x with the C++/OpenMP kernel, rows in the caller's order.

    Args:
        graph: A, degree-sorted and partitioned (``AccelGraph.from_csr``), on the CPU.
        x: features, float32 or float16 (summed in float32); other floats run the torch path.

    Returns:
        Y in x's dtype.

    Shapes:
        x: (num_cols, F); returns (num_rows, F).
    """
    graph.check_features(x)
    kernel = load_kernel() if x.device.type == "cpu" and x.dtype in KERNEL_DTYPES else None
    if kernel is None:
        return spmm_cpu_torch(graph, x)
    return kernel.spmm(
        graph.perm, graph.rowptr, graph.col, graph.weight, graph.meta, x.contiguous()
    )


def spmm_cpu_torch(graph: AccelGraph, x: torch.Tensor) -> torch.Tensor:
    """Y = A · x in vectorised torch (the fallback), summed in at least float32.

    Nonzeros are gathered, weighted and added to their output rows with ``index_add_`` in
    chunks of about ``EDGE_CHUNK_ELEMENTS`` features, so memory stays bounded on large graphs.

    Shapes:
        x: (num_cols, F); returns (num_rows, F) in x's dtype.
    """
    graph.check_features(x)
    acc_dtype = torch.promote_types(x.dtype, torch.float32)
    features = x.to(acc_dtype)
    width = x.shape[1]
    out = features.new_zeros(graph.num_rows, width)  # (N, F), the caller's row order
    out_row = graph.perm.repeat_interleave(graph.rowptr.diff())  # (E,) output row of each nonzero
    col = graph.col.long()
    step = max(1, EDGE_CHUNK_ELEMENTS // max(width, 1))
    for start in range(0, graph.nnz, step):
        nz = slice(start, start + step)
        gathered = features[col[nz]]  # (chunk, F)
        if graph.weight is not None:
            gathered *= graph.weight[nz, None].to(acc_dtype)
        out.index_add_(0, out_row[nz], gathered)
    return out.to(x.dtype)
