"""Accel-GCN's degree sorting and block-level partition, and the graph object its kernels take.

Accel-GCN (Xie et al., ICCAD 2023, arXiv:2308.11825) sorts the rows of the sparse matrix A by
degree and cuts the sorted rows into GPU blocks of 12 warps, each warp owning at most 32
nonzeros, so every block does about the same work and rows of one degree share a block.
The partition is a pure function of the sorted degree sequence, one int32 record
``(degree, row_begin, loc_begin, info)`` per block, written here exactly as the authors'
preprocessing script (``block_level_partition.py`` in their repository) writes it:

- Constants: 12 warps a block, ``deg_bound = 12 · 32 = 384``, at most 32 nonzeros a warp.
- Degree 1 ≤ d < 192: the smallest factor f of 12 with ``32 · f ≥ d`` (their loop stops at
  ``deg_bound // 2``, so f ≤ 6 and f = 12 is never chosen); the row gets f warps of
  ``w_nz = ⌈d / f⌉`` nonzeros and a block holds up to ``12 / f`` rows.
- 192 ≤ d ≤ 384: ``w_nz = 32`` (⌈d / 32⌉ of the 12 warps work) and one row a block.
- Rows of equal degree that are consecutive in the sorted order fill a block up to its row
  count; a run of r such rows gives ⌈r / rows_per_block⌉ blocks, the last one partial.
- d > 384: each row is cut into chunks of 384 nonzeros, the last chunk the remainder, one
  block a chunk; the kernel adds the chunks' partial sums with atomics.
- Degree 0: no block (the output is zeroed before the kernel runs).
- ``degree`` is the row's full degree (also in every chunk of a long row), ``row_begin`` the
  first sorted row of the block, ``loc_begin`` its first nonzero in the sorted CSR (for a
  chunk, the row's start plus 384 per earlier chunk), ``info = (w_nz << 16) | n_rows`` when
  d ≤ 384, else the chunk's nonzero count.
- Blocks are listed in sorted-row order (chunks of a row in order); the file ``.block4`` is
  the (blocks, 4) array flattened row-major as raw little-endian int32, with no header.
- The authors ship the degree-sorted CSR with their data set; their partition reads only its
  degrees, so any ascending order of the rows gives the same metadata. Here the sort is a
  stable ascending sort by degree, and the kernels write sorted row i to output row
  ``perm[i]``, so results come back in the caller's row order (the authors' benchmark keeps
  the sorted order).

``block_partition`` reproduces byte for byte the 16 ``.block4`` files the authors publish
(from the degree sequence each encodes), and their "pubmed" from its edges (Planetoid
PubMed with Cora's edges on ids 0-2707, both directions, duplicates merged, self loops kept);
``ACCEL_GCN_META_DIR`` turns that comparison on in the tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from os import PathLike

import numpy as np
import torch

from ops.sparse import CsrAdjacency

WARPS_PER_BLOCK = 12
WARP_NZ = 32
DEG_BOUND = WARPS_PER_BLOCK * WARP_NZ  # 384
FACTORS = (1, 2, 3, 4, 6, 12)
INT32_MAX = 2**31 - 1


def _degree_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """(w_nz, rows_per_block), each int64 (DEG_BOUND + 1,), indexed by degree 0..384."""
    warp_nz = [0] * (DEG_BOUND + 1)
    rows_per_block = [0] * (DEG_BOUND + 1)
    for degree in range(1, DEG_BOUND + 1):
        if degree < DEG_BOUND // 2:
            factor = next(f for f in FACTORS if WARP_NZ * f >= degree)
            warp_nz[degree] = -(-degree // factor)
            rows_per_block[degree] = WARPS_PER_BLOCK // factor
        else:
            warp_nz[degree], rows_per_block[degree] = WARP_NZ, 1
    return torch.tensor(warp_nz), torch.tensor(rows_per_block)


WARP_NZ_BY_DEGREE, ROWS_PER_BLOCK_BY_DEGREE = _degree_tables()


def degree_sort(rowptr: torch.Tensor) -> torch.Tensor:
    """The stable ascending order of the rows by degree: sorted position i holds row perm[i].

    Args:
        rowptr: (N + 1,) int64 CSR offsets.

    Returns:
        perm: (N,) int64 on rowptr's device; rows of equal degree keep their order.
    """
    if rowptr.dim() != 1 or rowptr.numel() < 1 or rowptr.dtype != torch.int64:
        raise ValueError(
            f"rowptr has shape {tuple(rowptr.shape)} and dtype {rowptr.dtype}; pass the (N + 1,) "
            "int64 offsets of a CSR"
        )
    return torch.sort(rowptr.diff(), stable=True).indices


def block_partition(sorted_degrees: torch.Tensor) -> torch.Tensor:
    """Accel-GCN's block-level partition of the degree-sorted rows (rules in the module doc).

    Args:
        sorted_degrees: (N,) integer, nondecreasing, ≥ 0: the degree of each sorted row.

    Returns:
        meta: (B, 4) int32 on the input's device, one ``(degree, row_begin, loc_begin, info)``
        record per block, in sorted-row order.
    """
    if sorted_degrees.dim() != 1 or sorted_degrees.is_floating_point():
        raise ValueError(
            f"sorted_degrees has shape {tuple(sorted_degrees.shape)} and dtype "
            f"{sorted_degrees.dtype}; pass the (N,) integer degrees of the sorted rows"
        )
    device = sorted_degrees.device
    degrees = sorted_degrees.long()
    if degrees.numel() == 0:
        return torch.zeros(0, 4, dtype=torch.int32, device=device)
    if int(degrees[0]) < 0:
        raise ValueError(f"sorted_degrees holds a negative degree {int(degrees[0])}")
    if (degrees.diff() < 0).any():
        at = int(torch.nonzero(degrees.diff() < 0)[0]) + 1
        raise ValueError(
            f"sorted_degrees is not ascending at position {at} ({int(degrees[at - 1])} then "
            f"{int(degrees[at])}); sort the rows with degree_sort first"
        )
    total = int(degrees.sum())
    if total > INT32_MAX:
        raise ValueError(f"{total} nonzeros do not fit the int32 metadata (at most {INT32_MAX})")
    row_start_loc = torch.cumsum(degrees, 0) - degrees  # (N,) first nonzero of each row

    # runs of equal degree: (run degree, first row, row count)
    run_degree, run_rows = torch.unique_consecutive(degrees, return_counts=True)
    run_first = torch.cumsum(run_rows, 0) - run_rows
    short = run_degree <= DEG_BOUND
    table_index = run_degree.clamp(max=DEG_BOUND)
    rows_per_block = ROWS_PER_BLOCK_BY_DEGREE.to(device)[table_index]  # 0 for degree 0
    warp_nz = WARP_NZ_BY_DEGREE.to(device)[table_index]
    chunks_per_row = (run_degree + DEG_BOUND - 1) // DEG_BOUND
    blocks_per_run = torch.where(
        short,
        (run_rows + rows_per_block - 1) // rows_per_block.clamp(min=1) * (run_degree > 0),
        run_rows * chunks_per_row,
    )

    run = torch.repeat_interleave(torch.arange(run_degree.numel(), device=device), blocks_per_run)
    rank = (
        torch.arange(run.numel(), device=device)
        - (torch.cumsum(blocks_per_run, 0) - blocks_per_run)[run]
    )  # (B,) index of the block inside its run
    degree, first, rows = run_degree[run], run_first[run], run_rows[run]
    block_short = short[run]

    # d ≤ 384: block k of a run starts at row first + k · rows_per_block
    per_block = rows_per_block[run]
    short_row = first + rank * per_block
    n_rows = torch.minimum(per_block, rows - rank * per_block)
    short_info = (warp_nz[run] << 16) | n_rows
    # d > 384: chunk c of row r, in row order then chunk order
    chunks = chunks_per_row[run].clamp(min=1)
    long_row = first + rank // chunks
    chunk = rank % chunks
    long_info = torch.clamp(degree - chunk * DEG_BOUND, max=DEG_BOUND)

    row_begin = torch.where(block_short, short_row, long_row)
    loc_begin = row_start_loc[row_begin] + torch.where(block_short, 0, chunk * DEG_BOUND)
    info = torch.where(block_short, short_info, long_info)
    return torch.stack([degree, row_begin, loc_begin, info], dim=1).to(torch.int32).contiguous()


def write_block4(meta: torch.Tensor, path: str | PathLike) -> None:
    """Write ``meta`` (B, 4) as raw little-endian int32, the layout of the authors' ``.block4``."""
    if meta.dim() != 2 or meta.shape[1] != 4:
        raise ValueError(f"meta has shape {tuple(meta.shape)}; pass the (B, 4) block metadata")
    meta.detach().cpu().to(torch.int32).numpy().astype("<i4").tofile(path)


