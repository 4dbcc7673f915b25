"""MaxK-GNN ops (ops/maxk): CBSR, SpGEMM/SSpMM and maxk_aggregate (CSR tests: test_sparse.py).

Every backend is checked against the float64 reference; the reference itself is checked
against dense matrix algebra (A · scatter(CBSR), (A^T · dY).gather) and PyG's aggregations.
Tolerance (flash-attention's rule): |fast − ref64| ≤ 2·|reference_same_dtype − ref64| +
atol·max(1, |ref64|). Triton runs under TRITON_INTERPRET=1 (tests/conftest.py) on small
graphs; the CUDA tests repeat the comparison on a GPU when one is present.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from ops.maxk import (
    cbsr_to_dense,
    decode_indices,
    maxk,
    maxk_aggregate,
    maxk_aggregate_reference,
    spgemm,
    sspmm,
)
from ops.maxk.cpu_kernels import load_kernels
from ops.maxk.cpu_torch import spgemm_torch, sspmm_torch
from ops.sparse import CsrAdjacency
from tests.conftest import require_data

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

ATOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 1e-2}

# name: (rows, cols, dim, k, max neighbours per row); rows ≠ cols means rectangular A
CASES = {
    "square_u8_k7": (30, 30, 40, 7, 9),
    "rect_u8_k5": (25, 41, 64, 5, 12),
    "u8_full_width_k256": (9, 11, 256, 256, 5),
    "int16_w300_k13": (20, 17, 300, 13, 6),
    "k1": (15, 15, 8, 1, 4),
    "k_eq_dim": (12, 12, 16, 16, 5),
    "groups_over_64": (5, 200, 24, 6, 150),  # rows cut into several 64-edge groups
}


def random_adjacency(rows: int, cols: int, max_deg: int, seed: int) -> CsrAdjacency:
    """Non-symmetric weighted CSR with signed weights, an empty first row and one full row."""
    gen = torch.Generator().manual_seed(seed)
    rowptr, col = [0], []
    for i in range(rows):
        deg = 0 if i == 0 else int(torch.randint(1, max_deg + 1, (1,), generator=gen))
        if i == rows - 1:
            deg = max_deg
        ids = torch.randperm(cols, generator=gen)[: min(deg, cols)].sort().values
        col.append(ids)
        rowptr.append(rowptr[-1] + ids.numel())
    col_t = torch.cat(col)
    weight = torch.randn(col_t.numel(), generator=gen)
    return CsrAdjacency(torch.tensor(rowptr), col_t, weight, cols)


def distinct_features(n: int, dim: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    """(n, dim) rows of distinct values, spaced so top-k picks the same set in fp16 too."""
    gen = torch.Generator().manual_seed(seed)
    ranks = torch.stack([torch.randperm(dim, generator=gen) for _ in range(n)]).double()
    noise = torch.rand(n, dim, generator=gen, dtype=torch.float64) * 0.2
    return ((ranks + noise) / dim * 4 - 2).to(dtype)


def max_rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got − ref| / max |ref| (the ∞-norm relative error)."""
    scale = ref.abs().max().item() if ref.numel() else 0.0
    err = (got.double() - ref.double()).abs().max().item() if ref.numel() else 0.0
    return err / scale if scale else err


def assert_within_rule(name, got, same, ref64, dtype):
    assert got.dtype == dtype, f"{name}: dtype {got.dtype}, expected {dtype}"
    assert got.shape == ref64.shape, f"{name}: shape {tuple(got.shape)} != {tuple(ref64.shape)}"
    err = (got.cpu().double() - ref64).abs().max().item() if ref64.numel() else 0.0
    err_pt = (same.cpu().double() - ref64).abs().max().item() if ref64.numel() else 0.0
    scale = max(1.0, ref64.abs().max().item()) if ref64.numel() else 1.0
    bound = 2 * err_pt + ATOL[dtype] * scale
    assert err <= bound, f"{name}: |fast − ref64| = {err:.3g} > {bound:.3g} (torch {err_pt:.3g})"


