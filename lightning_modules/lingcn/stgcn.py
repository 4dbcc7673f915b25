"""ST-GCN (Yan et al., AAAI 2018, arXiv:1801.07455) on the NTU RGB+D skeleton, as LinGCN
(arXiv:2309.14331) trains it.

Block: 1×1 conv to C_out·K → Σ_k X_k (A_k ∘ M_k) → BN → act#1 → temporal
conv 9×1 (stride) → BN → dropout → + residual → act#2. Head: global average pool, mean over
persons, 1×1 conv to the classes. Each block's two activation sites are modules built by a
factory, so LinGCN can gate or replace them per node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from effml.checks import check_int, check_range, with_defaults
from effml.errors import ConfigError

NUM_JOINTS = 25
# NTU RGB+D joint pairs (1-based, as the dataset numbers joints); joint 21 is the spine centre
NTU_EDGES_1BASED = (
    (1, 2),
    (2, 21),
    (3, 21),
    (4, 3),
    (5, 21),
    (6, 5),
    (7, 6),
    (8, 7),
    (9, 21),
    (10, 9),
    (11, 10),
    (12, 11),
    (13, 1),
    (14, 13),
    (15, 14),
    (16, 15),
    (17, 1),
    (18, 17),
    (19, 18),
    (20, 19),
    (22, 23),
    (23, 8),
    (24, 25),
    (25, 12),
)
NTU_CENTER = 21 - 1

# (in, out, temporal stride) per block
VARIANTS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "stgcn_3_128": ((3, 64, 1), (64, 128, 2), (128, 128, 1)),
    "stgcn_3_256": ((3, 128, 1), (128, 256, 2), (256, 256, 1)),
    "stgcn_6_256": (
        (3, 64, 1),
        (64, 64, 1),
        (64, 128, 2),
        (128, 128, 1),
        (128, 256, 2),
        (256, 256, 1),
    ),
}


def spatial_partition(
    num_nodes: int = NUM_JOINTS, edges: tuple = NTU_EDGES_1BASED, center: int = NTU_CENTER
) -> np.ndarray:
    """The K = 3 "spatial" adjacency slices: root, centripetal, centrifugal.

    The 1-hop adjacency with self loops is column-normalised (A D⁻¹); each entry (j, i) goes
    to the root slice when j and i are equally far from the centre joint, to the centripetal
    slice when j is farther than i, else to the centrifugal slice.

    Returns:
        (3, V, V) float32
    """
    adj = np.eye(num_nodes)
    for a, b in edges:
        adj[a - 1, b - 1] = adj[b - 1, a - 1] = 1
    hop = np.full((num_nodes, num_nodes), np.inf)
    reach = np.eye(num_nodes, dtype=bool)
    hop[reach] = 0
    step = adj > 0
    for d in range(1, num_nodes):
        reach = (reach.astype(int) @ step.astype(int)) > 0
        hop[(hop == np.inf) & reach] = d
    norm = adj / adj.sum(axis=0, keepdims=True)  # column-normalised
    slices = np.zeros((3, num_nodes, num_nodes))
    near = hop[:, center]
    for j in range(num_nodes):
        for i in range(num_nodes):
            if hop[j, i] > 1:
                continue
            if near[j] == near[i]:
                slices[0, j, i] = norm[j, i]
            elif near[j] > near[i]:
                slices[1, j, i] = norm[j, i]
            else:
                slices[2, j, i] = norm[j, i]
    return slices.astype(np.float32)


ActFactory = Callable[[int, int, int], nn.Module]


def relu_factory(block: int, site: int, channels: int) -> nn.Module:
    """The baseline's activation at every site."""
    return nn.ReLU()


