"""C++/OpenMP SpGEMM and SSpMM for the CPU, compiled once with ``load_inline`` and cached.

Forward (row-parallel, MaxK-GNN Eq. 3): each thread owns a range of rows of A, balanced by
cost (k per nonzero plus dim per row); for row i it accumulates w_ij · values[j, :] into a
dim-wide buffer at indices[j, :] (the paper's shared-memory row buffer, here in L1) and
writes the finished row once. k scattered FMAs per nonzero instead of SpMM's dim.

Backward (MaxK-GNN Eq. 4, no A^T): dXs[j, l] = Σ_i w_ij · dY[i, indices[j, l]]. Each thread
owns a range of columns j (balanced by nonzeros per column, a count cached per graph) and
walks every row of A, finding its column range inside the row by binary search (columns are
sorted), so no two threads write the same dXs row: no atomics, no transpose, and the
summation order (ascending i) does not depend on the thread count. The inner loop is a
gather from the dY row, which stays in L1 while the row's nonzeros are processed.

Build: ``-O3 -march=native -fopenmp`` into ``$TORCH_EXTENSIONS_DIR`` or
``~/.cache/effml/torch_extensions``, named by a hash of the source, flags, torch version and
CPU flags so a stale or foreign build is never loaded. Threads: torch's intra-op pool
(``torch.set_num_threads``).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
from pathlib import Path

import torch

from .csr import CsrAdjacency

log = logging.getLogger(__name__)

CFLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=fast"]

CPP_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <vector>

namespace {

inline int64_t decode(uint8_t v) { return v; }
inline int64_t decode(int16_t v) { return static_cast<uint16_t>(v); }

// parts + 1 boundaries into [0, n) splitting the monotone prefix cost(r) evenly.
template <typename Cost>
std::vector<int64_t> split_even(int64_t n, int64_t parts, Cost cost) {
  std::vector<int64_t> bounds(parts + 1, n);
  bounds[0] = 0;
  const double total = static_cast<double>(cost(n));
  int64_t lo = 0;
  for (int64_t p = 1; p < parts; ++p) {
    const double target = total * static_cast<double>(p) / static_cast<double>(parts);
    int64_t a = lo, b = n;  // first r with cost(r) >= target
    while (a < b) {
      const int64_t m = a + (b - a) / 2;
      if (static_cast<double>(cost(m)) < target) a = m + 1; else b = m;
    }
    bounds[p] = lo = a;
  }
  return bounds;
}

// One part per thread, or a single inline part for small problems (a parallel region costs
// more than it saves there, and much more when the cores are oversubscribed).
inline int64_t num_parts(int64_t work) {
  return work < (int64_t(1) << 16) ? 1 : std::max<int64_t>(1, at::get_num_threads());
}

template <typename scalar_t, typename index_t>
void spgemm_impl(const int64_t* rowptr, const int64_t* col, const at::opmath_type<scalar_t>* w,
                 const scalar_t* values, const index_t* indices,
                 at::opmath_type<scalar_t>* y, int64_t rows, int64_t k, int64_t dim) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t parts = num_parts(rowptr[rows] * k + rows * dim);
  const auto bounds = split_even(rows, parts, [&](int64_t r) { return rowptr[r] * k + r * dim; });
  at::parallel_for(0, parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      for (int64_t i = bounds[p]; i < bounds[p + 1]; ++i) {
        acc_t* out = y + i * dim;
        std::fill(out, out + dim, acc_t(0));
        for (int64_t e = rowptr[i]; e < rowptr[i + 1]; ++e) {
          const int64_t j = col[e];
          const acc_t wt = w[e];
          const scalar_t* v = values + j * k;
          const index_t* ix = indices + j * k;
          // the k ids of one CBSR row are distinct: no conflicts inside this loop
#pragma omp simd
          for (int64_t l = 0; l < k; ++l) out[decode(ix[l])] += wt * static_cast<acc_t>(v[l]);
        }
      }
    }
  });
}

template <typename scalar_t, typename index_t>
void sspmm_impl(const int64_t* rowptr, const int64_t* col, const at::opmath_type<scalar_t>* w,
                const scalar_t* dy, const index_t* indices, const int64_t* colptr,
                at::opmath_type<scalar_t>* dxs, int64_t rows, int64_t cols, int64_t k,
                int64_t dim) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t parts = num_parts(colptr[cols] * k + rows);
  const auto bounds = split_even(cols, parts, [&](int64_t c) { return colptr[c] * k + c * k; });
  at::parallel_for(0, parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t c0 = bounds[p], c1 = bounds[p + 1];
      if (c0 == c1) continue;
      const bool all_cols = c0 == 0 && c1 == cols;
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t* first = col + rowptr[i];
        const int64_t* last = col + rowptr[i + 1];
        if (first == last) continue;
        if (!all_cols) {
          first = std::lower_bound(first, last, c0);
          last = std::lower_bound(first, last, c1);
        }
        const scalar_t* dyr = dy + i * dim;
        for (const int64_t* c = first; c < last; ++c) {
          const int64_t e = c - col;
          const int64_t j = *c;
          const acc_t wt = w[e];
          const index_t* ix = indices + j * k;
          acc_t* out = dxs + j * k;
#pragma omp simd
          for (int64_t l = 0; l < k; ++l) out[l] += wt * static_cast<acc_t>(dyr[decode(ix[l])]);
        }
      }
    }
  });
}

}  // namespace

torch::Tensor spgemm(torch::Tensor rowptr, torch::Tensor col, torch::Tensor weight,
                     torch::Tensor values, torch::Tensor indices, int64_t dim) {
  const int64_t rows = rowptr.numel() - 1, k = values.size(1);
  auto opts = values.options().dtype(weight.scalar_type());
  auto y = torch::empty({rows, dim}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, values.scalar_type(), "spgemm", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if (indices.scalar_type() == at::kByte) {
      spgemm_impl<scalar_t, uint8_t>(rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(),
          weight.data_ptr<acc_t>(), values.data_ptr<scalar_t>(), indices.data_ptr<uint8_t>(),
          y.data_ptr<acc_t>(), rows, k, dim);
    } else {
      spgemm_impl<scalar_t, int16_t>(rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(),
          weight.data_ptr<acc_t>(), values.data_ptr<scalar_t>(), indices.data_ptr<int16_t>(),
          y.data_ptr<acc_t>(), rows, k, dim);
    }
  });
  return y;
}

torch::Tensor sspmm(torch::Tensor rowptr, torch::Tensor col, torch::Tensor weight,
                    torch::Tensor grad_out, torch::Tensor indices, torch::Tensor colptr) {
  const int64_t rows = rowptr.numel() - 1, cols = colptr.numel() - 1;
  const int64_t k = indices.size(1), dim = grad_out.size(1);
  auto dxs = torch::zeros({cols, k}, grad_out.options().dtype(weight.scalar_type()));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(), "sspmm", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if (indices.scalar_type() == at::kByte) {
      sspmm_impl<scalar_t, uint8_t>(rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(),
          weight.data_ptr<acc_t>(), grad_out.data_ptr<scalar_t>(), indices.data_ptr<uint8_t>(),
          colptr.data_ptr<int64_t>(), dxs.data_ptr<acc_t>(), rows, cols, k, dim);
    } else {
      sspmm_impl<scalar_t, int16_t>(rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(),
          weight.data_ptr<acc_t>(), grad_out.data_ptr<scalar_t>(), indices.data_ptr<int16_t>(),
          colptr.data_ptr<int64_t>(), dxs.data_ptr<acc_t>(), rows, cols, k, dim);
    }
  });
  return dxs;
}
"""


