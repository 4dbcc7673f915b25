"""Message-passing node classifiers: GraphSAGE, GCN and GIN stacks (PyTorch Geometric layers)."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import GCNConv, GINConv, SAGEConv

CONVS = ("sage", "gcn", "gin")
NORMS = ("none", "layer")
NONLINEARITIES = {"relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU, "identity": nn.Identity}


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
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("hidden_channels", hidden_channels),
            ("out_channels", out_channels),
            ("num_layers", num_layers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: must be a positive integer")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout!r}: must be in [0, 1)")
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r}: choose one of {NORMS}")
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity={nonlinearity!r}: choose one of {list(NONLINEARITIES)}")
        if conv not in CONVS:
            raise ValueError(f"conv={conv!r}: choose one of {CONVS}")
        widths = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        pairs = zip(widths[:-1], widths[1:], strict=True)
        self.convs = nn.ModuleList(make_conv(conv, a, b) for a, b in pairs)
        self.norms = nn.ModuleList(
            nn.LayerNorm(w) if norm == "layer" else nn.Identity() for w in widths[1:-1]
        )
        self.act = NONLINEARITIES[nonlinearity]()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x)
        for conv, norm in zip(self.convs[:-1], self.norms, strict=True):
            x = self.dropout(self.act(norm(conv(x, edge_index))))  # (N, hidden)
        return self.convs[-1](x, edge_index)  # (N, out)
