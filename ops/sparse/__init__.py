"""The shared sparse layer of the graph ops: CSR adjacency, its per-graph cache, SpMM.

Public API: ``CsrAdjacency`` (weighted sorted CSR, ``from_edge_index`` with mean/gcn/sum
norms, ``to_torch_sparse``, ``transpose``), ``CachedGraph``/``AdjacencyCache`` (one graph's
adjacency and its torch.sparse (A, A^T) pair, built once per graph), ``spmm`` (Y = A · X on
torch.sparse CSR, backward through the prebuilt A^T; the SpMM baseline), and the
float64-capable references ``spmm_reference``/``spmm_transposed_reference``.
"""

from .cache import AdjacencyCache, CachedGraph
from .csr import NORMS, CsrAdjacency
from .reference import spmm_reference, spmm_transposed_reference
from .spmm import SpmmFunction, spmm

__all__ = [
    "NORMS",
    "AdjacencyCache",
    "CachedGraph",
    "CsrAdjacency",
    "SpmmFunction",
    "spmm",
    "spmm_reference",
    "spmm_transposed_reference",
]
