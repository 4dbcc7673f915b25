"""Accel-GCN's Triton combined-warp SpMM kernel (ops/spmm/triton.py) against the reference.

Every case is checked against ``spmm_reference`` in float64 by the ∞-norm relative error
(fp32 1e-5, fp16 1e-2, bf16 5e-2). The test graphs hold rows of every kind the partition
makes: degree 0 (no block), one warp a row (< 32), 2–6 warps a row (33–191), one row a block
(192–384) and rows cut into 384-nonzero chunks (> 384, atomics), including chunks of one
nonzero and of exactly one warp. Triton runs under TRITON_INTERPRET=1 (tests/conftest.py);
the CUDA tests repeat the comparison on a GPU when one is present, bf16 included.
"""

from __future__ import annotations

import pytest
import torch

from ops.sparse import CsrAdjacency
from ops.spmm.partition import DEG_BOUND, AccelGraph, accel_graph, accel_graph_t
from ops.spmm.reference import spmm_reference
from ops.spmm.triton import MAX_BLOCK_F, spmm_triton
from tasks.bench import load_graph
from tests.conftest import require_data

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def dtype_id(dtype: torch.dtype) -> str:
    """The test id of a dtype: float32, float16, bfloat16."""
    return str(dtype).removeprefix("torch.")


# unsorted on purpose, so the degree sort moves rows and perm has to put them back
MIXED_DEGREES = (
    [0, 3, 1, 0, 5, 31, 32, 33, 64, 65, 100, 191, 192, 200, 384, 385, 768, 800]
    + [7, 7, 7, 1, 1, 2, 0]
    + [4] * 14  # a run of equal degrees filling one block (12 rows) and part of the next
)
MIXED_COLS = 900


def adjacency_with_degrees(degrees: list[int], num_cols: int, seed: int) -> CsrAdjacency:
    """Sorted CSR whose row i has ``degrees[i]`` distinct random columns and signed weights."""
    gen = torch.Generator().manual_seed(seed)
    rowptr, cols = [0], []
    for degree in degrees:
        cols.append(torch.randperm(num_cols, generator=gen)[:degree].sort().values)
        rowptr.append(rowptr[-1] + degree)
    col = torch.cat(cols)
    weight = torch.randn(col.numel(), generator=gen)
    return CsrAdjacency(torch.tensor(rowptr), col, weight, num_cols)


def max_rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got − ref| / max |ref| (the ∞-norm relative error)."""
    err = (got.double() - ref.double()).abs().max().item()
    scale = ref.abs().max().item()
    return err / scale if scale else err


def check_against_reference(graph: AccelGraph, x64: torch.Tensor, dtype: torch.dtype) -> None:
    """spmm_triton on x64 cast to ``dtype`` is within TOL[dtype] of the float64 reference."""
    got = spmm_triton(graph, x64.to(dtype))
    want = spmm_reference(graph.to("cpu"), x64.cpu())
    assert got.dtype == dtype
    assert got.shape == (graph.num_rows, x64.shape[1])
    assert max_rel_err(got.cpu(), want) <= TOL[dtype]


@pytest.fixture(scope="module")
def mixed_adjacency() -> CsrAdjacency:
    adj = adjacency_with_degrees(MIXED_DEGREES, MIXED_COLS, seed=0)
    meta = accel_graph(adj).meta
    assert (meta[:, 0] > DEG_BOUND).any() and (meta[:, 0] <= 32).any()  # both kinds of block
    return adj


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=dtype_id)
@pytest.mark.parametrize("weighted", [True, False], ids=["weighted", "unit"])
@pytest.mark.parametrize("width", [1, 31, 32, 33, 128])
def test_matches_reference_on_every_kind_of_row(mixed_adjacency, width, weighted, dtype):
    graph = accel_graph(mixed_adjacency, weighted)
    x64 = torch.randn(MIXED_COLS, width, generator=torch.Generator().manual_seed(width))
    check_against_reference(graph, x64.double(), dtype)


def test_widths_over_one_tile_loop_over_feature_tiles(mixed_adjacency):
    width = 2 * MAX_BLOCK_F + 44
    x64 = torch.randn(MIXED_COLS, width, generator=torch.Generator().manual_seed(3))
    check_against_reference(accel_graph(mixed_adjacency), x64.double(), torch.float32)


def test_transposed_graph_runs_the_same_kernel(mixed_adjacency):
    """The backward's operand: A^T has many empty rows and other hubs."""
    graph_t = accel_graph_t(mixed_adjacency)
    x64 = torch.randn(len(MIXED_DEGREES), 33, generator=torch.Generator().manual_seed(4))
    check_against_reference(graph_t, x64.double(), torch.float32)


