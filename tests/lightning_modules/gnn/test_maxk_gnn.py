"""MaxK-GNN nets on tiny graphs: wiring against PyG's convs, dropout, errors, adjacency cache."""

from __future__ import annotations

from functools import partial

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch_geometric.nn import GCNConv, GINConv, SAGEConv
from torch_geometric.utils import coalesce

from lightning_modules.gnn.maxk import Aggregation, MaxKGNN
from lightning_modules.gnn.module import NodeClassifier
from ops.sparse import AdjacencyCache

N, IN, HIDDEN, OUT = 30, 6, 16, 3


def tiny_graph(n: int = N, edges: int = 120, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (n, IN) and a coalesced, non-symmetric edge_index with a few isolated nodes."""
    gen = torch.Generator().manual_seed(seed)
    edge_index = coalesce(torch.randint(0, n - 3, (2, edges), generator=gen), num_nodes=n)
    return torch.randn(n, IN, generator=gen), edge_index


def topk_mask(h: torch.Tensor, k: int) -> torch.Tensor:
    """h with all but the k largest entries of each row zeroed (MaxK, dense)."""
    return torch.zeros_like(h).scatter(1, h.topk(k, dim=1).indices, h.topk(k, dim=1).values)


def pyg_conv(layer: torch.nn.Module, conv: str) -> torch.nn.Module:
    """The PyG conv computing ``layer``'s aggregation, with the layer's weights (float64)."""
    if conv == "sage":
        ref = SAGEConv(HIDDEN, HIDDEN, aggr="mean")
        ref.lin_l.load_state_dict(layer.lin_l.state_dict())
        ref.lin_r.load_state_dict(layer.lin_r.state_dict())
    elif conv == "gcn":  # the layer's Linear runs before σ, so the conv's own weight is I
        ref = GCNConv(HIDDEN, HIDDEN)
        with torch.no_grad():
            ref.lin.weight.copy_(torch.eye(HIDDEN))
            ref.bias.copy_(layer.bias)
    else:
        ref = GINConv(torch.nn.Identity(), train_eps=True)
        with torch.no_grad():
            ref.eps.copy_(layer.eps)
    return ref.double()


def dense_forward(net: MaxKGNN, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    """The net's forward in plain dense PyTorch with PyG's convs (evaluation mode)."""
    act = (lambda h: topk_mask(h, net.k)) if net.nonlinearity == "maxk" else F.relu
    h = net.lin_in(x)
    if net.conv != "sage":
        h = F.relu(h)
    for layer, norm in zip(net.layers, net.norms, strict=True):
        pre = h if net.conv == "sage" else layer.lin(h)
        h = norm(pyg_conv(layer, net.conv)(act(pre), edge_index))
    return net.lin_out(h)


@pytest.mark.parametrize("conv", ["sage", "gcn", "gin"])
@pytest.mark.parametrize("nonlinearity", ["maxk", "relu"])
def test_net_matches_pyg_dense_computation(conv: str, nonlinearity: str) -> None:
    torch.manual_seed(0)
    x, edge_index = tiny_graph()
    net = MaxKGNN(IN, HIDDEN, OUT, 2, conv, nonlinearity, k=5, backend="reference").double()
    net.eval()
    x = x.double()
    torch.testing.assert_close(
        net(x, edge_index), dense_forward(net, x, edge_index), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("conv", ["sage", "gcn", "gin"])
def test_cpu_backend_matches_reference(conv: str) -> None:
    x, edge_index = tiny_graph()
    outputs, grads = [], []
    for backend in ("reference", "cpu"):
        torch.manual_seed(0)
        net = MaxKGNN(IN, HIDDEN, OUT, 2, conv, "maxk", k=5, dropout=0.0, backend=backend)
        out = net(x, edge_index)
        out.square().sum().backward()
        outputs.append(out)
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("conv", ["sage", "gcn", "gin"])
@pytest.mark.parametrize("nonlinearity", ["maxk", "relu"])
def test_training_forward_backward_reaches_every_parameter(conv: str, nonlinearity: str) -> None:
    torch.manual_seed(0)
    x, edge_index = tiny_graph()
    net = MaxKGNN(IN, HIDDEN, OUT, 3, conv, nonlinearity, k=4, dropout=0.5)
    out = net(x, edge_index)
    assert out.shape == (N, OUT)
    out.sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_width_above_256_uses_int16_indices() -> None:
    torch.manual_seed(0)
    x, edge_index = tiny_graph()
    net = MaxKGNN(IN, 384, OUT, 2, "sage", "maxk", k=32, dropout=0.1)
    net(x, edge_index).sum().backward()
    assert net.lin_in.weight.grad is not None


def test_maxk_dropout_drops_kept_values_only() -> None:
    torch.manual_seed(0)
    x, edge_index = tiny_graph()
    graph = AdjacencyCache("mean", False).get(edge_index, N)
    h = torch.randn(N, HIDDEN, dtype=torch.float64, requires_grad=True)
    aggregate = Aggregation("maxk", k=5, dropout=0.5, backend="reference").train()
    y, a = aggregate(h, graph, root=True)
    kept = topk_mask(h.detach(), 5) != 0
    assert ((a != 0) & ~kept).sum() == 0  # nothing outside the top k
    assert 0 < (a != 0).sum() < kept.sum()  # some kept values dropped
    torch.testing.assert_close(a[a != 0], 2 * h.detach()[a != 0])  # survivors scaled by 1/(1-p)
    dense_a = graph.csr.to_dense().double()
    torch.testing.assert_close(y, dense_a @ a.detach(), rtol=1e-6, atol=1e-6)
    (y.sum() + a.sum()).backward()
    assert (h.grad[a == 0] == 0).all() and (h.grad[a != 0] != 0).all()


@pytest.mark.parametrize("k", [0, -1, 17, 2.5, True])
def test_bad_k_is_rejected_at_construction(k: object) -> None:
    with pytest.raises(ValueError, match=r"k=.* pick an integer 1 ≤ k ≤ 16"):
        MaxKGNN(IN, HIDDEN, OUT, k=k)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conv": "gat"}, "conv=gat"),
        ({"nonlinearity": "gelu"}, "nonlinearity=gelu"),
        ({"norm": "batch"}, "norm=batch"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"backend": "cuda"}, "backend=cuda"),
        ({"num_layers": 0}, "num_layers=0"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MaxKGNN(IN, HIDDEN, OUT, **{"k": 4, **kwargs})


def test_relu_ignores_k() -> None:
    MaxKGNN(IN, HIDDEN, OUT, nonlinearity="relu", k=1000)


def test_adjacency_is_built_once_per_graph() -> None:
    x, edge_index = tiny_graph()
    net = MaxKGNN(IN, HIDDEN, OUT, 2, "sage", "maxk", k=4)
    for _ in range(3):
        net(x, edge_index).sum().backward()
    net.eval()
    net(x, edge_index)
    csr = net.adjacency.graphs[0].csr
    net(x, edge_index.clone())  # a copy, as a trainer moving the batch would make
    assert net.adjacency.builds == 1 and net.adjacency.graphs[0].csr is csr
    net(x, tiny_graph(seed=1)[1])
    assert net.adjacency.builds == 2
    net(x, edge_index[:, :50])  # a slice shares the storage's first address, not the graph
    assert net.adjacency.builds == 3
    edge_index[0, 0] = (edge_index[0, 0] + 1) % N  # edited in place: a different graph
    net(x, edge_index)
    assert net.adjacency.builds == 4


def test_stack_structure_refuses_maxk() -> None:
    with pytest.raises(ValueError, match="structure=paper"):
        NodeClassifier(IN, OUT, partial(torch.optim.Adam), nonlinearity="maxk")
    with pytest.raises(ValueError, match="structure=pyg"):
        NodeClassifier(IN, OUT, partial(torch.optim.Adam), structure="pyg")


def test_golden_loss() -> None:
    """Loss after 5 full-batch steps of MaxK SAGE (reference kernels) on a fixed tiny graph."""
    pl.seed_everything(0)
    x, edge_index = tiny_graph()
    y = torch.arange(N) % OUT
    model = NodeClassifier(
        IN,
        OUT,
        partial(torch.optim.Adam, lr=0.01),
        structure="paper",
        hidden_channels=HIDDEN,
        num_layers=2,
        norm="layer",
        nonlinearity="maxk",
        k=4,
        dropout=0.0,
        backend="reference",
    )
    optimizer = model.configure_optimizers()["optimizer"]
    for _ in range(5):
        optimizer.zero_grad()
        loss = F.cross_entropy(model.net(x, edge_index), y)
        loss.backward()
        optimizer.step()
    assert loss.item() == pytest.approx(GOLDEN_LOSS, abs=1e-4)


# recorded with torch 2.14.1 on CPU; a change here means MaxK training changed
GOLDEN_LOSS = 0.6820449
