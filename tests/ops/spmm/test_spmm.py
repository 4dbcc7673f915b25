"""ops.spmm's front door: every backend against float64, the autograd.Function, bad input."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from ops.sparse import CsrAdjacency, spmm_reference, spmm_transposed_reference
from ops.spmm import (
    BACKENDS,
    AccelSpmmFunction,
    accel_graph_t,
    check_weights,
    csr_from_edge_index,
    spmm,
)

NUM_NODES = 420
ISOLATED = NUM_NODES - 1  # no edges in or out: a row of degree 0
TOL = {torch.float32: 1e-5, torch.float16: 1e-2}


def edge_index_with_every_row_kind(seed: int = 0) -> torch.Tensor:
    """(2, E) random edges plus rows of degree 0, < 32, 192–384 and > 384."""
    gen = torch.Generator().manual_seed(seed)
    random_edges = torch.randint(0, ISOLATED, (2, 1500), generator=gen)
    hub_long = torch.stack([torch.arange(390), torch.full((390,), 1)])  # row 1: degree 390
    hub_mid = torch.stack([torch.arange(10, 210), torch.full((200,), 2)])  # row 2: about 200
    return torch.cat([random_edges, hub_long, hub_mid], dim=1)


@pytest.fixture(scope="module")
def adj() -> CsrAdjacency:
    graph = csr_from_edge_index(edge_index_with_every_row_kind(), NUM_NODES, norm="gcn")
    degrees = graph.rowptr.diff()
    assert degrees[ISOLATED] == 0 and degrees[1] > 384 and 192 <= degrees[2] <= 384
    assert ((degrees > 0) & (degrees < 32)).any()
    return graph


def unit_weights(adj: CsrAdjacency) -> CsrAdjacency:
    return CsrAdjacency(adj.rowptr, adj.col, torch.ones_like(adj.weight), adj.num_cols)


def forward_backward(adj, x, dy, backend, weighted):
    x = x.detach().requires_grad_()
    y = spmm(adj, x, backend=backend, weighted=weighted)
    (grad_x,) = torch.autograd.grad(y, x, dy)
    return y, grad_x


@pytest.mark.parametrize("weighted", [True, False], ids=["weighted", "unit"])
@pytest.mark.parametrize(
    "backend,dtype,width",
    [
        ("accel", torch.float32, 1),
        ("accel", torch.float32, 33),
        ("accel", torch.float16, 32),
        ("cpu", torch.float32, 31),
        ("triton", torch.float32, 33),
        ("triton", torch.float16, 1),
        ("reference", torch.float32, 33),
        ("torch_sparse", torch.float32, 33),
        ("pyg", torch.float32, 33),
        ("pyg", torch.float16, 32),
    ],
)
def test_forward_and_backward_match_float64(adj, backend, dtype, width, weighted):
    gen = torch.Generator().manual_seed(width)
    x = torch.randn(NUM_NODES, width, generator=gen)
    dy = torch.randn(NUM_NODES, width, generator=gen)
    y, grad_x = forward_backward(adj, x.to(dtype), dy.to(dtype), backend, weighted)
    exact = adj if weighted else unit_weights(adj)
    ref_y = spmm_reference(exact, x.to(dtype).double())
    ref_grad = spmm_transposed_reference(exact, dy.to(dtype).double())
    assert y.dtype == dtype and grad_x.dtype == dtype
    for got, ref in ((y, ref_y), (grad_x, ref_grad)):
        err = (got.double() - ref).abs().max() / ref.abs().max()
        assert err < TOL[dtype], f"{backend}: relative error {float(err):.2e}"
    assert not y[ISOLATED].any()


def test_gradcheck_float64_reference_kernel():
    edge_index = torch.tensor([[0, 1, 2, 2, 3, 4, 4, 4], [1, 0, 0, 3, 2, 0, 1, 2]])
    adj = csr_from_edge_index(edge_index, 6, norm="gcn", add_self_loops=True)
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda features: AccelSpmmFunction.apply(adj, features, True, "reference"), (x,)
    )


def test_backward_partitions_the_transpose_once(adj):
    x = torch.randn(NUM_NODES, 4, requires_grad=True)
    spmm(adj, x, backend="reference").sum().backward()
    graph_t = accel_graph_t(adj, True)
    spmm(adj, x, backend="reference").sum().backward()
    assert accel_graph_t(adj, True) is graph_t
    assert graph_t.num_rows == adj.num_cols and graph_t.num_cols == adj.num_rows


def test_non_contiguous_features(adj):
    x = torch.randn(5, NUM_NODES).t()  # (N, 5), column-major
    ref = spmm_reference(adj, x.double())
    assert torch.allclose(spmm(adj, x, backend="reference").double(), ref, atol=1e-6)


@pytest.mark.parametrize("norm", ["gcn", "mean", "sum"])
@pytest.mark.parametrize("self_loops", [False, True])
def test_unit_edge_weights_give_the_unweighted_adjacency(norm, self_loops):
    edge_index = torch.unique(edge_index_with_every_row_kind(), dim=1)  # no duplicates
    ones = torch.ones(edge_index.shape[1])
    weighted = csr_from_edge_index(edge_index, NUM_NODES, ones, norm, self_loops)
    plain = CsrAdjacency.from_edge_index(edge_index, NUM_NODES, norm, self_loops)
    assert torch.equal(weighted.rowptr, plain.rowptr) and torch.equal(weighted.col, plain.col)
    assert torch.allclose(weighted.weight, plain.weight, rtol=1e-6)


def test_edge_weights_follow_pyg_gcn_norm():
    gen = torch.Generator().manual_seed(1)
    edge_index = torch.randint(0, 30, (2, 200), generator=gen)  # with duplicate edges
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    edge_index = torch.cat([edge_index, torch.tensor([[3], [3]])], dim=1)  # one own loop
    weight = torch.rand(edge_index.shape[1], generator=gen, dtype=torch.float64) + 0.1
    adj = csr_from_edge_index(edge_index, 30, weight, norm="gcn", add_self_loops=True)
    pyg_index, pyg_weight = gcn_norm(edge_index, weight, 30, add_self_loops=True)
    expected = torch.zeros(30, 30, dtype=torch.float64)
    expected.index_put_((pyg_index[1], pyg_index[0]), pyg_weight, accumulate=True)
    assert torch.allclose(adj.to_dense(), expected, atol=1e-12)


def test_every_backend_is_listed():
    assert set(BACKENDS) == {"accel", "cpu", "triton", "reference", "torch_sparse", "pyg"}


@pytest.mark.parametrize(
    "make_x,match",
    [
        (lambda: torch.randn(NUM_NODES, 0), r"width 0: pass at least one feature column"),
        (lambda: torch.randn(NUM_NODES, 4, device="meta"), r"x is on meta but the graph"),
        (lambda: torch.randn(NUM_NODES - 1, 4), rf"x has {NUM_NODES - 1} rows .* multiplies"),
        (lambda: torch.randn(NUM_NODES), r"2-D \(N_cols, F\) float tensor"),
        (lambda: torch.ones(NUM_NODES, 4, dtype=torch.int64), r"float tensor, got torch.int64"),
    ],
    ids=["width0", "device", "rows", "1d", "int"],
)
def test_bad_features_name_the_value(adj, make_x, match):
    with pytest.raises(ValueError, match=match):
        spmm(adj, make_x())


@pytest.mark.parametrize("value,problem", [(float("nan"), "is not finite"), (-0.5, "negative")])
def test_bad_adjacency_weights_name_the_edge(adj, value, problem):
    weight = adj.weight.clone()
    weight[7] = value
    bad = CsrAdjacency(adj.rowptr, adj.col, weight, adj.num_cols)
    x = torch.randn(NUM_NODES, 2)
    with pytest.raises(ValueError, match=rf"adj.weight\[7\] = .* {problem}.*weighted=False"):
        spmm(bad, x, backend="pyg")
    assert spmm(bad, x, backend="pyg", weighted=False).isfinite().all()  # unit weights: fine


def test_weight_check_runs_once_per_graph(adj):
    check_weights(adj)
    assert adj._cache["weights_checked"] is True


@pytest.mark.parametrize(
    "backend,dtype,error,match",
    [
        ("dense", torch.float32, ValueError, r"backend='dense': choose one of"),
        ("cpu", torch.float64, TypeError, r"float32 or float16, got torch.float64"),
        ("torch_sparse", torch.float16, TypeError, r"no torch.float16 SpMM"),
        ("triton", torch.bfloat16, TypeError, r"bfloat16 is wrong in the Triton interpreter"),
    ],
)
def test_unsupported_backend_or_dtype(adj, backend, dtype, error, match):
    with pytest.raises(error, match=match):
        spmm(adj, torch.randn(NUM_NODES, 2, dtype=dtype), backend=backend)


def test_out_of_range_edge_index_names_the_edge():
    edge_index = torch.tensor([[0, 1, 2], [1, 5, 0]])
    with pytest.raises(ValueError, match=r"edge_index\[:, 1\] = \(1, 5\) .* outside \[0, 4\)"):
        csr_from_edge_index(edge_index, 4)
    with pytest.raises(ValueError, match=r"edge_index\[:, 0\] = \(-1, 1\)"):
        csr_from_edge_index(torch.tensor([[-1], [1]]), 4)


@pytest.mark.parametrize(
    "value,norm,match",
    [
        (float("nan"), "sum", r"weight\[1\] = nan is not finite"),
        (float("inf"), "gcn", r"weight\[1\] = inf is not finite"),
        (-1.0, "gcn", r"weight\[1\] = -1.0 is negative, but norm='gcn'"),
        (-1.0, "mean", r"weight\[1\] = -1.0 is negative, but norm='mean'"),
    ],
)
def test_bad_edge_weights_name_the_edge(value, norm, match):
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    with pytest.raises(ValueError, match=match):
        csr_from_edge_index(edge_index, 3, torch.tensor([1.0, value, 1.0]), norm=norm)


def test_signed_weights_are_allowed_without_normalisation():
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    adj = csr_from_edge_index(edge_index, 3, torch.tensor([1.0, -2.0, 3.0]), norm="sum")
    assert sorted(adj.weight.tolist()) == [-2.0, 1.0, 3.0]


def test_bad_weight_shape_and_norm():
    edge_index = torch.tensor([[0, 1], [1, 0]])
    with pytest.raises(ValueError, match=r"shape \(3,\) but edge_index has 2 edges"):
        csr_from_edge_index(edge_index, 2, torch.ones(3))
    with pytest.raises(ValueError, match=r"norm='max': choose one of"):
        csr_from_edge_index(edge_index, 2, norm="max")
