"""CSR adjacency with edge weights, the sparse operand A of the graph kernels.

Rows are destination nodes, columns source nodes: Y[i] = Σ_j A[i, j] · X[j], so a PyG
``edge_index`` (row 0 = source j, row 1 = target i, message j → i) becomes row i, column j.
Column ids are sorted ascending inside each row; MaxK-GNN's CPU backward relies on it to
give each thread a column range of every row by binary search instead of building A^T.
``to_torch_sparse`` gives the same matrix to torch.sparse (the SpMM baseline).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

NORMS = ("mean", "gcn", "sum")


@dataclass(frozen=True)
class CsrAdjacency:
    """Weighted sparse matrix A (num_rows × num_cols) in sorted CSR form.

    Args:
        rowptr: (num_rows + 1,) int64 offsets into col/weight, rowptr[0] = 0, nondecreasing.
        col: (E,) int64 or int32 column ids in [0, num_cols), strictly ascending inside a row.
        weight: (E,) float edge weights A[i, col[e]].
        num_cols: columns of A, i.e. rows of the feature matrix it multiplies.

    Construction validates everything (``validate``); derived arrays the kernels need (edge
    groups, per-dtype weights, the row index of each edge) are built once and cached.
    """

    rowptr: torch.Tensor
    col: torch.Tensor
    weight: torch.Tensor
    num_cols: int
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def num_rows(self) -> int:
        return self.rowptr.numel() - 1

    @property
    def nnz(self) -> int:
        return self.col.numel()

    @property
    def device(self) -> torch.device:
        return self.rowptr.device

    @property
    def shape(self) -> tuple[int, int]:
        return self.num_rows, self.num_cols

    def validate(self) -> CsrAdjacency:
        """Raise ValueError naming the problem unless this is a well-formed sorted CSR."""
        for name in ("rowptr", "col", "weight"):
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if t.dim() != 1:
                raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
            if t.device != self.rowptr.device:
                raise ValueError(
                    f"{name} is on {t.device} but rowptr is on {self.rowptr.device}; "
                    "build the adjacency on one device (CsrAdjacency.to(device))"
                )
        if self.rowptr.dtype != torch.int64:
            raise ValueError(f"rowptr has dtype {self.rowptr.dtype}; pass rowptr.long()")
        if self.col.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"col has dtype {self.col.dtype}; pass int64 or int32 column ids")
        if not self.weight.is_floating_point():
            raise ValueError(f"weight has dtype {self.weight.dtype}; pass float edge weights")
        if self.rowptr.numel() < 1:
            raise ValueError("rowptr is empty: a CSR with R rows has R + 1 offsets (R ≥ 0)")
        if self.col.numel() != self.weight.numel():
            raise ValueError(
                f"col has {self.col.numel()} entries but weight has {self.weight.numel()}: "
                "one weight per stored edge"
            )
        if not isinstance(self.num_cols, int) or self.num_cols < 0:
            raise ValueError(f"num_cols={self.num_cols!r}: pass a non-negative int")
        nnz = self.col.numel()
        first, last = int(self.rowptr[0]), int(self.rowptr[-1])
        if first != 0 or last != nnz:
            raise ValueError(
                f"rowptr runs from {first} to {last} but there are {nnz} edges: not a CSR "
                "(rowptr[0] must be 0 and rowptr[-1] the number of edges)"
            )
        lengths = self.rowptr.diff()
        if (lengths < 0).any():
            row = int(torch.nonzero(lengths < 0)[0])
            raise ValueError(f"rowptr decreases at row {row}: not a CSR (offsets must not drop)")
        if nnz:
            lo, hi = int(self.col.min()), int(self.col.max())
            if lo < 0 or hi >= self.num_cols:
                raise ValueError(
                    f"column ids span [{lo}, {hi}] but num_cols={self.num_cols}: "
                    "ids must lie in [0, num_cols)"
                )
            step = self.col[1:].long() - self.col[:-1].long()
            same_row = self.row_index()[1:] == self.row_index()[:-1]
            bad = same_row & (step <= 0)
            if bad.any():
                e = int(torch.nonzero(bad)[0]) + 1
                raise ValueError(
                    f"column ids of row {int(self.row_index()[e])} are not strictly ascending "
                    f"(edge {e}: {int(self.col[e - 1])} then {int(self.col[e])}); sort and "
                    "coalesce them, e.g. with CsrAdjacency.from_edge_index"
                )
        return self

    def row_index(self) -> torch.Tensor:
        """(E,) int64 row (destination) of each edge, cached."""
        key = "row_index"
        if key not in self._cache:
            rows = torch.arange(self.num_rows, device=self.device)
            self._cache[key] = rows.repeat_interleave(self.rowptr.diff())
        return self._cache[key]

    def cached(self, key: object, build) -> torch.Tensor:
        """``build()`` once per key; kernels keep their derived arrays here."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def weight_as(self, dtype: torch.dtype) -> torch.Tensor:
        """Edge weights in ``dtype`` (cached)."""
        if self.weight.dtype == dtype:
            return self.weight
        return self.cached(("weight", dtype), lambda: self.weight.to(dtype))

    def edge_groups(self, size: int = 64) -> torch.Tensor:
        """(G, 3) int64 edge groups (row, first edge, edge count ≤ size), cached.

        MaxK-GNN's load balancing (Sec. 5.1): each row is cut into ⌈d_i / size⌉ groups, so
        a kernel program never owns more than ``size`` nonzeros; empty rows get no group.
        """

        def build() -> torch.Tensor:
            lengths = self.rowptr.diff()
            per_row = (lengths + size - 1) // size  # (N_rows,)
            rows = torch.arange(self.num_rows, device=self.device).repeat_interleave(per_row)
            first_group = per_row.cumsum(0) - per_row  # index of each row's first group
            rank = torch.arange(rows.numel(), device=self.device) - first_group[rows]
            start = self.rowptr[rows] + rank * size
            count = (self.rowptr[rows + 1] - start).clamp(max=size)
            return torch.stack([rows, start, count], dim=1).contiguous()

        return self.cached(("edge_groups", size), build)

    def to(self, device: torch.device | str) -> CsrAdjacency:
        """The same adjacency on ``device`` (self when already there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        return CsrAdjacency(
            self.rowptr.to(device), self.col.to(device), self.weight.to(device), self.num_cols
        )

    def to_dense(self) -> torch.Tensor:
        """(num_rows, num_cols) dense A in the weights' dtype (tests and small graphs only)."""
        dense = self.weight.new_zeros(self.num_rows, self.num_cols)
        dense[self.row_index(), self.col.long()] = self.weight
        return dense

    def to_torch_sparse(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A as a ``torch.sparse_csr_tensor`` (the SpMM baseline: MKL on CPU, cuSPARSE on GPU)."""
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                self.rowptr,
                self.col.long(),
                self.weight if dtype is None else self.weight.to(dtype),
                size=self.shape,
                check_invariants=False,
            )

    def transpose(self) -> CsrAdjacency:
        """A^T as a new CSR (for baselines and tests; the MaxK kernels never need it)."""
        row = self.row_index()
        order = torch.argsort(self.col.long() * max(self.num_rows, 1) + row)
        counts = torch.bincount(self.col.long(), minlength=self.num_cols)
        rowptr = torch.zeros(self.num_cols + 1, dtype=torch.int64, device=self.device)
        rowptr[1:] = counts.cumsum(0)
        return CsrAdjacency(rowptr, row[order], self.weight[order], self.num_rows)

    @classmethod
    def from_edge_index(
        cls,
        edge_index: torch.Tensor,
        num_nodes: int,
        norm: str = "mean",
        add_self_loops: bool = False,
    ) -> CsrAdjacency:
        """Square N×N adjacency from a PyG ``edge_index`` with GNN edge weights.

        Args:
            edge_index: (2, E) integer, row 0 the source j, row 1 the target i (message j → i,
                so A[i, j] ≠ 0). Duplicate edges are merged into one.
            num_nodes: N; ids must lie in [0, N).
            norm: "mean" A[i, j] = 1/d_i (SAGE), "gcn" 1/sqrt(d_i · d_j) (GCN, PyG's
                ``gcn_norm``: d is the in-degree counted after the optional self loops),
                "sum" 1 (GIN). d_i is the number of distinct neighbours of i.
            add_self_loops: add (i, i) for every node that lacks one (PyG's
                ``add_remaining_self_loops``).
        """
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r}: choose one of {NORMS}")
        if not isinstance(edge_index, torch.Tensor) or edge_index.dim() != 2:
            raise ValueError("edge_index must be a (2, E) integer tensor")
        if edge_index.shape[0] != 2 or edge_index.is_floating_point():
            raise ValueError(
                f"edge_index has shape {tuple(edge_index.shape)} and dtype {edge_index.dtype}; "
                "pass a (2, E) integer tensor (row 0 sources, row 1 targets)"
            )
        if num_nodes < 0:
            raise ValueError(f"num_nodes={num_nodes}: pass N ≥ 0")
        src, dst = edge_index[0].long(), edge_index[1].long()
        ids = edge_index.reshape(-1)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_nodes):
            raise ValueError(f"edge_index has node ids outside [0, {num_nodes}): fix num_nodes")
        if add_self_loops:
            nodes = torch.arange(num_nodes, device=src.device)
            src, dst = torch.cat([src, nodes]), torch.cat([dst, nodes])
        key = torch.unique(dst * num_nodes + src)  # sorted: row-major, ascending columns
        row, col = key // max(num_nodes, 1), key % max(num_nodes, 1)
        deg = torch.bincount(row, minlength=num_nodes)
        rowptr = torch.zeros(num_nodes + 1, dtype=torch.int64, device=row.device)
        rowptr[1:] = deg.cumsum(0)
        degf = deg.to(torch.float32)
        if norm == "mean":
            weight = 1.0 / degf[row]
        elif norm == "gcn":
            inv_sqrt = degf.pow(-0.5).masked_fill_(deg == 0, 0.0)  # sources nobody points to
            weight = inv_sqrt[row] * inv_sqrt[col]
        else:
            weight = torch.ones(row.numel(), device=row.device)
        return cls(rowptr, col, weight, num_nodes)