class STGCNBlock(nn.Module):
    """One spatial-temporal block; ``act1``/``act2`` are its two activation sites.

    Shapes:
        x: (N·M, C_in, T, V) → (N·M, C_out, T / stride, V)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        adjacency: torch.Tensor,
        act1: nn.Module,
        act2: nn.Module,
        residual: bool = True,
        dropout: float = 0.0,
        kernel_t: int = 9,
    ) -> None:
        super().__init__()
        k = adjacency.shape[0]
        self.register_buffer("adjacency", adjacency)  # (K, V, V)
        self.edge_importance = nn.Parameter(torch.ones_like(adjacency))
        self.gcn = nn.Conv2d(in_channels, out_channels * k, kernel_size=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act1 = act1
        self.tcn = nn.Conv2d(
            out_channels, out_channels, (kernel_t, 1), (stride, 1), ((kernel_t - 1) // 2, 0)
        )
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout)
        if not residual:
            self.residual = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, (stride, 1)), nn.BatchNorm2d(out_channels)
            )
        self.act2 = act2

    def graph_conv(self, x: torch.Tensor) -> torch.Tensor:
        """Σ_k (W_k x) (A_k ∘ M_k): (N, C_in, T, V) → (N, C_out, T, V)."""
        n, _, t, v = x.shape
        k = self.adjacency.shape[0]
        x = self.gcn(x).view(n, k, -1, t, v).permute(0, 2, 3, 1, 4)  # (N, C_out, T, K, V)
        adjacency = (self.adjacency * self.edge_importance).reshape(k * v, v)  # (K·V, W)
        # einsum("nkctv,kvw->nctw") as one (N·C·T, K·V) @ (K·V, W) product
        return x.reshape(n, -1, t, k * v) @ adjacency

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = 0 if self.residual is None else self.residual(x)
        y = self.act1(self.bn1(self.graph_conv(x)))
        y = self.dropout(self.bn2(self.tcn(y)))
        return self.act2(y + res)


def block_spec(variant: str, channels: tuple | list | None) -> tuple[tuple[int, int, int], ...]:
    """(in, out, temporal stride) per block of ``variant`` (``custom``: ``channels``)."""
    if variant == "custom":
        return tuple(tuple(int(c) for c in block) for block in channels)
    return VARIANTS[variant]


class STGCN(nn.Module):
    """ST-GCN classifier over (N, C, T, V, M) skeleton clips.

    Args:
        variant: a key of ``VARIANTS`` (``stgcn_3_128``, ``stgcn_3_256``, ``stgcn_6_256``) or
            ``custom`` with ``channels`` given.
        channels: for ``custom``: ((in, out, stride), ...).
        act_factory: ``(block, site, channels) -> nn.Module`` for the two sites of each block.
    Shapes:
        x: (N, C, T, V, M) → logits (N, num_classes)
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        variant: str = "stgcn_3_128",
        channels: tuple | list | None = None,
        num_nodes: int = NUM_JOINTS,
        num_persons: int = 2,
        dropout: float = 0.0,
        act_factory: ActFactory = relu_factory,
    ) -> None:
        super().__init__()
        self.check_config(
            {
                "in_channels": in_channels,
                "num_classes": num_classes,
                "variant": variant,
                "channels": channels,
                "num_nodes": num_nodes,
                "num_persons": num_persons,
                "dropout": dropout,
            }
        )
        spec = block_spec(variant, channels)
        self.spec = spec
        adjacency = torch.from_numpy(spatial_partition())
        self.data_bn = nn.BatchNorm1d(in_channels * num_nodes * num_persons)
        self.blocks = nn.ModuleList(
            STGCNBlock(
                cin,
                cout,
                stride,
                adjacency,
                act_factory(i, 0, cout),
                act_factory(i, 1, cout),
                residual=i > 0,
                dropout=dropout,
            )
            for i, (cin, cout, stride) in enumerate(spec)
        )
        self.head = nn.Conv2d(spec[-1][1], num_classes, kernel_size=1)

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """A known variant (``custom``: ``channels`` as [in, out, stride] triples of positive
        integers) whose first block takes ``in_channels``; the 25 NTU joints; dropout in
        [0, 1)."""
        cfg = with_defaults(cls, cfg)
        variant, channels = cfg["variant"], cfg.get("channels")
        if variant not in (*VARIANTS, "custom"):
            problem = f"choose one of {sorted(VARIANTS)} or custom (with channels)"
            raise ConfigError("variant", variant, problem, example="stgcn_3_128")
        if variant == "custom":
            rows = [list(row) for row in channels or []]
            if not rows or any(
                len(row) != 3 or not all(isinstance(c, int) and c >= 1 for c in row) for row in rows
            ):
                raise ConfigError(
                    "channels",
                    rows or None,
                    "variant=custom needs channels as [in, out, stride] per block",
                    example=[[3, 16, 1], [16, 32, 2]],
                )
        first = block_spec(variant, channels)[0][0]
        in_channels = cfg.get("in_channels")
        if in_channels is not None and in_channels != first:
            raise ConfigError(
                "in_channels",
                in_channels,
                f"the first block takes {first} channels, the data has {in_channels}",
                fix="Match the first entry of channels to the data's channels",
            )
        num_nodes = cfg.get("num_nodes")
        if num_nodes is not None and num_nodes != NUM_JOINTS:
            problem = f"the NTU graph has {NUM_JOINTS} joints"
            raise ConfigError("num_nodes", num_nodes, problem, example=NUM_JOINTS)
        check_int(cfg, "num_classes", minimum=1, example=60)
        check_int(cfg, "num_persons", minimum=1, example=2)
        check_range(cfg, "dropout", 0.0, 1.0, high_open=True, example=0.5)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, V, M) → (N·M, C, T, V) after the input batch norm."""
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 3, 1, 2).reshape(n, m * v * c, t)
        x = self.data_bn(x)
        return x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        n, m = x.shape[0], x.shape[-1]
        h = self.embed(x)
        features = []
        for block in self.blocks:
            h = block(h)  # (N·M, C, T', V)
            features.append(h)
        pooled = h.mean(dim=(2, 3)).view(n, m, -1).mean(dim=1)  # (N, C)
        logits = self.head(pooled[:, :, None, None]).flatten(1)  # (N, classes)
        return (logits, features) if return_features else logits
