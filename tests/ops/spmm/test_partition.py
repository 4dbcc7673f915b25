"""Accel-GCN's degree sort, block partition, AccelGraph and the two SpMM references."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
import torch

from ops.sparse import CsrAdjacency
from ops.sparse import spmm_reference as sparse_spmm_reference
from ops.spmm.partition import (
    DEG_BOUND,
    FACTORS,
    WARP_NZ,
    WARPS_PER_BLOCK,
    AccelGraph,
    accel_graph,
    accel_graph_t,
    block_partition,
    degree_sort,
    read_block4,
    write_block4,
)
from ops.spmm.reference import spmm_blocks_reference, spmm_reference
from tests.conftest import require_data

SMALL_DEGREES = [0, 1, 5, 31, 32, 33, 64, 65, 96, 97, 128, 129, 191]
SPECIAL_DEGREES = SMALL_DEGREES + [192, 383, 384, 385, 768, 1000]  # each side of every rule


def partition_by_rules(degrees: list[int]) -> list[tuple[int, int, int, int]]:
    """The block metadata re-derived row by row from the paper's rules (test oracle)."""
    blocks, loc, row = [], 0, 0
    while row < len(degrees):
        d = degrees[row]
        if d == 0:
            row += 1
        elif d > DEG_BOUND:
            for offset in range(0, d, DEG_BOUND):
                blocks.append((d, row, loc + offset, min(DEG_BOUND, d - offset)))
            loc, row = loc + d, row + 1
        else:
            if d < 192:
                factor = min(f for f in FACTORS if 32 * f >= d)
                w_nz, capacity = (d + factor - 1) // factor, 12 // factor
            else:
                w_nz, capacity = 32, 1
            count = 1
            while count < capacity and row + count < len(degrees) and degrees[row + count] == d:
                count += 1
            blocks.append((d, row, loc, (w_nz << 16) | count))
            loc, row = loc + count * d, row + count
    return blocks


def degrees_from_meta(meta: torch.Tensor) -> torch.Tensor:
    """The sorted degree sequence a metadata table encodes (uncovered rows: degree 0)."""
    degree, row_begin, _, info = meta.long().unbind(1)
    n_rows = torch.where(degree <= DEG_BOUND, info & 0xFFFF, 1)
    first = torch.repeat_interleave(row_begin, n_rows)
    rank = torch.arange(int(n_rows.sum())) - torch.repeat_interleave(
        n_rows.cumsum(0) - n_rows, n_rows
    )
    out = torch.zeros(int((row_begin + n_rows).max()), dtype=torch.int64)
    out[first + rank] = torch.repeat_interleave(degree, n_rows)
    return out


