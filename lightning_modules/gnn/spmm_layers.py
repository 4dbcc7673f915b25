"""GCN and GraphSAGE layers whose neighbour aggregation is one of effml's SpMM backends
(``ops/spmm``): the Accel-GCN kernel (Xie et al., ICCAD 2023, arXiv:2308.11825; Triton on
CUDA, C++ on the CPU) or ``torch.sparse`` (cuSPARSE / MKL), so the same training can be run
and timed through each.

The layers compute what PyG's ``GCNConv`` and ``SAGEConv(aggr="mean")`` compute, with the
same parameter shapes and initialisation:

- GCN: ``Â · (X W) + b`` with ``Â = D^-1/2 (A + I) D^-1/2`` (PyG's ``gcn_norm``);
- SAGE: ``W_l · mean_{j→i} x_j + b + W_r · x_i``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import init

from ops.sparse import CachedGraph
from ops.spmm import spmm

# the aggregation backends a layer may use; "pyg" means PyG's own convolutions (nets.py)
AGGREGATIONS = ("pyg", "torch_sparse", "accel")
# (norm, self loops) of the adjacency each layer aggregates over
ADJACENCY = {"gcn": ("gcn", True), "sage": ("mean", False)}


class SpmmGCNConv(nn.Module):
    """GCN: ``Â · (X W) + b`` through ``ops.spmm.spmm``.

    Shapes:
        x: (N, in_channels) → (N, out_channels)
    """

    def __init__(self, in_channels: int, out_channels: int, backend: str) -> None:
        super().__init__()
        self.backend = backend
        self.lin = nn.Linear(in_channels, out_channels, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        init.xavier_uniform_(self.lin.weight)

    def forward(self, x: torch.Tensor, graph: CachedGraph) -> torch.Tensor:
        return spmm(graph.csr, self.lin(x), backend=self.backend) + self.bias


class SpmmSAGEConv(nn.Module):
    """GraphSAGE with the mean aggregator: ``W_l · mean_{j→i} x_j + b + W_r · x_i``.

    Shapes:
        x: (N, in_channels) → (N, out_channels)
    """

    def __init__(self, in_channels: int, out_channels: int, backend: str) -> None:
        super().__init__()
        self.backend = backend
        self.lin_l = nn.Linear(in_channels, out_channels)
        self.lin_r = nn.Linear(in_channels, out_channels, bias=False)

    def forward(self, x: torch.Tensor, graph: CachedGraph) -> torch.Tensor:
        neighbours = spmm(graph.csr, x, backend=self.backend)  # (N, in_channels)
        return self.lin_l(neighbours) + self.lin_r(x)


SPMM_CONVS = {"gcn": SpmmGCNConv, "sage": SpmmSAGEConv}