def _build_dir() -> Path:
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    return Path(root) if root else Path.home() / ".cache" / "effml" / "torch_extensions"


def _cpu_signature() -> str:
    """The CPU's feature flags (``-march=native`` builds are only valid on matching CPUs)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    if os.environ.get("EFFML_MAXK_NO_CPP") == "1":
        log.warning("EFFML_MAXK_NO_CPP=1: MaxK CPU kernels use the vectorised-torch fallback")
        return None
    from torch.utils.cpp_extension import load_inline

    tag = "|".join([CPP_SOURCE, *CFLAGS, torch.__version__, _cpu_signature()])
    name = "effml_maxk_cpu_" + hashlib.sha256(tag.encode()).hexdigest()[:12]
    build_dir = _build_dir() / name
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
        module = load_inline(
            name=name,
            cpp_sources=[CPP_SOURCE],
            functions=["spgemm", "sspmm"],
            extra_cflags=CFLAGS,
            extra_ldflags=["-fopenmp"],
            build_directory=str(build_dir),
            verbose=False,
        )
    except (RuntimeError, OSError, ImportError, ValueError) as err:
        log.warning(
            "MaxK CPU kernels could not be compiled (%s); using the slower vectorised-torch "
            "path. Install a C++ compiler (g++) and ninja to get the fast path.",
            str(err).splitlines()[0] if str(err) else type(err).__name__,
        )
        return None
    return CpuKernels(module)