def check_blocks_cover_nonzeros(meta: torch.Tensor, rowptr: torch.Tensor) -> None:
    """Every nonzero lies in exactly one block, inside the row the block assigns it to."""
    covered = torch.zeros(int(rowptr[-1]), dtype=torch.int64)
    offsets = rowptr.tolist()
    for degree, row_begin, loc_begin, info in meta.tolist():
        if degree <= DEG_BOUND:
            n_rows, w_nz, row_nz = info & 0xFFFF, info >> 16, degree
            assert 1 <= w_nz <= WARP_NZ
            assert n_rows * -(-row_nz // w_nz) <= WARPS_PER_BLOCK
        else:
            n_rows, row_nz = 1, info
            assert 1 <= info <= DEG_BOUND
        for r in range(n_rows):
            row, start = row_begin + r, loc_begin + r * row_nz
            assert offsets[row + 1] - offsets[row] == degree
            assert offsets[row] <= start and start + row_nz <= offsets[row + 1]
            covered[start : start + row_nz] += 1
    assert torch.equal(covered, torch.ones_like(covered))


def graph_with_degrees(degrees: list[int], num_cols: int, seed: int) -> CsrAdjacency:
    """A CSR with the given row degrees (in that order), random distinct columns, weights."""
    gen = torch.Generator().manual_seed(seed)
    rowptr = torch.zeros(len(degrees) + 1, dtype=torch.int64)
    rowptr[1:] = torch.tensor(degrees).cumsum(0)
    cols = [torch.randperm(num_cols, generator=gen)[:d].sort().values for d in degrees]
    col = torch.cat(cols) if cols else torch.zeros(0, dtype=torch.int64)
    weight = torch.rand(col.numel(), generator=gen) + 0.5
    return CsrAdjacency(rowptr, col, weight, num_cols)


def test_degree_tables_by_hand() -> None:
    degrees = torch.tensor([0, 0, 1, 1, 1, 5, 200, 385, 800])
    expected = [
        (1, 2, 0, (1 << 16) | 3),  # f = 1: 12 rows of 1 nonzero a block
        (5, 5, 3, (5 << 16) | 1),
        (200, 6, 8, (32 << 16) | 1),  # 192..384: one row, warps of 32
        (385, 7, 208, 384),  # chunks of 384 and the remainder
        (385, 7, 592, 1),
        (800, 8, 593, 384),
        (800, 8, 977, 384),
        (800, 8, 1361, 32),
    ]
    assert block_partition(degrees).tolist() == [list(b) for b in expected]


@pytest.mark.parametrize(
    ("degree", "w_nz", "rows"),
    [(32, 32, 12), (33, 17, 6), (64, 32, 6), (65, 22, 4), (96, 32, 4), (97, 25, 3), (128, 32, 3),
     (129, 22, 2), (191, 32, 2), (192, 32, 1), (384, 32, 1)],
)  # fmt: skip
def test_factor_table(degree: int, w_nz: int, rows: int) -> None:
    meta = block_partition(torch.full((rows,), degree))
    assert meta.tolist() == [[degree, 0, 0, (w_nz << 16) | rows]]


@pytest.mark.parametrize("seed", range(4))
def test_partition_matches_rules_on_random_degrees(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(SPECIAL_DEGREES), (300,), generator=gen)
    degrees = torch.tensor(SPECIAL_DEGREES)[picks]
    degrees = torch.cat([degrees, torch.randint(0, 1200, (200,), generator=gen)]).sort().values
    meta = block_partition(degrees)
    assert meta.dtype == torch.int32 and meta.shape[1] == 4
    assert meta.tolist() == [list(b) for b in partition_by_rules(degrees.tolist())]
    assert torch.equal(degrees_from_meta(meta)[-degrees.numel() :], degrees)


def test_partition_matches_rules_on_cora(cache_dir: Path) -> None:
    from tasks.bench.graphs import load_graph

    root = require_data("graphs/planetoid-cora.edges.gz")
    graph = load_graph("planetoid-cora", root, cache_dir)
    adj = CsrAdjacency.from_edge_index(graph.edge_index, graph.num_nodes, norm="sum")
    accel = AccelGraph.from_csr(adj)
    degrees = accel.rowptr.diff()
    assert accel.meta.tolist() == [list(b) for b in partition_by_rules(degrees.tolist())]
    check_blocks_cover_nonzeros(accel.meta, accel.rowptr)


def test_blocks_cover_every_nonzero_once() -> None:
    adj = graph_with_degrees(SPECIAL_DEGREES * 2 + [3] * 30, num_cols=1100, seed=0)
    accel = AccelGraph.from_csr(adj)
    check_blocks_cover_nonzeros(accel.meta, accel.rowptr)


def test_empty_and_all_zero_degrees() -> None:
    assert block_partition(torch.zeros(0, dtype=torch.int64)).shape == (0, 4)
    assert block_partition(torch.zeros(5, dtype=torch.int64)).shape == (0, 4)


def test_partition_rejects_bad_degrees() -> None:
    with pytest.raises(ValueError, match="not ascending at position 2"):
        block_partition(torch.tensor([1, 3, 2]))
    with pytest.raises(ValueError, match="negative degree"):
        block_partition(torch.tensor([-1, 3]))
    with pytest.raises(ValueError, match="integer degrees"):
        block_partition(torch.tensor([1.0, 2.0]))


def test_degree_sort_is_stable_ascending() -> None:
    degrees = torch.tensor([3, 0, 1, 3, 1, 0, 500, 3])
    rowptr = torch.cat([torch.zeros(1, dtype=torch.int64), degrees.cumsum(0)])
    assert degree_sort(rowptr).tolist() == [1, 5, 2, 4, 0, 3, 7, 6]
    with pytest.raises(ValueError, match="int64 offsets"):
        degree_sort(rowptr.int())


def test_from_csr_sorts_rows_and_keeps_their_edges() -> None:
    adj = graph_with_degrees([4, 0, 2, 500, 2, 1], num_cols=600, seed=1)
    accel = AccelGraph.from_csr(adj)
    assert accel.num_rows == 6 and accel.nnz == adj.nnz and accel.num_cols == 600
    assert accel.perm.tolist() == [1, 5, 2, 4, 0, 3]
    assert accel.col.dtype == torch.int32 and accel.weight.dtype == torch.float32
    assert accel.partition_seconds > 0
    for i, row in enumerate(accel.perm.tolist()):
        mine = slice(int(accel.rowptr[i]), int(accel.rowptr[i + 1]))
        theirs = slice(int(adj.rowptr[row]), int(adj.rowptr[row + 1]))
        assert torch.equal(accel.col[mine].long(), adj.col[theirs])
        assert torch.equal(accel.weight[mine], adj.weight[theirs])
    assert AccelGraph.from_csr(adj, weighted=False).weight is None


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("width", [1, 5])
def test_references_equal_dense_product(weighted: bool, width: int) -> None:
    degrees = [0, 1, 31, 32, 33, 191, 192, 384, 385, 768, 1000, 2, 2, 0, 33, 1]
    adj = graph_with_degrees(degrees, num_cols=1100, seed=2)
    accel = AccelGraph.from_csr(adj, weighted=weighted)
    x = torch.randn(1100, width, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    dense = adj.to_dense().double() if weighted else (adj.to_dense() != 0).double()
    expected = dense @ x  # (N, width) in the caller's row order
    torch.testing.assert_close(spmm_reference(accel, x), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(spmm_blocks_reference(accel, x), expected, rtol=1e-12, atol=1e-12)


def test_reference_matches_sparse_reference_in_float16() -> None:
    adj = graph_with_degrees([3, 40, 0, 400, 7], num_cols=450, seed=4)
    x = torch.randn(450, 8).half()
    out = spmm_reference(AccelGraph.from_csr(adj), x)
    assert out.dtype == torch.float16
    expected = sparse_spmm_reference(adj, x.double())
    torch.testing.assert_close(out.double(), expected, rtol=1e-2, atol=1e-2)


def test_references_reject_bad_features() -> None:
    accel = AccelGraph.from_csr(graph_with_degrees([1, 2], num_cols=4, seed=5))
    with pytest.raises(ValueError, match="x has 3 rows but A has 4 columns"):
        spmm_reference(accel, torch.zeros(3, 2))
    with pytest.raises(TypeError, match="2-D float"):
        spmm_blocks_reference(accel, torch.zeros(4, 2, dtype=torch.int64))


def test_block4_round_trip_and_layout(tmp_path: Path) -> None:
    meta = block_partition(torch.tensor([1, 1, 500]))
    path = tmp_path / "g.block4"
    write_block4(meta, path)
    flat = [v for record in meta.tolist() for v in record]
    assert path.read_bytes() == struct.pack(f"<{len(flat)}i", *flat)
    assert torch.equal(read_block4(path), meta)
    path.write_bytes(b"\0" * 12)
    with pytest.raises(ValueError, match="not a multiple of 4"):
        read_block4(path)


def test_graphs_are_cached_on_the_adjacency() -> None:
    adj = graph_with_degrees([2, 0, 5, 1], num_cols=7, seed=6)
    assert accel_graph(adj) is accel_graph(adj)
    assert accel_graph(adj, weighted=False) is not accel_graph(adj)
    transposed = accel_graph_t(adj)
    assert transposed is accel_graph_t(adj) and transposed.num_rows == 7
    dy = torch.randn(4, 3, dtype=torch.float64)
    expected = adj.to_dense().double().T @ dy
    torch.testing.assert_close(spmm_reference(transposed, dy), expected)
    assert accel_graph(adj).to("cpu") is accel_graph(adj)


def test_graph_rejects_wrong_dtypes() -> None:
    accel = AccelGraph.from_csr(graph_with_degrees([1, 2], num_cols=4, seed=7))
    with pytest.raises(ValueError, match="AccelGraph.col has dtype torch.int64"):
        AccelGraph(accel.perm, accel.rowptr, accel.col.long(), None, accel.meta, 4)


def test_matches_authors_published_metadata() -> None:
    """Each published .block4 is reproduced from the degree sequence it encodes."""
    folder = os.environ.get("ACCEL_GCN_META_DIR")
    if not folder:
        pytest.skip(
            "ACCEL_GCN_META_DIR is unset: point it at block_level_meta/ of xiexi51/ICCAD-Accel-GCN"
        )
    files = [p for p in sorted(Path(folder).glob("*.block4")) if p.stat().st_size]
    if not files:
        pytest.skip(f"no non-empty .block4 files in {folder}")
    for path in files:
        theirs = read_block4(path)
        assert torch.equal(block_partition(degrees_from_meta(theirs)), theirs), path.name


def test_matches_authors_pubmed_from_edges(cache_dir: Path) -> None:
    """Their "pubmed" is Planetoid PubMed with Cora's edges on ids 0..2707, duplicates merged."""
    from tasks.bench.graphs import load_graph

    folder = os.environ.get("ACCEL_GCN_META_DIR")
    if not folder or not (Path(folder) / "pubmed.block4").is_file():
        pytest.skip("ACCEL_GCN_META_DIR is unset or lacks pubmed.block4 (the authors' metadata)")
    root = require_data("graphs/planetoid-pubmed.edges.gz", "graphs/planetoid-cora.edges.gz")
    pubmed = load_graph("planetoid-pubmed", root, cache_dir)
    cora = load_graph("planetoid-cora", root, cache_dir)
    edges = torch.cat([pubmed.edge_index, cora.edge_index], dim=1)
    edges = torch.cat([edges, edges.flip(0)], dim=1)
    adj = CsrAdjacency.from_edge_index(edges, pubmed.num_nodes, norm="sum")
    meta = AccelGraph.from_csr(adj, weighted=False).meta
    assert torch.equal(meta, read_block4(Path(folder) / "pubmed.block4"))