def read_block4(path: str | PathLike) -> torch.Tensor:
    """Read a ``.block4`` file (raw little-endian int32, no header) as (B, 4) int32."""
    flat = np.fromfile(path, dtype="<i4")
    if flat.size % 4:
        raise ValueError(
            f"{path} holds {flat.size} int32 values, not a multiple of 4: not a .block4 file"
        )
    return torch.from_numpy(flat.astype(np.int32).reshape(-1, 4))


@dataclass(frozen=True, eq=False)
class AccelGraph:
    """A sparse matrix A in Accel-GCN's form: degree-sorted CSR, permutation, block metadata.

    Args:
        perm: (N,) int64, sorted row i is row perm[i] of A (the output row it writes).
        rowptr: (N + 1,) int64 offsets of the degree-sorted CSR.
        col: (E,) int32 column ids, the sorted rows' columns in their original order.
        weight: (E,) float32 edge weights, or None for unit weights.
        meta: (B, 4) int32 block metadata from ``block_partition``.
        num_cols: columns of A (rows of the feature matrix it multiplies).
        partition_seconds: wall time spent sorting and partitioning (``from_csr``).
    """

    perm: torch.Tensor
    rowptr: torch.Tensor
    col: torch.Tensor
    weight: torch.Tensor | None
    meta: torch.Tensor
    num_cols: int
    partition_seconds: float = 0.0

    def __post_init__(self) -> None:
        n = self.perm.numel()
        checks = [
            ("perm", self.perm, torch.int64, (n,)),
            ("rowptr", self.rowptr, torch.int64, (n + 1,)),
            ("col", self.col, torch.int32, (self.col.numel(),)),
            ("meta", self.meta, torch.int32, (self.meta.shape[0], 4)),
        ]
        if self.weight is not None:
            checks.append(("weight", self.weight, torch.float32, (self.col.numel(),)))
        for name, t, dtype, shape in checks:
            if t.dtype != dtype or tuple(t.shape) != shape:
                raise ValueError(
                    f"AccelGraph.{name} has dtype {t.dtype} and shape {tuple(t.shape)}; expected "
                    f"{dtype} and {shape} (build it with AccelGraph.from_csr)"
                )
            if t.device != self.perm.device:
                raise ValueError(
                    f"AccelGraph.{name} is on {t.device} but perm is on {self.perm.device}; "
                    "move the graph with AccelGraph.to(device)"
                )

    @property
    def num_rows(self) -> int:
        return self.perm.numel()

    def check_features(self, x: torch.Tensor) -> None:
        """Raise unless ``x`` is a float (num_cols, F) matrix on this graph's device: the input
        check every SpMM of ``ops/spmm`` runs (ValueError for shape and device, TypeError for
        the dtype)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"x has shape {shape}; pass a 2-D (num_cols={self.num_cols}, F) feature matrix"
            )
        if x.shape[0] != self.num_cols:
            raise ValueError(
                f"x has {x.shape[0]} rows but A has {self.num_cols} columns; pass x of shape "
                f"(num_cols={self.num_cols}, F)"
            )
        if x.device != self.device:
            raise ValueError(
                f"x is on {x.device} but the graph is on {self.device}; move one with .to(device)"
            )
        if not x.is_floating_point():
            raise TypeError(
                f"x has dtype {x.dtype}; pass a 2-D float feature matrix (float32 or float16 "
                "for the kernels)"
            )

    @property
    def nnz(self) -> int:
        return self.col.numel()

    @property
    def device(self) -> torch.device:
        return self.perm.device

    @classmethod
    def from_csr(cls, adj: CsrAdjacency, weighted: bool = True) -> AccelGraph:
        """Sort ``adj``'s rows by degree and partition them (timed in ``partition_seconds``).

        Args:
            adj: the sparse matrix A.
            weighted: keep A's weights (as float32); False gives unit weights (weight None).
        """
        if adj.num_cols > INT32_MAX:
            raise ValueError(f"num_cols={adj.num_cols} does not fit the int32 column ids")
        if adj.device.type == "cuda":
            torch.cuda.synchronize(adj.device)
        start = time.perf_counter()
        perm = degree_sort(adj.rowptr)
        degrees = adj.rowptr.diff()[perm]  # (N,) ascending
        rowptr = torch.zeros_like(adj.rowptr)
        torch.cumsum(degrees, 0, out=rowptr[1:])
        # sorted nonzero e of sorted row i comes from adj's nonzero rowptr_adj[perm[i]] + offset
        source_start = torch.repeat_interleave(adj.rowptr[perm] - rowptr[:-1], degrees)
        source = source_start + torch.arange(adj.nnz, device=adj.device)  # (E,)
        col = adj.col[source].to(torch.int32)
        weight = adj.weight[source].to(torch.float32) if weighted else None
        meta = block_partition(degrees)
        if adj.device.type == "cuda":
            torch.cuda.synchronize(adj.device)
        seconds = time.perf_counter() - start
        return cls(perm, rowptr, col, weight, meta, adj.num_cols, seconds)

    def to(self, device: torch.device | str) -> AccelGraph:
        """The same graph on ``device`` (self when already there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        return AccelGraph(
            self.perm.to(device),
            self.rowptr.to(device),
            self.col.to(device),
            None if self.weight is None else self.weight.to(device),
            self.meta.to(device),
            self.num_cols,
            self.partition_seconds,
        )


def accel_graph(adj: CsrAdjacency, weighted: bool = True) -> AccelGraph:
    """A's ``AccelGraph``, built once and cached on the adjacency."""
    return adj.cached(("accel_graph", weighted), lambda: AccelGraph.from_csr(adj, weighted))


def accel_graph_t(adj: CsrAdjacency, weighted: bool = True) -> AccelGraph:
    """A^T's ``AccelGraph`` (for the backward), built once and cached on A's adjacency."""
    return adj.cached(
        ("accel_graph_t", weighted), lambda: AccelGraph.from_csr(adj.transpose(), weighted)
    )
