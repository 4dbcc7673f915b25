"""The C++/OpenMP Accel-GCN SpMM and its vectorised-torch fallback against the float64 reference."""

from __future__ import annotations

import logging

import pytest
import torch

from ops.dispatch import warn_fallback
from ops.sparse import CsrAdjacency
from ops.spmm.cpu import load_kernel, spmm_cpu, spmm_cpu_torch
from ops.spmm.partition import DEG_BOUND, AccelGraph
from ops.spmm.reference import spmm_reference
from tests.conftest import require_data

NUM_COLS = 2500
# Every kind of row: degree 0, < 32, 32..191, 192..384 (one row a block), > 384 (chunks).
# The long rows hold most nonzeros: at width 128 the product is big enough for the kernel to
# cut the blocks into parts (nonzeros × width ≥ MIN_PARALLEL_WORK in cpu_kernels.cpp), and
# with two threads (eight parts) part boundaries fall inside those rows, so their chunks are
# summed by different parts and combined afterwards.
DEGREES = [0] * 6 + list(range(1, 32)) * 2 + [40, 100, 191, 192, 300, 384]
DEGREES += [385, 900, 2000, 2300, 2450]
MIN_PARALLEL_WORK = 1 << 20
TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-2}


def graph_with_degrees(degrees: list[int], num_cols: int, seed: int) -> CsrAdjacency:
    """Rows with the given degrees in shuffled order, distinct random columns, weights in (0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    shuffled = torch.tensor(degrees)[torch.randperm(len(degrees), generator=gen)]
    cols = [torch.randperm(num_cols, generator=gen)[:d].sort().values for d in shuffled.tolist()]
    rowptr = torch.zeros(len(degrees) + 1, dtype=torch.int64)
    rowptr[1:] = shuffled.cumsum(0)
    col = torch.cat(cols) if cols else torch.zeros(0, dtype=torch.int64)
    weight = 1.0 - torch.rand(col.numel(), generator=gen)
    return CsrAdjacency(rowptr, col, weight, num_cols)


@pytest.fixture(scope="module")
def adj() -> CsrAdjacency:
    return graph_with_degrees(DEGREES, NUM_COLS, seed=0)


@pytest.fixture
def threads(request):
    """Run the test with ``request.param`` torch threads, restoring the count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def assert_matches_reference(graph: AccelGraph, x: torch.Tensor, y: torch.Tensor) -> None:
    """y within the dtype's tolerance (relative to the largest output) of the float64 result."""
    ref = spmm_reference(graph, x.double())
    assert y.dtype == x.dtype and y.shape == ref.shape
    tol = TOLERANCE[x.dtype]
    scale = float(ref.abs().max().clamp(min=1.0))
    torch.testing.assert_close(y.double(), ref, rtol=tol, atol=tol * scale)


def test_graph_has_every_kind_of_row(adj: CsrAdjacency) -> None:
    degrees = adj.rowptr.diff()
    assert (degrees == 0).any() and ((degrees > 0) & (degrees < 32)).any()
    assert ((degrees >= 192) & (degrees <= DEG_BOUND)).any() and (degrees > DEG_BOUND).any()
    assert adj.nnz * 128 >= MIN_PARALLEL_WORK > adj.nnz * 33


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("width", [1, 31, 32, 33, 128])
def test_kernel_matches_reference(
    adj: CsrAdjacency, threads: int, weighted: bool, dtype: torch.dtype, width: int
) -> None:
    graph = AccelGraph.from_csr(adj, weighted=weighted)
    x = torch.randn(NUM_COLS, width, generator=torch.Generator().manual_seed(width)).to(dtype)
    assert_matches_reference(graph, x, spmm_cpu(graph, x))


@pytest.mark.requires_data
@pytest.mark.parametrize("threads", [2], indirect=True)
def test_kernel_matches_reference_on_a_real_graph(cache_dir, threads: int) -> None:
    from tasks.bench.graphs import load_graph

    data = require_data("graphs/wiki-chameleon.edges.gz")
    bench = load_graph("wiki-chameleon", data, cache_dir)
    adj = CsrAdjacency.from_edge_index(bench.edge_index, bench.num_nodes, norm="gcn")
    assert int(adj.rowptr.diff().max()) > DEG_BOUND  # chunked rows
    graph = AccelGraph.from_csr(adj)
    x = torch.randn(adj.num_cols, 64, generator=torch.Generator().manual_seed(2))
    assert_matches_reference(graph, x, spmm_cpu(graph, x))


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_torch_fallback_matches_reference(adj: CsrAdjacency, weighted: bool, dtype) -> None:
    graph = AccelGraph.from_csr(adj, weighted=weighted)
    x = torch.randn(NUM_COLS, 33, generator=torch.Generator().manual_seed(3)).to(dtype)
    assert_matches_reference(graph, x, spmm_cpu_torch(graph, x))


def test_without_compiler_falls_back_with_a_warning(
    adj: CsrAdjacency, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("EFFML_SPMM_NO_CPP", "1")
    load_kernel.cache_clear()
    warn_fallback.cache_clear()
    try:
        graph = AccelGraph.from_csr(adj)
        x = torch.randn(NUM_COLS, 32, generator=torch.Generator().manual_seed(4))
        with caplog.at_level(logging.WARNING):
            y = spmm_cpu(graph, x)
        assert load_kernel() is None
        assert "EFFML_SPMM_NO_CPP=1" in caplog.text
        assert_matches_reference(graph, x, y)
    finally:
        load_kernel.cache_clear()
        warn_fallback.cache_clear()


def test_graph_without_edges_gives_zeros() -> None:
    adj = graph_with_degrees([0, 0, 0], num_cols=5, seed=5)
    graph = AccelGraph.from_csr(adj)
    assert graph.meta.shape[0] == 0
    x = torch.randn(5, 17)
    assert torch.equal(spmm_cpu(graph, x), torch.zeros(3, 17))


def test_float64_runs_the_torch_path_exactly(adj: CsrAdjacency) -> None:
    graph = AccelGraph.from_csr(adj)
    x = torch.randn(NUM_COLS, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    y = spmm_cpu(graph, x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, spmm_reference(graph, x))


@pytest.mark.parametrize(
    ("make_x", "error", "match"),
    [
        (lambda: torch.randn(NUM_COLS), ValueError, "2-D"),
        (lambda: torch.randn(NUM_COLS + 1, 4), ValueError, "rows but A has"),
        (lambda: torch.ones(NUM_COLS, 4, dtype=torch.int32), TypeError, "float32 or float16"),
    ],
)
def test_bad_features_name_the_value(adj: CsrAdjacency, make_x, error, match: str) -> None:
    graph = AccelGraph.from_csr(adj)
    with pytest.raises(error, match=match):
        spmm_cpu(graph, make_x())