def aggregate_with_grads(adj, h64, k, dtype, backend, gy, gm, device="cpu"):
    """(Y, h_masked, dh) of maxk_aggregate(return_dense=True) with upstream gy, gm."""
    h = h64.detach().to(device, dtype).requires_grad_()
    y, hm = maxk_aggregate(adj.to(device), h, k, backend=backend, return_dense=True)
    loss = (y * gy.to(device, dtype)).sum() + (hm * gm.to(device, dtype)).sum()
    (dh,) = torch.autograd.grad(loss, h)
    return y.detach(), hm.detach(), dh


BACKEND_DTYPES = [
    ("reference", torch.float32),
    ("cpu", torch.float32),
    ("cpu", torch.float64),
    ("cpu", torch.float16),
    ("triton", torch.float32),
    ("triton", torch.float64),
    ("triton", torch.float16),
]


@pytest.mark.parametrize(("backend", "dtype"), BACKEND_DTYPES, ids=str)
@pytest.mark.parametrize("case", list(CASES))
def test_aggregate_matches_reference(case, backend, dtype):
    rows, cols, dim, k, max_deg = CASES[case]
    if backend == "triton" and case == "u8_full_width_k256":
        k = 100  # same uint8 path, fewer interpreted lane blocks
    adj = random_adjacency(rows, cols, max_deg, seed=rows + cols)
    assert not torch.equal(adj.to_dense()[: min(rows, cols), : min(rows, cols)],
                           adj.to_dense()[: min(rows, cols), : min(rows, cols)].T)  # fmt: skip
    h64 = distinct_features(cols, dim, seed=1)
    gen = torch.Generator().manual_seed(2)
    gy = torch.randn(rows, dim, generator=gen, dtype=torch.float64)
    gm = torch.randn(cols, dim, generator=gen, dtype=torch.float64)
    ref64 = aggregate_with_grads(adj, h64, k, torch.float64, "reference", gy, gm)
    same = aggregate_with_grads(adj, h64, k, dtype, "reference", gy, gm)
    fast = aggregate_with_grads(adj, h64, k, dtype, backend, gy, gm)
    for name, got, s, r in zip(("y", "h_masked", "dh"), fast, same, ref64, strict=True):
        assert_within_rule(name, got, s, r, dtype)
    assert (ref64[0][0] == 0).all(), "row 0 has no neighbours: its output must be zero"
    assert (fast[0][0] == 0).all()
    assert (fast[2] != 0).sum(1).le(k).all(), "gradient reaches at most k positions per row"


@pytest.mark.parametrize("norm", ["mean", "gcn", "sum"])
def test_reference_is_dense_algebra(norm):
    """spgemm = A · scatter(CBSR) and sspmm = (A^T · dY).gather, written densely."""
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, 23, (2, 90), generator=gen)
    adj = CsrAdjacency.from_edge_index(edge_index, 23, norm=norm)
    x = torch.randn(23, 32, generator=gen, dtype=torch.float64)
    dy = torch.randn(23, 32, generator=gen, dtype=torch.float64)
    values, indices = maxk(x, 6)
    dense_a = adj.to_dense().double()
    xs = torch.zeros_like(x).scatter(1, indices.long(), values)
    want_y = dense_a @ xs
    want_g = (dense_a.T @ dy).gather(1, indices.long())
    for backend in ("reference", "cpu"):
        torch.testing.assert_close(spgemm(adj, values, indices, 32, backend=backend), want_y)
        torch.testing.assert_close(sspmm(adj, dy, indices, backend=backend), want_g)


