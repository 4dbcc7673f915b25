"""The shared sparse layer (ops/sparse): CSR construction, the per-graph cache, SpMM.

The CSR is checked against torch's own CSR conversion and dense algebra, the norms against
PyG's aggregations; ``spmm`` forward and backward against float64 dense products within a
per-dtype tolerance (fp32 1e-5, fp64 1e-12, relative to max(1, |ref|)).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from ops.sparse import (
    AdjacencyCache,
    CsrAdjacency,
    spmm,
    spmm_reference,
    spmm_transposed_reference,
)

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

ATOL = {torch.float64: 1e-12, torch.float32: 1e-5}

# name: (rows, cols, density); rows ≠ cols means rectangular A
SHAPES = {"square": (30, 30, 0.2), "rect": (17, 41, 0.15), "one_col": (9, 1, 0.5)}


def random_dense(rows: int, cols: int, density: float, seed: int) -> torch.Tensor:
    """(rows, cols) float64 with signed entries, a given density, and row 0 empty."""
    gen = torch.Generator().manual_seed(seed)
    keep = torch.rand(rows, cols, generator=gen) < density
    dense = torch.randn(rows, cols, generator=gen, dtype=torch.float64) * keep
    dense[0] = 0.0
    return dense


def csr_of(dense: torch.Tensor) -> CsrAdjacency:
    """The CsrAdjacency holding ``dense``'s nonzeros, built through torch's CSR conversion."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        csr = dense.to_sparse_csr()
    return CsrAdjacency(csr.crow_indices(), csr.col_indices(), csr.values(), dense.shape[1])


def assert_close_to(got: torch.Tensor, ref64: torch.Tensor, dtype: torch.dtype) -> None:
    assert got.dtype == dtype and got.shape == ref64.shape
    err = (got.cpu().double() - ref64).abs().max().item() if ref64.numel() else 0.0
    bound = ATOL[dtype] * max(1.0, ref64.abs().max().item() if ref64.numel() else 1.0)
    assert err <= bound, f"|got − ref64| = {err:.3g} > {bound:.3g}"


# ---------------------------------------------------------------- CSR


@pytest.mark.parametrize("shape", list(SHAPES))
def test_csr_matches_dense_transpose_and_torch_sparse(shape):
    dense = random_dense(*SHAPES[shape], seed=1)
    adj = csr_of(dense)
    assert adj.shape == dense.shape and adj.nnz == int((dense != 0).sum())
    assert torch.equal(adj.to_dense(), dense)
    assert torch.equal(adj.transpose().to_dense(), dense.T)
    assert torch.equal(adj.to_torch_sparse().to_dense(), dense)
    assert adj.to_torch_sparse(torch.float32).dtype == torch.float32
    assert torch.equal(adj.row_index(), dense.nonzero()[:, 0])
    assert adj.weight_as(torch.float32) is adj.weight_as(torch.float32)  # cached


def test_norms_match_pyg():
    """mean = SAGE's mean aggregation, gcn = PyG gcn_norm (self loops), sum = GIN's sum."""
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    from torch_geometric.utils import coalesce, scatter

    gen = torch.Generator().manual_seed(3)
    n = 40
    edge_index = torch.randint(0, n, (2, 150), generator=gen)
    edge_index = torch.cat([edge_index, edge_index[:, :10]], dim=1)  # duplicates
    unique = coalesce(edge_index, num_nodes=n)
    x = torch.randn(n, 8, generator=gen, dtype=torch.float64)
    src, dst = unique
    for norm, reduce in (("mean", "mean"), ("sum", "sum")):
        adj = CsrAdjacency.from_edge_index(edge_index, n, norm=norm)
        want = scatter(x[src], dst, dim=0, dim_size=n, reduce=reduce)
        torch.testing.assert_close(adj.to_dense().double() @ x, want)
    ei, w = gcn_norm(unique, num_nodes=n, add_self_loops=True)
    want = scatter(w.double()[:, None] * x[ei[0]], ei[1], dim=0, dim_size=n, reduce="sum")
    adj = CsrAdjacency.from_edge_index(edge_index, n, norm="gcn", add_self_loops=True)
    torch.testing.assert_close(adj.to_dense().double() @ x, want)


