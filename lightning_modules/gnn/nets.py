"""Message-passing node classifiers: GraphSAGE, GCN and GIN stacks (PyTorch Geometric layers, or
for GCN and SAGE effml's SpMM layers, ``aggregation=torch_sparse|accel``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch_geometric.nn import GCNConv, GINConv, SAGEConv

from effml.checks import check_choice, check_int, check_range, with_defaults
from effml.errors import ConfigError
from lightning_modules.gnn.spmm_layers import ADJACENCY, AGGREGATIONS, SPMM_CONVS
from ops.sparse import AdjacencyCache

CONVS = ("sage", "gcn", "gin")
NORMS = ("none", "layer")
NONLINEARITIES = {"relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU, "identity": nn.Identity}


def check_widths(cfg: Mapping[str, Any]) -> None:
    """The feature widths and the number of layers of a node classifier are positive integers."""
    check_int(cfg, "in_channels", minimum=1, example=128)
    check_int(cfg, "hidden_channels", minimum=1, example=256)
    check_int(cfg, "out_channels", minimum=1, example=7)
    check_int(cfg, "num_layers", minimum=1, example=2)


def make_conv(kind: str, in_channels: int, out_channels: int) -> nn.Module:
    """One graph convolution: SAGE (mean aggregation), GCN (symmetric norm) or GIN (sum + MLP)."""
    if kind == "sage":
        return SAGEConv(in_channels, out_channels, aggr="mean")
    if kind == "gcn":
        return GCNConv(in_channels, out_channels)
    if kind == "gin":
        mlp = nn.Sequential(
            nn.Linear(in_channels, out_channels), nn.ReLU(), nn.Linear(out_channels, out_channels)
        )
        return GINConv(mlp, train_eps=True)
    raise ValueError(f"conv={kind!r}: choose one of {CONVS}")


class GNN(nn.Module):
    """``num_layers`` graph convolutions; between them norm → nonlinearity → dropout.

    ``aggregation="pyg"`` uses PyG's convolutions; ``"torch_sparse"`` or ``"accel"`` uses
    effml's GCN/SAGE layers (``spmm_layers.py``, the same maths and initialisation) whose
    aggregation runs through ``ops.spmm`` on a cached adjacency.

    Shapes:
        x: (N, in_channels), edge_index: (2, E) → logits (N, out_channels)
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        num_layers: int = 2,
        conv: str = "sage",
        dropout: float = 0.5,
        norm: str = "none",
        nonlinearity: str = "relu",
        aggregation: str = "pyg",
    ) -> None:
        super().__init__()
        self.check_config(
            {
                "in_channels": in_channels,
                "hidden_channels": hidden_channels,
                "out_channels": out_channels,
                "num_layers": num_layers,
                "conv": conv,
                "dropout": dropout,
                "norm": norm,
                "nonlinearity": nonlinearity,
                "aggregation": aggregation,
            }
        )
        widths = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        pairs = zip(widths[:-1], widths[1:], strict=True)
        if aggregation == "pyg":
            self.convs = nn.ModuleList(make_conv(conv, a, b) for a, b in pairs)
            self.adjacency: AdjacencyCache | None = None
        else:
            layer = SPMM_CONVS[conv]
            self.convs = nn.ModuleList(layer(a, b, aggregation) for a, b in pairs)
            self.adjacency = AdjacencyCache(*ADJACENCY[conv])
        self.norms = nn.ModuleList(
            nn.LayerNorm(w) if norm == "layer" else nn.Identity() for w in widths[1:-1]
        )
        self.act = NONLINEARITIES[nonlinearity]()
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """Positive widths and depth, dropout in [0, 1), known conv, norm and nonlinearity."""
        cfg = with_defaults(cls, cfg)
        check_widths(cfg)
        check_range(cfg, "dropout", 0.0, 1.0, high_open=True, example=0.5)
        check_choice(cfg, "conv", CONVS)
        check_choice(cfg, "norm", NORMS)
        check_choice(cfg, "nonlinearity", NONLINEARITIES)
        check_choice(cfg, "aggregation", AGGREGATIONS)
        if cfg["aggregation"] != "pyg" and cfg["conv"] not in SPMM_CONVS:
            raise ConfigError(
                "aggregation",
                cfg["aggregation"],
                f"runs the {sorted(SPMM_CONVS)} layers, not conv={cfg['conv']}",
                example="pyg",
            )

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        graph = edge_index if self.adjacency is None else self.adjacency.get(edge_index, len(x))
        x = self.dropout(x)
        for conv, norm in zip(self.convs[:-1], self.norms, strict=True):
            x = self.dropout(self.act(norm(conv(x, graph))))  # (N, hidden)
        return self.convs[-1](x, graph)  # (N, out)
