"""MaxK-GNN's node classifiers: SAGE, GCN and GIN stacks whose aggregation runs on CBSR kernels.

MaxK-GNN (Peng et al., ASPLOS 2024, https://arxiv.org/abs/2312.08656; code xiexi51/MaxK-GNN,
``utils/models.py``). The layout is the paper's, not PyG's conv-norm-act stack:

    lin_in → [pre → σ → dropout → aggregate → post → LayerNorm] × L → lin_out

    SAGE  pre = id;  post: W_l · mean_{j→i} a_j + W_r · a_i + b        (DGL SAGEConv, "mean")
    GCN   relu(lin_in);  pre = Linear;  post: Σ_j a_j / sqrt(d_i d_j) + b, self loops in A
    GIN   relu(lin_in);  pre = Linear;  post: (1 + ε) · a_i + Σ_{j→i} a_j, learnable ε = 0

σ is MaxK (keep the k largest entries of each row, Eq. 1) or ReLU. With MaxK, σ and the
aggregation ``A · a`` run on ``ops.maxk``: top-k into CBSR, SpGEMM forward, SSpMM backward
(Sec. 4), never a dense masked matrix through message passing. With ReLU the aggregation is
``ops.sparse.spmm``, torch.sparse CSR × dense (MKL on CPU, cuSPARSE on GPU) with a cached
A^T for the backward: the baseline the paper compares against (DGL's SpMM). Each graph's
adjacency is built once (``ops.sparse.AdjacencyCache``).

Dropout follows the paper (DGL's ``feat_drop``): after σ, one mask shared by the neighbour
and root terms. Without active dropout (evaluation, or p = 0) a MaxK layer is one call of
``maxk_aggregate``; in training with p > 0 the same pieces run one by one so dropout touches
only the k kept values per row: ``maxk`` → dropout on the CBSR values → ``spgemm`` (SpGEMM
forward, SSpMM backward), the root term ``cbsr_to_dense`` of the dropped values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import init

from effml.checks import check_choice, check_range, with_defaults
from effml.errors import ConfigError
from lightning_modules.base import check_op_backend
from lightning_modules.gnn.nets import check_widths
from ops.maxk import cbsr_to_dense, maxk, maxk_aggregate, spgemm
from ops.sparse import AdjacencyCache, CachedGraph, spmm

CONVS = ("sage", "gcn", "gin")
NONLINEARITIES = ("maxk", "relu")
NORMS = ("none", "layer")
# conv → (edge weights of A, self loops added to A)
ADJACENCY = {"sage": ("mean", False), "gcn": ("gcn", True), "gin": ("sum", False)}


class Aggregation(nn.Module):
    """a = dropout(σ(h)) and A · a, for σ = MaxK (through ``ops.maxk``) or ReLU.

    Returns (A · a, a) when ``root`` is asked for, else (A · a, None).

    Shapes:
        h: (N, width) → (N, width), (N, width) | None
    """

    def __init__(self, nonlinearity: str, k: int, dropout: float, backend: str | None) -> None:
        super().__init__()
        self.nonlinearity, self.k, self.p, self.backend = nonlinearity, k, dropout, backend

    def forward(
        self, h: torch.Tensor, graph: CachedGraph, root: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.nonlinearity == "relu":
            a = F.dropout(F.relu(h), self.p, self.training)
            a_csr, a_t = graph.torch_sparse(h.dtype)
            return spmm(a_csr, a_t, a), a
        if not (self.training and self.p > 0):
            if root:
                return maxk_aggregate(graph.csr, h, self.k, self.backend, return_dense=True)
            return maxk_aggregate(graph.csr, h, self.k, self.backend), None
        values, indices = maxk(h, self.k, self.backend)  # CBSR (N, k) each
        values = F.dropout(values, self.p, training=True)
        y = spgemm(graph.csr, values, indices, h.shape[1], self.backend)
        return y, cbsr_to_dense(values, indices, h.shape[1]) if root else None


class SAGELayer(nn.Module):
    """GraphSAGE, mean aggregator: W_l · mean_{j→i} a_j + W_r · a_i + b."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.lin_l = nn.Linear(width, width)
        self.lin_r = nn.Linear(width, width, bias=False)
        gain = init.calculate_gain("relu")
        init.xavier_uniform_(self.lin_l.weight, gain=gain)
        init.xavier_uniform_(self.lin_r.weight, gain=gain)
        init.zeros_(self.lin_l.bias)

    def forward(self, x: torch.Tensor, graph: CachedGraph, aggregate: Aggregation) -> torch.Tensor:
        neighbours, a = aggregate(x, graph, root=True)
        return self.lin_l(neighbours) + self.lin_r(a)