def test_edge_groups_split_long_rows():
    dense = random_dense(3, 300, 0.05, seed=4)
    dense[2, :150] = 1.0  # last row has 150 edges (+ any beyond): groups of ≤ 64
    adj = csr_of(dense)
    meta = adj.edge_groups()
    assert meta.shape[1] == 3 and int(meta[:, 2].sum()) == adj.nnz
    assert int(meta[:, 2].max()) <= 64 and not (meta[:, 0] == 0).any()  # row 0 is empty
    last = meta[meta[:, 0] == 2]
    degree = int(adj.rowptr[3] - adj.rowptr[2])
    starts = list(range(0, degree, 64))
    assert last[:, 1].tolist() == [int(adj.rowptr[2]) + s for s in starts]
    assert last[:, 2].tolist() == [min(64, degree - s) for s in starts]


def test_bad_adjacency():
    with pytest.raises(ValueError, match="not strictly ascending"):
        CsrAdjacency(torch.tensor([0, 2]), torch.tensor([3, 1]), torch.ones(2), 4)
    with pytest.raises(ValueError, match="not strictly ascending"):
        CsrAdjacency(torch.tensor([0, 2]), torch.tensor([1, 1]), torch.ones(2), 4)
    with pytest.raises(ValueError, match="not a CSR"):
        CsrAdjacency(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.ones(2), 4)
    with pytest.raises(ValueError, match="decreases at row 1"):
        CsrAdjacency(torch.tensor([0, 2, 1, 2]), torch.tensor([0, 1]), torch.ones(2), 4)
    with pytest.raises(ValueError, match=r"span \[0, 4\] but num_cols=4"):
        CsrAdjacency(torch.tensor([0, 2]), torch.tensor([0, 4]), torch.ones(2), 4)
    with pytest.raises(ValueError, match="one weight per stored edge"):
        CsrAdjacency(torch.tensor([0, 2]), torch.tensor([0, 1]), torch.ones(3), 4)
    with pytest.raises(ValueError, match="float edge weights"):
        CsrAdjacency(torch.tensor([0, 2]), torch.tensor([0, 1]), torch.ones(2, dtype=int), 4)
    with pytest.raises(ValueError, match="norm='max'"):
        CsrAdjacency.from_edge_index(torch.zeros(2, 1, dtype=torch.long), 2, norm="max")
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        CsrAdjacency.from_edge_index(torch.tensor([[0], [2]]), 2)


# ---------------------------------------------------------------- cache


def test_cache_hits_copies_misses_new_graphs_and_evicts_oldest():
    gen = torch.Generator().manual_seed(0)
    graphs = [torch.randint(0, 12, (2, 40), generator=gen) for _ in range(3)]
    cache = AdjacencyCache("gcn", True, max_graphs=2)
    first = cache.get(graphs[0], 12)
    assert cache.get(graphs[0], 12) is first and cache.builds == 1
    assert cache.get(graphs[0].clone(), 12) is first and cache.builds == 1  # equal copy
    want = CsrAdjacency.from_edge_index(graphs[0], 12, norm="gcn", add_self_loops=True)
    assert torch.equal(first.csr.to_dense(), want.to_dense())
    assert cache.get(graphs[0], 13) is not first and cache.builds == 2  # other node count
    cache.get(graphs[1], 12)
    cache.get(graphs[2], 12)  # three graphs seen since graphs[0] at N = 12: it was dropped
    assert cache.builds == 4
    assert cache.get(graphs[0], 12) is not first and cache.builds == 5


def test_cached_graph_gives_torch_sparse_pair_per_dtype():
    edge_index = torch.randint(0, 15, (2, 50), generator=torch.Generator().manual_seed(1))
    graph = AdjacencyCache("mean", False).get(edge_index, 15)
    a, a_t = graph.torch_sparse(torch.float64)
    assert graph.torch_sparse(torch.float64)[0] is a  # built once per dtype
    assert a.layout == torch.sparse_csr and a.dtype == torch.float64
    assert torch.equal(a.to_dense(), graph.csr.to_dense().double())
    assert torch.equal(a_t.to_dense(), graph.csr.to_dense().double().T)
    assert graph.torch_sparse(torch.float32)[0].dtype == torch.float32