def test_rows_come_back_in_the_callers_order():
    """Row i of A · X equals the dense product's row i, whatever the degree sort did."""
    adj = adjacency_with_degrees([400, 0, 2, 40, 1], num_cols=450, seed=5)
    x = torch.randn(450, 8, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(
        spmm_triton(AccelGraph.from_csr(adj), x), adj.to_dense().float() @ x, rtol=1e-5, atol=1e-5
    )


def test_empty_graph_and_zero_width_give_zeros(mixed_adjacency):
    no_edges = AccelGraph.from_csr(adjacency_with_degrees([0, 0, 0], num_cols=4, seed=0))
    assert no_edges.meta.shape[0] == 0
    torch.testing.assert_close(spmm_triton(no_edges, torch.ones(4, 5)), torch.zeros(3, 5))
    out = spmm_triton(accel_graph(mixed_adjacency), torch.ones(MIXED_COLS, 0))
    assert out.shape == (len(MIXED_DEGREES), 0)


def test_rejects_wrong_shapes_and_dtypes(mixed_adjacency):
    graph = accel_graph(mixed_adjacency)
    with pytest.raises(ValueError, match=f"num_cols={MIXED_COLS}"):
        spmm_triton(graph, torch.ones(MIXED_COLS + 1, 4))
    with pytest.raises(ValueError, match="num_cols"):
        spmm_triton(graph, torch.ones(MIXED_COLS))
    with pytest.raises(TypeError, match="float64"):
        spmm_triton(graph, torch.ones(MIXED_COLS, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="bfloat16"):
        spmm_triton(graph, torch.ones(MIXED_COLS, 4, dtype=torch.bfloat16))


# ---------------------------------------------------------------- a real graph


@pytest.fixture(scope="module")
def real_adjacency(cache_dir) -> CsrAdjacency:
    """Four rows of cit-hepth (GCN weights) from each degree class, all its columns."""
    root = require_data("graphs/cit-hepth.edges.gz")
    bench = load_graph("cit-hepth", root, cache_dir)
    full = CsrAdjacency.from_edge_index(bench.edge_index, bench.num_nodes, norm="gcn")
    degrees = full.rowptr.diff()
    classes = [(0, 0), (1, 31), (33, 191), (192, DEG_BOUND), (DEG_BOUND + 1, 10**9)]
    rows = torch.cat(
        [torch.nonzero((degrees >= lo) & (degrees <= hi))[:4, 0] for lo, hi in classes]
    )
    assert rows.numel() == 4 * len(classes)  # every class is present in this graph
    edges = torch.cat([torch.arange(full.rowptr[r], full.rowptr[r + 1]) for r in rows.tolist()])
    rowptr = torch.cat([torch.zeros(1, dtype=torch.int64), degrees[rows].cumsum(0)])
    return CsrAdjacency(rowptr, full.col[edges], full.weight[edges], full.num_cols)


@pytest.mark.requires_data
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=dtype_id)
def test_real_graph_rows_of_every_kind(real_adjacency, dtype):
    x64 = torch.randn(real_adjacency.num_cols, 33, generator=torch.Generator().manual_seed(7))
    check_against_reference(accel_graph(real_adjacency), x64.double(), dtype)


@pytest.mark.requires_data
def test_real_graph_transposed(real_adjacency):
    """A^T of the real rows: thousands of short rows, most of them empty."""
    x64 = torch.randn(real_adjacency.num_rows, 33, generator=torch.Generator().manual_seed(8))
    check_against_reference(accel_graph_t(real_adjacency), x64.double(), torch.float32)


# ---------------------------------------------------------------- CUDA


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("width", [1, 31, 32, 33, 128, 1024])
def test_cuda_matches_reference(mixed_adjacency, width, dtype):
    for weighted in (True, False):
        graph = accel_graph(mixed_adjacency, weighted).to("cuda")
        x64 = torch.randn(MIXED_COLS, width, generator=torch.Generator().manual_seed(width))
        check_against_reference(graph, x64.double().cuda(), dtype)


@pytest.fixture(scope="module")
def power_law_adjacency() -> CsrAdjacency:
    """3000 rows with heavy-tailed degrees (dozens of chunked hubs) and empty rows."""
    gen = torch.Generator().manual_seed(8)
    num_cols = 20_000
    degrees = torch.rand(3000, generator=gen).pow(-1.5).clamp(max=num_cols).long()
    degrees[::100] = 0
    return adjacency_with_degrees(degrees.tolist(), num_cols, seed=9)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=dtype_id)
def test_cuda_power_law_graph(power_law_adjacency, dtype):
    graph = accel_graph(power_law_adjacency).to("cuda")
    x64 = torch.randn(graph.num_cols, 64, generator=torch.Generator().manual_seed(10))
    check_against_reference(graph, x64.double().cuda(), dtype)