class GCNLayer(nn.Module):
    """GCN: Σ_j a_j / sqrt(d_i d_j) + b over A with self loops, a = σ(W x + c)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.lin = nn.Linear(width, width)
        init.xavier_uniform_(self.lin.weight)
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, x: torch.Tensor, graph: CachedGraph, aggregate: Aggregation) -> torch.Tensor:
        neighbours, _ = aggregate(self.lin(x), graph, root=False)
        return neighbours + self.bias


class GINLayer(nn.Module):
    """GIN: (1 + ε) · a_i + Σ_{j→i} a_j, a = σ(W x + c), ε learnable from 0."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.lin = nn.Linear(width, width)
        init.xavier_uniform_(self.lin.weight)
        self.eps = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, graph: CachedGraph, aggregate: Aggregation) -> torch.Tensor:
        neighbours, a = aggregate(self.lin(x), graph, root=True)
        return (1 + self.eps) * a + neighbours


LAYERS = {"sage": SAGELayer, "gcn": GCNLayer, "gin": GINLayer}


class MaxKGNN(nn.Module):
    """lin_in → [σ → dropout → conv → norm] × ``num_layers`` → lin_out (see the module doc).

    Args:
        in_channels, hidden_channels, out_channels: feature widths; every conv is
            hidden → hidden.
        num_layers: graph convolutions (the paper's ``hidden_layers``).
        conv: "sage" | "gcn" | "gin".
        nonlinearity: "maxk" (CBSR kernels of ``ops.maxk``) or "relu" (torch.sparse SpMM).
        k: entries MaxK keeps per row, 1 ≤ k ≤ hidden_channels (ignored for relu).
        dropout: on σ's output, before each aggregation.
        norm: "layer" (LayerNorm after each conv) or "none".
        backend: ``ops.maxk`` backend, None picks by device.

    Shapes:
        x: (N, in_channels), edge_index: (2, E) → logits (N, out_channels)
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        num_layers: int = 3,
        conv: str = "sage",
        nonlinearity: str = "maxk",
        k: int = 32,
        dropout: float = 0.5,
        norm: str = "layer",
        backend: str | None = None,
    ) -> None:
        super().__init__()
        self.check_config(
            {
                "in_channels": in_channels,
                "hidden_channels": hidden_channels,
                "out_channels": out_channels,
                "num_layers": num_layers,
                "conv": conv,
                "nonlinearity": nonlinearity,
                "k": k,
                "dropout": dropout,
                "norm": norm,
                "backend": backend,
            }
        )
        self.conv, self.nonlinearity, self.k = conv, nonlinearity, k
        self.lin_in = nn.Linear(in_channels, hidden_channels)
        self.layers = nn.ModuleList(LAYERS[conv](hidden_channels) for _ in range(num_layers))
        self.norms = nn.ModuleList(
            nn.LayerNorm(hidden_channels) if norm == "layer" else nn.Identity()
            for _ in range(num_layers)
        )
        self.lin_out = nn.Linear(hidden_channels, out_channels)
        init.xavier_uniform_(self.lin_in.weight)
        init.xavier_uniform_(self.lin_out.weight)
        self.aggregate = Aggregation(nonlinearity, k, dropout, backend)
        self.adjacency = AdjacencyCache(*ADJACENCY[conv])

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """Positive widths and depth, known conv, nonlinearity, norm and backend, dropout in
        [0, 1), and for MaxK an integer 1 ≤ k ≤ hidden_channels."""
        cfg = with_defaults(cls, cfg)
        check_widths(cfg)
        check_choice(cfg, "conv", CONVS)
        check_choice(cfg, "nonlinearity", NONLINEARITIES)
        check_choice(cfg, "norm", NORMS)
        check_range(cfg, "dropout", 0.0, 1.0, high_open=True, example=0.5)
        check_op_backend(cfg)
        k, hidden = cfg.get("k"), cfg.get("hidden_channels")
        if cfg["nonlinearity"] != "maxk" or not isinstance(hidden, int):
            return
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= hidden:
            raise ConfigError(
                "k",
                k,
                f"MaxK keeps k entries of each hidden row, so pick an integer "
                f"1 ≤ k ≤ {hidden} (hidden_channels={hidden})",
                example=min(32, hidden),
                fix="Or widen hidden_channels",
            )

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        graph = self.adjacency.get(edge_index, x.shape[0])
        x = self.lin_in(x)  # (N, hidden)
        if self.conv != "sage":
            x = F.relu(x)
        for layer, norm in zip(self.layers, self.norms, strict=True):
            x = norm(layer(x, graph, self.aggregate))  # (N, hidden)
        return self.lin_out(x)  # (N, out)