def test_int16_indices_cover_widths_up_to_65535():
    width = 40000
    x = torch.zeros(3, width)
    hot = torch.tensor([[39999, 32768, 5], [65, 33000, 12345], [0, 1, 2]])
    x.scatter_(1, hot, torch.tensor([[3.0, 2.0, 1.0]] * 3))
    values, indices = maxk(x, 3)
    assert indices.dtype == torch.int16
    got = decode_indices(indices).sort(dim=1).values
    assert torch.equal(got, hot.sort(dim=1).values)
    assert torch.equal(cbsr_to_dense(values, indices, width), x)
    adj = CsrAdjacency(torch.tensor([0, 2, 2, 3]), torch.tensor([0, 2, 1]), torch.ones(3), 3)
    dy = torch.randn(3, width, generator=torch.Generator().manual_seed(0))
    want_y = adj.to_dense() @ x
    want_g = (adj.to_dense().T @ dy).gather(1, decode_indices(indices))
    for backend in ("reference", "cpu", "triton"):
        torch.testing.assert_close(spgemm(adj, values, indices, width, backend=backend), want_y)
        torch.testing.assert_close(sspmm(adj, dy, indices, backend=backend), want_g)
    assert maxk(torch.zeros(1, 65535), 2)[1].dtype == torch.int16
    assert maxk(torch.zeros(1, 256), 2)[1].dtype == torch.uint8


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_gradcheck_float64(backend):
    adj = random_adjacency(7, 9, 4, seed=5)
    h = distinct_features(9, 12, seed=6).requires_grad_()
    fn = lambda h: maxk_aggregate(adj, h, 5, backend=backend, return_dense=True)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (h,), eps=1e-6, atol=1e-8)
    values, indices = maxk(h.detach(), 5)
    values.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v: spgemm(adj, v, indices, 12, backend=backend), (values,), eps=1e-6
    )


def test_maxk_keeps_largest_and_masks_gradient():
    x = torch.tensor([[0.5, -1.0, 3.0, 2.0, -4.0]], requires_grad=True)
    values, indices = maxk(x, 2)
    assert sorted(decode_indices(indices)[0].tolist()) == [2, 3]
    dense = cbsr_to_dense(values, indices, 5)
    assert torch.equal(dense.detach(), torch.tensor([[0.0, 0.0, 3.0, 2.0, 0.0]]))
    dense.sum().backward()
    assert torch.equal(x.grad, torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0]]))


