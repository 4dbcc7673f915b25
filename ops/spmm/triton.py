"""Triton combined-warp SpMM kernel of Accel-GCN, consuming the block-level partition.

Paper: Accel-GCN (Xie et al., ICCAD 2023, arXiv:2308.11825): degree sorting,
block-level partition, combined warp. ``reference.py`` is the specification, and
``spmm_blocks_reference`` walks the metadata exactly as this kernel does.

One program is one metadata block ``(degree, row_begin, loc_begin, info)`` (``partition.py``),
the paper's thread block of WARPS_PER_BLOCK = 12 warps. Its warps are the rows of a
(WARP_SLOTS, BLOCK_F) register tile: the block's ``n_rows`` rows each take ``f`` consecutive
warps, and warp ``j`` of a row owns that row's nonzeros ``[j·w_nz, (j+1)·w_nz)``. At step
``k`` every warp gathers the feature row X[col] of its k-th nonzero, so the 12 warps keep 12
independent gathers in flight. The feature axis is the vector axis (the combined warp: one
logical warp spans the width, consecutive lanes read consecutive columns, coalesced); widths
over MAX_BLOCK_F loop over feature tiles inside the program. After the steps the ``f``
partial sums of a row are added and the row is written with a plain store to
out[perm[row]] (the caller's order). A row of degree > DEG_BOUND is cut into chunks of at
most 384 nonzeros, one block each, so that block's row sum goes in with ``tl.atomic_add``
into the zeroed output instead.

Accumulation is fp32 for fp32, fp16 and bf16 inputs: the output buffer is fp32 (chunked
rows add into it atomically) and is cast to the input dtype at the end. fp32 atomics make
the summation order of chunked rows nondeterministic on a GPU (equal up to rounding).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ops.dispatch import check_triton_runnable, device_guard

from .partition import DEG_BOUND, WARP_NZ, WARPS_PER_BLOCK, AccelGraph

# rows of the warp tile: WARPS_PER_BLOCK (12) rounded up to a power of two
WARP_SLOTS = triton.next_power_of_2(WARPS_PER_BLOCK)
# widest feature tile a program holds; wider inputs loop over tiles
MAX_BLOCK_F = 128
# tile elements per GPU thread, which sets num_warps
ELEMS_PER_THREAD = 8
MAX_NUM_WARPS = 8

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@triton.jit
def _accel_spmm_kernel(
    meta_ptr,  # *i32, (B, 4) blocks: (degree, row_begin, loc_begin, info), sorted-row order
    perm_ptr,  # *i64, (N,) sorted position → the caller's row id
    col_ptr,  # *i32, (E,) column id of each nonzero of the degree-sorted CSR
    weight_ptr,  # *f32, (E,) edge weight of each nonzero; unread when HAS_WEIGHT is False
    x_ptr,  # *T, (num_cols, width) dense input, row-major contiguous
    out_ptr,  # *f32, (N, width) output, zeroed by the host (zero-degree rows get no block)
    width,  # features per row of x and out
    HAS_WEIGHT: tl.constexpr,  # False: unit edge weights, weight_ptr is a placeholder
    DEG_BOUND: tl.constexpr,  # degrees above this are chunked: info is the chunk's count
    WARP_NZ: tl.constexpr,  # nonzeros per warp of a chunk (32)
    WARP_SLOTS: tl.constexpr,  # rows of the warp tile, a power of two ≥ 12 warps a block
    BLOCK_F: tl.constexpr,  # features per tile, a power of two
):
    block = tl.program_id(0)
    degree = tl.load(meta_ptr + block * 4)
    row_begin = tl.load(meta_ptr + block * 4 + 1)
    loc_begin = tl.load(meta_ptr + block * 4 + 2).to(tl.int64)
    info = tl.load(meta_ptr + block * 4 + 3)
    chunked = degree > DEG_BOUND
    # a chunk of a long row: one row, `info` nonzeros in warps of WARP_NZ
    seg_len = tl.where(chunked, info, degree)  # nonzeros of each row inside this block
    warp_nz = tl.where(chunked, WARP_NZ, info >> 16)
    n_rows = tl.where(chunked, 1, info & 0xFFFF)
    warps_per_row = tl.cdiv(seg_len, warp_nz)

    # the warp tile: slot s holds warp s % f of row s // f of the block
    slots = tl.arange(0, WARP_SLOTS)
    slot_row = slots // warps_per_row
    slot_first = (slots % warps_per_row) * warp_nz  # first nonzero of the warp inside its row
    slot_count = tl.minimum(tl.maximum(seg_len - slot_first, 0), warp_nz)
    slot_count = tl.where(slot_row < n_rows, slot_count, 0)
    slot_loc = loc_begin + slot_row.to(tl.int64) * seg_len + slot_first  # into col / weight

    for f_start in range(0, width, BLOCK_F):
        feats = f_start + tl.arange(0, BLOCK_F)
        feat_mask = feats < width
        partial = tl.zeros((WARP_SLOTS, BLOCK_F), dtype=tl.float32)
        for step in range(0, warp_nz):
            live = step < slot_count
            cols = tl.load(col_ptr + slot_loc + step, mask=live, other=0).to(tl.int64)
            gathered = tl.load(
                x_ptr + cols[:, None] * width + feats[None, :],
                mask=live[:, None] & feat_mask[None, :],
                other=0.0,
            ).to(tl.float32)
            if HAS_WEIGHT:
                w = tl.load(weight_ptr + slot_loc + step, mask=live, other=0.0)
                gathered = gathered * w[:, None]
            partial += gathered
        if chunked:
            # this block's share of one long row; the other chunks add theirs too
            dst = tl.load(perm_ptr + row_begin)
            row_sum = tl.sum(partial, axis=0)
            tl.atomic_add(out_ptr + dst * width + feats, row_sum, mask=feat_mask)
        elif warps_per_row == 1:
            # one warp a row: the tile's rows are the block's rows
            dst = tl.load(perm_ptr + row_begin + slots, mask=slots < n_rows, other=0)
            tl.store(
                out_ptr + dst[:, None] * width + feats[None, :],
                partial,
                mask=(slots < n_rows)[:, None] & feat_mask[None, :],
            )
        else:
            # f warps a row: add each row's f partial sums, then store the finished row
            for r in range(0, n_rows):
                row_sum = tl.sum(tl.where((slot_row == r)[:, None], partial, 0.0), axis=0)
                dst = tl.load(perm_ptr + row_begin + r)
                tl.store(out_ptr + dst * width + feats, row_sum, mask=feat_mask)


def _launch_config(width: int) -> tuple[int, int]:
    """(BLOCK_F, num_warps) for a feature width ≥ 1."""
    block_f = min(triton.next_power_of_2(width), MAX_BLOCK_F)
    num_warps = max(1, min(MAX_NUM_WARPS, WARP_SLOTS * block_f // (32 * ELEMS_PER_THREAD)))
    return block_f, num_warps


def spmm_triton(graph: AccelGraph, x: torch.Tensor) -> torch.Tensor:
    """Y = A · X with the combined-warp kernel, one program per partition block.

    Args:
        graph: the degree-sorted, partitioned adjacency A (``AccelGraph``) on x's device.
        x: dense features, float32, float16 or bfloat16 (bfloat16 on a GPU only).

    Returns:
        Y in x's dtype, rows in the caller's (unsorted) order; accumulated in fp32.

    Shapes:
        x: (graph.num_cols, F), any F ≥ 0; returns (graph.num_rows, F).

    Raises:
        ValueError: x is not 2-D, its row count is not graph.num_cols, or it is on another
            device than the graph.
        RuntimeError / TypeError: from ``check_triton_runnable`` (CPU tensor without the
            interpreter, unsupported dtype).
    """
    graph.check_features(x)
    check_triton_runnable(x, op="accel spmm", dtypes=DTYPES)
    width = x.shape[1]
    out = torch.zeros(graph.num_rows, width, dtype=torch.float32, device=x.device)
    num_blocks = graph.meta.shape[0]
    if num_blocks and width:
        x = x.contiguous()
        has_weight = graph.weight is not None
        block_f, num_warps = _launch_config(width)
        with device_guard(x):
            _accel_spmm_kernel[(num_blocks,)](
                graph.meta, graph.perm, graph.col,
                graph.weight if has_weight else graph.col,
                x, out, width,
                HAS_WEIGHT=has_weight, DEG_BOUND=DEG_BOUND, WARP_NZ=WARP_NZ,
                WARP_SLOTS=WARP_SLOTS, BLOCK_F=block_f, num_warps=num_warps,
            )  # fmt: skip
    return out.to(x.dtype)
