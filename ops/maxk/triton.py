"""Triton kernels for MaxK-GNN's SpGEMM forward and SSpMM backward.

Paper: MaxK-GNN, Peng et al., ASPLOS 2024, https://arxiv.org/abs/2312.08656 (Sec. 5).
``reference.py`` is the specification.

Layout as in the paper's CUDA kernels: each row of the CSR adjacency A is cut into edge
groups of at most GROUP = 64 nonzeros (``CsrAdjacency.edge_groups``, built once per graph,
metadata (row, first edge, count) like the paper's int4), and one program owns one group and
a block of BLOCK_K CBSR lanes. The CUDA forward accumulates a group into a shared-memory row
buffer of width dim indexed by sp_index and then adds the buffer to the output row; Triton
has no shared-memory scatter, so each program scatters its (BLOCK_E, BLOCK_K) products
w_ij · values[j, l] straight into the zeroed output row with ``tl.atomic_add`` at
Y[i, indices[j, l]] (all of a group's atomics hit one dim-wide row, which stays in L2). The
backward reuses the forward CSR, no A^T: for each edge (i, j) of the group it gathers
dY[i, indices[j, :]] and atomically adds w_ij times it into the CBSR gradient dXs[j, :].

Accumulation is fp32 (fp64 for fp64 inputs); fp16 inputs are widened on load and the result
is cast back. fp32 atomics make the summation order nondeterministic on a GPU (equal up to
rounding, rtol ~1e-5).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ops.dispatch import check_triton_runnable, device_guard

GROUP = 64
MAX_BLOCK_K = 64
# lanes × edges a program holds per step
BLOCK_ELEMS = 2048


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _blocks(k: int) -> tuple[int, int]:
    block_k = min(triton.next_power_of_2(k), MAX_BLOCK_K)
    block_e = max(1, min(GROUP, BLOCK_ELEMS // block_k))
    return block_k, block_e


@triton.jit
def _spgemm_fwd_kernel(
    meta_ptr,  # *i64, (G, 3) edge groups: (row i, first edge, edge count ≤ GROUP)
    col_ptr,  # *i32 or *i64, (E,) column j (source node) of each edge
    weight_ptr,  # *ACC, (E,) edge weight A[i, j]
    val_ptr,  # *T, (N_cols, k) CBSR values of maxk(X)
    idx_ptr,  # *u8 or *i16, (N_cols, k) CBSR column ids (int16 holds the low 16 bits)
    y_ptr,  # *ACC, (N_rows, dim) output, zeroed by the host, accumulated atomically
    k,  # CBSR lanes per row
    dim,  # width of the dense output
    IDX_MASK: tl.constexpr,  # 0xFF for uint8 indices, 0xFFFF for int16
    BLOCK_E: tl.constexpr,  # edges handled per step, a power of two ≤ GROUP (64)
    BLOCK_K: tl.constexpr,  # CBSR lanes per program, a power of two
):
    group = tl.program_id(0)
    lanes = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    lane_mask = lanes < k
    row = tl.load(meta_ptr + group * 3)
    first = tl.load(meta_ptr + group * 3 + 1)
    count = tl.load(meta_ptr + group * 3 + 2)
    out_row = y_ptr + row * dim
    for step in range(0, count, BLOCK_E):
        edges = step + tl.arange(0, BLOCK_E)
        edge_mask = edges < count
        cols = tl.load(col_ptr + first + edges, mask=edge_mask, other=0).to(tl.int64)
        w = tl.load(weight_ptr + first + edges, mask=edge_mask, other=0)
        mask = edge_mask[:, None] & lane_mask[None, :]  # (BLOCK_E, BLOCK_K)
        src = cols[:, None] * k + lanes[None, :]
        vals = tl.load(val_ptr + src, mask=mask, other=0).to(w.dtype)
        ids = tl.load(idx_ptr + src, mask=mask, other=0).to(tl.int32) & IDX_MASK
        tl.atomic_add(out_row + ids, w[:, None] * vals, mask=mask)


@triton.jit
def _sspmm_bwd_kernel(
    meta_ptr,  # *i64, (G, 3) edge groups of the forward CSR: (row i, first edge, count)
    col_ptr,  # *i32 or *i64, (E,) column j of each edge
    weight_ptr,  # *ACC, (E,) edge weight A[i, j]
    dy_ptr,  # *T, (N_rows, dim) upstream gradient dY
    idx_ptr,  # *u8 or *i16, (N_cols, k) CBSR column ids of the forward's maxk
    dxs_ptr,  # *ACC, (N_cols, k) CBSR gradient, zeroed by the host, accumulated atomically
    k,  # CBSR lanes per row
    dim,  # width of dY
    IDX_MASK: tl.constexpr,  # 0xFF for uint8 indices, 0xFFFF for int16
    BLOCK_E: tl.constexpr,  # edges handled per step, a power of two ≤ GROUP (64)
    BLOCK_K: tl.constexpr,  # CBSR lanes per program, a power of two
):
    group = tl.program_id(0)
    lanes = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    lane_mask = lanes < k
    row = tl.load(meta_ptr + group * 3)
    first = tl.load(meta_ptr + group * 3 + 1)
    count = tl.load(meta_ptr + group * 3 + 2)
    dy_row = dy_ptr + row * dim
    for step in range(0, count, BLOCK_E):
        edges = step + tl.arange(0, BLOCK_E)
        edge_mask = edges < count
        cols = tl.load(col_ptr + first + edges, mask=edge_mask, other=0).to(tl.int64)
        w = tl.load(weight_ptr + first + edges, mask=edge_mask, other=0)
        mask = edge_mask[:, None] & lane_mask[None, :]  # (BLOCK_E, BLOCK_K)
        cbsr = cols[:, None] * k + lanes[None, :]
        ids = tl.load(idx_ptr + cbsr, mask=mask, other=0).to(tl.int32) & IDX_MASK
        picked = tl.load(dy_row + ids, mask=mask, other=0).to(w.dtype)  # dY[i, idx[j, l]]
        tl.atomic_add(dxs_ptr + cbsr, w[:, None] * picked, mask=mask)


def _idx_mask(indices: torch.Tensor) -> int:
    return 0xFFFF if indices.dtype == torch.int16 else 0xFF


def spgemm_triton(
    meta: torch.Tensor,
    col: torch.Tensor,
    weight: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    num_rows: int,
    dim: int,
) -> torch.Tensor:
    """(num_rows, dim) = A · scatter(values, indices); weight must be in the accumulator dtype."""
    check_triton_runnable(values, op="maxk")
    values, indices = values.contiguous(), indices.contiguous()
    k = values.shape[1]
    y = torch.zeros(num_rows, dim, dtype=_acc_dtype(values.dtype), device=values.device)
    if meta.shape[0] and k:
        block_k, block_e = _blocks(k)
        grid = (meta.shape[0], triton.cdiv(k, block_k))
        with device_guard(values):
            _spgemm_fwd_kernel[grid](
                meta, col, weight, values, indices, y, k, dim,
                IDX_MASK=_idx_mask(indices), BLOCK_E=block_e, BLOCK_K=block_k,
            )  # fmt: skip
    return y.to(values.dtype)


def sspmm_triton(
    meta: torch.Tensor,
    col: torch.Tensor,
    weight: torch.Tensor,
    grad_out: torch.Tensor,
    indices: torch.Tensor,
    num_cols: int,
) -> torch.Tensor:
    """(num_cols, k) = (A^T · dY) at the CBSR positions, from A's own CSR groups."""
    check_triton_runnable(grad_out, op="maxk")
    grad_out, indices = grad_out.contiguous(), indices.contiguous()
    k = indices.shape[1]
    dxs = torch.zeros(num_cols, k, dtype=_acc_dtype(grad_out.dtype), device=grad_out.device)
    if meta.shape[0] and k:
        block_k, block_e = _blocks(k)
        grid = (meta.shape[0], triton.cdiv(k, block_k))
        with device_guard(grad_out):
            _sspmm_bwd_kernel[grid](
                meta, col, weight, grad_out, indices, dxs, k, grad_out.shape[1],
                IDX_MASK=_idx_mask(indices), BLOCK_E=block_e, BLOCK_K=block_k,
            )  # fmt: skip
    return dxs.to(grad_out.dtype)
