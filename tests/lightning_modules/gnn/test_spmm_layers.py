"""GCN and SAGE through ops/spmm compute what PyG's convolutions compute, forward and backward."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.utils import coalesce

from effml.errors import ConfigError
from lightning_modules.gnn.nets import GNN


def random_graph(n: int = 450, e: int = 2000, seed: int = 0) -> torch.Tensor:
    """A coalesced edge index without self loops (the datamodule's form) in which node 0 hears
    from every other node (in-degree 449 > 384), so the partition's chunked rows are used."""
    g = torch.Generator().manual_seed(seed)
    edges = torch.randint(0, n, (2, e), generator=g)
    hub = torch.stack([torch.arange(1, n), torch.zeros(n - 1, dtype=torch.long)])
    edges = torch.cat([edges, hub], dim=1)
    return coalesce(edges[:, edges[0] != edges[1]], num_nodes=n)


@pytest.mark.parametrize("conv", ["gcn", "sage"])
@pytest.mark.parametrize("aggregation", ["torch_sparse", "accel"])
def test_spmm_layers_match_pyg(conv: str, aggregation: str) -> None:
    edge_index = random_graph()
    x = torch.randn(450, 12, generator=torch.Generator().manual_seed(1))
    reference = GNN(12, 8, 3, num_layers=2, conv=conv, dropout=0.0, aggregation="pyg")
    net = GNN(12, 8, 3, num_layers=2, conv=conv, dropout=0.0, aggregation=aggregation)
    net.load_state_dict(reference.state_dict())  # the same parameter names and shapes
    out, expected = net(x, edge_index), reference(x, edge_index)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    out.square().sum().backward()
    expected.square().sum().backward()
    for (name, p), q in zip(net.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_gin_has_no_spmm_layer() -> None:
    with pytest.raises(ConfigError, match="aggregation=accel: runs the"):
        GNN(12, 8, 3, conv="gin", aggregation="accel")
