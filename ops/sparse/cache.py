"""Per-graph cache of the adjacency in the forms the graph layers use, built once per graph.

A model that receives ``edge_index`` every step (full-batch node classification) asks an
:class:`AdjacencyCache` for the graph: the first call builds a :class:`CachedGraph` (the CSR
adjacency, then on demand A and A^T as torch.sparse CSR per dtype); later calls with the
same tensor, or an equal copy of it, return the cached one.
"""

from __future__ import annotations

import warnings

import torch

from .csr import CsrAdjacency


class CachedGraph:
    """One graph's adjacency in the forms the layers use, each built on first use.

    ``csr`` is the :class:`CsrAdjacency` the MaxK kernels read (their derived arrays are
    cached inside it); ``torch_sparse(dtype)`` gives (A, A^T) as torch.sparse CSR for
    ``spmm``.

    Args:
        edge_index: (2, E) PyG edge index (row 0 sources, row 1 targets).
        num_nodes: N.
        norm, self_loops: passed to ``CsrAdjacency.from_edge_index``.
    """

    def __init__(self, edge_index: torch.Tensor, num_nodes: int, norm: str, self_loops: bool):
        self.edge_index = edge_index  # held, so its storage cannot be reused by another graph
        self.version = edge_index._version
        self.num_nodes = num_nodes
        self.csr = CsrAdjacency.from_edge_index(
            edge_index, num_nodes, norm=norm, add_self_loops=self_loops
        )
        self._sparse: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor]] = {}

    def torch_sparse(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, A^T) as torch.sparse CSR tensors with weights in ``dtype``, cached per dtype."""
        if dtype not in self._sparse:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant)")
                a = self.csr.to_torch_sparse(dtype)
                a_t = self.csr.transpose().to_torch_sparse(dtype)
            self._sparse[dtype] = (a, a_t)
        return self._sparse[dtype]

    def same_tensor(self, edge_index: torch.Tensor) -> bool:
        """True for this graph's own tensor, unchanged since (a slice of it is not the same)."""
        held = self.edge_index
        return (
            edge_index.data_ptr() == held.data_ptr()
            and edge_index.device == held.device
            and edge_index.shape == held.shape
            and edge_index.stride() == held.stride()
            and edge_index._version == self.version
        )


class AdjacencyCache:
    """Builds each graph's :class:`CachedGraph` once, not every step.

    A graph is found by the identity of its ``edge_index`` storage (pointer and version
    counter, O(1)); a different tensor of the same shape and device, as when a trainer copies
    the batch to the GPU every step, is compared by value (O(E)) before anything is rebuilt.
    ``builds`` counts the adjacencies built so far.

    Args:
        norm, self_loops: passed to ``CsrAdjacency.from_edge_index``.
        max_graphs: graphs kept, the least recently used dropped first.
    """

    def __init__(self, norm: str, self_loops: bool, max_graphs: int = 4) -> None:
        self.norm, self.self_loops, self.max_graphs = norm, self_loops, max_graphs
        self.graphs: list[CachedGraph] = []
        self.builds = 0

    def get(self, edge_index: torch.Tensor, num_nodes: int) -> CachedGraph:
        """The cached graph of ``edge_index`` (built now if new), moved to the front."""
        found = next(
            (g for g in self.graphs if g.num_nodes == num_nodes and g.same_tensor(edge_index)),
            None,
        )
        if found is None:
            found = next(
                (
                    g
                    for g in self.graphs
                    if g.num_nodes == num_nodes
                    and g.edge_index.shape == edge_index.shape
                    and g.edge_index.device == edge_index.device
                    and torch.equal(g.edge_index, edge_index)
                ),
                None,
            )
            if found is not None:
                found.edge_index, found.version = edge_index, edge_index._version
        if found is None:
            found = CachedGraph(edge_index, num_nodes, self.norm, self.self_loops)
            self.builds += 1
        else:
            self.graphs.remove(found)
        self.graphs.insert(0, found)
        del self.graphs[self.max_graphs :]
        return found
