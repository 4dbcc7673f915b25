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

Build: ``-O3 -march=native -fopenmp`` into ``$TORCH_EXTENSIONS_DIR`` or
``~/.cache/effml/torch_extensions``, named by a hash of the source, flags, torch version and
CPU flags so a stale or foreign build is never loaded. Threads: torch's intra-op pool
(``torch.set_num_threads``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import sys
from pathlib import Path

import torch

from ops.dispatch import warn_fallback
from ops.sparse import CsrAdjacency

CFLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=fast"]

CPP_FILE = Path(__file__).with_suffix(".cpp")  # the kernels; their text names the build


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
    if os.environ.get("EFFML_MAXK_NO_CPP") == "1":
        warn_fallback("maxk", "EFFML_MAXK_NO_CPP=1: the CPU kernels use vectorised torch")
        return None
    from torch.utils.cpp_extension import load_inline

    scripts = str(Path(sys.executable).parent)  # pip's ninja lives beside the interpreter
    path = os.environ.get("PATH", "")
    if shutil.which("ninja") is None and scripts not in path.split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + path
    try:
        source = CPP_FILE.read_text()
    except OSError as err:
        warn_fallback(
            "maxk", f"cannot read {CPP_FILE} ({err}); the CPU kernels use vectorised torch"
        )
        return None
    tag = "|".join([source, *CFLAGS, torch.__version__, _cpu_signature()])
    name = "effml_maxk_cpu_" + hashlib.sha256(tag.encode()).hexdigest()[:12]
    build_dir = _build_dir() / name
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
        module = load_inline(
            name=name,
            cpp_sources=[source],
            functions=["topk", "spgemm", "sspmm"],
            extra_cflags=CFLAGS,
            extra_ldflags=["-fopenmp"],
            build_directory=str(build_dir),
            verbose=False,
        )
    except (RuntimeError, OSError, ImportError, ValueError) as err:
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        warn_fallback(
            "maxk",
            f"the C++ CPU kernels could not be compiled ({first_line}); using the slower "
            "vectorised-torch path. Install a C++ compiler (g++) and ninja to get the fast path.",
        )
        return None
    return CpuKernels(module)
