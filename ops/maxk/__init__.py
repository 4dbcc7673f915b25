"""MaxK-GNN: the MaxK nonlinearity, CBSR, SpGEMM forward and SSpMM backward (ASPLOS 2024).

Public API: ``maxk``/``cbsr_to_dense`` (CBSR values + uint8/int16 indices), ``spgemm`` and
``sspmm`` (the two kernels), ``maxk_aggregate`` (Y = A · maxk(h, k) as one autograd.Function),
and the float64-capable references. Backends: "reference", "cpu" (C++/OpenMP, vectorised
torch without a compiler), "triton" (``ops.maxk.triton``, loaded on first use), resolved by
``ops.dispatch``. The sparse operand A is ``ops.sparse.CsrAdjacency`` (re-exported here).
"""

from ops.sparse import CsrAdjacency

from .autograd import MaxKAggregateFunction, maxk, maxk_aggregate, spgemm, sspmm
from .cbsr import cbsr_to_dense, decode_indices, index_dtype, maxk_reference
from .reference import (
    maxk_aggregate_reference,
    spgemm_reference,
    sspmm_reference,
)

__all__ = [
    "CsrAdjacency",
    "MaxKAggregateFunction",
    "cbsr_to_dense",
    "decode_indices",
    "index_dtype",
    "maxk",
    "maxk_aggregate",
    "maxk_aggregate_reference",
    "maxk_reference",
    "spgemm",
    "spgemm_reference",
    "sspmm",
    "sspmm_reference",
]