@pytest.mark.parametrize("backend", ["reference", "cpu", "triton"])
def test_empty_adjacency_and_empty_rows(backend):
    adj = CsrAdjacency(torch.zeros(5, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                       torch.zeros(0), 3)  # fmt: skip
    h = torch.randn(3, 8, requires_grad=True)
    y = maxk_aggregate(adj, h, 3, backend=backend)
    assert y.shape == (4, 8) and (y == 0).all()
    y.sum().backward()
    assert (h.grad == 0).all()


def test_torch_fallback_matches_kernels():
    """The vectorised-torch path (used without a compiler) against the float64 reference."""
    adj = random_adjacency(30, 25, 70, seed=9)
    x = distinct_features(25, 48, seed=1)
    dy = torch.randn(30, 48, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    values, indices = maxk(x, 9)
    ref_y = spgemm(adj, values, indices, 48, backend="reference")
    ref_g = sspmm(adj, dy, indices, backend="reference")
    assert max_rel_err(spgemm_torch(adj, values.float(), indices, 48), ref_y) < 1e-5
    assert max_rel_err(sspmm_torch(adj, dy.float(), indices), ref_g) < 1e-5
    assert load_kernels() is not None, "g++ is on this machine: the C++ kernels must build"


def test_library_ops_are_registered():
    assert hasattr(torch.ops.effml, "maxk_spgemm") and hasattr(torch.ops.effml, "maxk_sspmm")


# ---------------------------------------------------------------- bad input


def test_bad_k_and_width():
    x = torch.randn(4, 10)
    for k in (0, -1, 11):
        with pytest.raises(ValueError, match=f"k={k}"):
            maxk(x, k)
    with pytest.raises(ValueError, match="65536.*65535"):
        maxk(torch.zeros(1, 65536), 1)
    adj = random_adjacency(4, 4, 2, seed=0)
    with pytest.raises(ValueError, match="k=12"):
        maxk_aggregate(adj, x, 12)


def test_adjacency_must_be_csr_adjacency():
    with pytest.raises(ValueError, match="must be a CsrAdjacency"):
        maxk_aggregate(torch.eye(3), torch.randn(3, 4), 2)


def test_bad_operands():
    adj = random_adjacency(4, 5, 2, seed=0)
    with pytest.raises(ValueError, match="h has 4 rows .* needs 5"):
        maxk_aggregate(adj, torch.randn(4, 8), 2)
    with pytest.raises(ValueError, match="backend='cuda'"):
        maxk_aggregate(adj, torch.randn(5, 8), 2, backend="cuda")
    with pytest.raises(ValueError, match="h is on meta but the adjacency is on cpu"):
        maxk_aggregate(adj, torch.randn(5, 8, device="meta"), 2)
    values, indices = maxk(torch.randn(5, 300), 3)
    with pytest.raises(ValueError, match="width 200 needs torch.uint8"):
        spgemm(adj, values, indices, 200)
    with pytest.raises(ValueError, match="grad_out has 5 rows"):
        sspmm(adj, torch.randn(5, 300), indices)
    with pytest.raises(ValueError, match="indices have 3 rows but the adjacency has 5 columns"):
        sspmm(adj, torch.randn(4, 300), indices[:3])
    with pytest.raises(ValueError, match="needs torch.int16"):
        sspmm(adj, torch.randn(4, 300), indices.to(torch.uint8))


# ---------------------------------------------------------------- real graphs


def _graph_files() -> list[str]:
    root = os.environ.get("DATA_DIR")
    folder = Path(root) / "graphs" if root else None
    if folder is None or not folder.is_dir():
        return ["<DATA_DIR unset>"]
    return sorted(p.name for p in folder.glob("*.edges.gz"))


def read_edges(path: Path) -> tuple[torch.Tensor, int]:
    """(2, E) edge_index (both directions when the header says undirected) and N."""
    header = {}
    with gzip.open(path, "rt") as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            key, _, value = line[1:].partition(":")
            header[key.strip()] = value.strip()
    pairs = pd.read_csv(path, comment="#", sep=r"\s+", header=None, dtype="int64")
    edge_index = torch.from_numpy(pairs.to_numpy().T.copy())
    if header.get("directed") == "false":
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    return edge_index, int(header["nodes"])


@pytest.mark.requires_data
@pytest.mark.parametrize("name", _graph_files())
def test_cpu_path_on_every_shared_graph(name):
    """fp32 forward and backward within 1e-4 (∞-norm relative) of float64, every graph."""
    root = require_data("graphs")
    edge_index, n = read_edges(root / "graphs" / name)
    adj = CsrAdjacency.from_edge_index(edge_index, n, norm="mean")
    gen = torch.Generator().manual_seed(0)
    dim, k = 32, 8
    h = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    dy = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    values, indices = maxk(h, k)
    ref_y = spgemm(adj, values, indices, dim, backend="reference")
    ref_g = sspmm(adj, dy, indices, backend="reference")
    y = spgemm(adj, values.float(), indices, dim, backend="cpu")
    g = sspmm(adj, dy.float(), indices, backend="cpu")
    assert max_rel_err(y, ref_y) <= 1e-4, name
    assert max_rel_err(g, ref_g) <= 1e-4, name
    dense = cbsr_to_dense(values, indices, dim)
    assert max_rel_err(y, adj.to_torch_sparse(torch.float64) @ dense) <= 1e-4


# ---------------------------------------------------------------- CUDA


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("case", list(CASES))
def test_cuda_triton_matches_reference(case, dtype):
    rows, cols, dim, k, max_deg = CASES[case]
    adj = random_adjacency(rows, cols, max_deg, seed=rows + cols)
    h64 = distinct_features(cols, dim, seed=1)
    gen = torch.Generator().manual_seed(2)
    gy = torch.randn(rows, dim, generator=gen, dtype=torch.float64)
    gm = torch.randn(cols, dim, generator=gen, dtype=torch.float64)
    ref64 = aggregate_with_grads(adj, h64, k, torch.float64, "reference", gy, gm)
    same = aggregate_with_grads(adj, h64, k, dtype, "reference", gy, gm)
    fast = aggregate_with_grads(adj, h64, k, dtype, "triton", gy, gm, device="cuda")
    for name, got, s, r in zip(("y", "h_masked", "dh"), fast, same, ref64, strict=True):
        assert_within_rule(name, got, s, r, dtype)


@requires_cuda
def test_cuda_default_backend_on_a_large_graph():
    gen = torch.Generator().manual_seed(0)
    n = 5000
    edge_index = torch.randint(0, n, (2, 200_000), generator=gen)
    adj = CsrAdjacency.from_edge_index(edge_index, n, norm="gcn").to("cuda")
    h = torch.randn(n, 256, generator=gen).cuda()
    y = maxk_aggregate(adj, h, 32)
    want = maxk_aggregate_reference(adj.to("cpu"), h.double().cpu(), 32)
    assert max_rel_err(y.cpu(), want) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("width", "k"), [(256, 32), (40, 7), (300, 13), (40000, 5), (9, 9)])
def test_cpu_topk_matches_torch_topk(width, k, dtype):
    gen = torch.Generator().manual_seed(width + k)
    x = torch.randn(37, width, generator=gen).to(dtype)
    x[3, 5] = float("nan")  # torch.topk ranks NaN above everything
    x[4] = -float("inf")
    x[4, width - 1] = float("inf")
    x[6] = 0.0  # all tied: any k distinct columns
    values, indices = maxk(x, k, backend="cpu")
    ref_values, ref_idx = torch.topk(x, k, dim=1)
    assert indices.dtype == (torch.uint8 if width <= 256 else torch.int16)
    got = torch.gather(x, 1, decode_indices(indices))
    torch.testing.assert_close(got, values, equal_nan=True)
    torch.testing.assert_close(
        values.float().sort(dim=1).values, ref_values.float().sort(dim=1).values, equal_nan=True
    )
    assert int(decode_indices(indices)[3].eq(5).sum()) == 1
    assert int(decode_indices(indices)[4].eq(width - 1).sum()) == 1
    assert decode_indices(indices).sort(dim=1).values.diff(dim=1).gt(0).all(), "repeated ids"


def test_cpu_path_falls_back_without_compiled_kernels(monkeypatch, caplog):
    """No compiler (or no source): a logged warning and the vectorised-torch path."""
    import ops.dispatch as dispatch
    import ops.maxk.cpu as maxk_cpu
    import ops.maxk.cpu_kernels as kernels

    dispatch.warn_fallback.cache_clear()
    monkeypatch.setattr(kernels, "CPP_FILE", Path("/nonexistent/cpu_kernels.cpp"))
    with caplog.at_level("WARNING", logger=dispatch.__name__):
        assert kernels.load_kernels.__wrapped__() is None
    assert "maxk: cannot read /nonexistent/cpu_kernels.cpp" in caplog.text
    assert "vectorised torch" in caplog.text
    monkeypatch.setenv("EFFML_MAXK_NO_CPP", "1")
    assert kernels.load_kernels.__wrapped__() is None
    monkeypatch.setattr(maxk_cpu, "load_kernels", lambda: None)
    adj = random_adjacency(9, 7, 4, seed=3)
    h = distinct_features(7, 20, seed=4)
    y = maxk_aggregate(adj, h.float(), 6, backend="cpu")
    assert max_rel_err(y, maxk_aggregate_reference(adj, h, 6)) < 1e-5