# ---------------------------------------------------------------- SpMM


def spmm_with_grad(dense64, x64, gy64, dtype, device="cpu", profile=None):
    """(Y, dx) of spmm(A, A^T, x) in ``dtype`` with upstream gradient gy."""
    adj = csr_of(dense64).to(device)
    a, a_t = adj.to_torch_sparse(dtype), adj.transpose().to_torch_sparse(dtype)
    x = x64.to(device, dtype).requires_grad_()
    y = spmm(a, a_t, x, profile)
    (dx,) = torch.autograd.grad(y, x, gy64.to(device, dtype))
    return y.detach(), dx


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_spmm_forward_and_backward_match_float64_dense(shape, dtype):
    rows, cols, density = SHAPES[shape]
    dense = random_dense(rows, cols, density, seed=2)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(cols, 7, generator=gen, dtype=torch.float64)
    gy = torch.randn(rows, 7, generator=gen, dtype=torch.float64)
    y, dx = spmm_with_grad(dense, x, gy, dtype)
    assert_close_to(y, dense @ x, dtype)
    assert_close_to(dx, dense.T @ gy, dtype)
    assert (y[0] == 0).all(), "row 0 has no neighbours: its output must be zero"


def test_references_match_dense_and_gradcheck():
    dense = random_dense(11, 8, 0.3, seed=5)
    adj = csr_of(dense)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(8, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(11, 4, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(spmm_reference(adj, x), dense @ x)
    torch.testing.assert_close(spmm_transposed_reference(adj, dy), dense.T @ dy)
    assert torch.autograd.gradcheck(lambda v: spmm_reference(adj, v), (x,))
    a, a_t = adj.to_torch_sparse(), adj.transpose().to_torch_sparse()
    assert torch.autograd.gradcheck(lambda v: spmm(a, a_t, v), (x,))


def test_spmm_profile_adds_the_time_of_each_product():
    """Forward and backward each add (clock after − clock before) in ms, between syncs."""
    ticks, syncs = iter(range(100)), []
    profile = {"clock": lambda: float(next(ticks)), "sync": lambda: syncs.append(1), "ms": 0.5}
    dense = random_dense(6, 5, 0.5, seed=7)
    x, gy = torch.randn(5, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    y, dx = spmm_with_grad(dense, x, gy, torch.float64, profile=profile)
    assert profile["ms"] == 0.5 + 2 * 1e3 and len(syncs) == 4
    torch.testing.assert_close(y, spmm_with_grad(dense, x, gy, torch.float64)[0])


def test_spmm_bad_operands():
    adj = csr_of(random_dense(4, 5, 0.5, seed=8))
    a, a_t = adj.to_torch_sparse(torch.float32), adj.transpose().to_torch_sparse(torch.float32)
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="a must be a torch.sparse CSR tensor, got torch.strided"):
        spmm(adj.to_dense(), a_t, x)
    with pytest.raises(ValueError, match=r"a_t has shape \(4, 5\) but a has \(4, 5\)"):
        spmm(a, a, x)
    with pytest.raises(ValueError, match="x has 4 rows but A"):
        spmm(a, a_t, torch.randn(4, 3))
    with pytest.raises(ValueError, match="a is torch.float32 on cpu but x is torch.float64"):
        spmm(a, a_t, x.double())
    with pytest.raises(ValueError, match=r"profile lacks \['sync'\]"):
        spmm(a, a_t, x, {"clock": lambda: 0.0, "ms": 0.0})


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_cuda_spmm_matches_float64_dense(dtype):
    dense = random_dense(300, 200, 0.05, seed=9)
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(200, 64, generator=gen, dtype=torch.float64)
    gy = torch.randn(300, 64, generator=gen, dtype=torch.float64)
    y, dx = spmm_with_grad(dense, x, gy, dtype, device="cuda")
    assert y.is_cuda and dx.is_cuda
    assert_close_to(y, dense @ x, dtype)
    assert_close_to(dx, dense.T @ gy, dtype)
