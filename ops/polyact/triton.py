"""Fused Triton kernels for the HE-friendly gated activation y = g·F(x) + (1 − g)·G(x).

Papers: LinGCN, https://arxiv.org/abs/2309.14331 (node-wise gates and polynomial, F = relu or
poly, G = identity); AutoReP, https://arxiv.org/abs/2308.10134 (per-element mask, F = relu,
G = channel-wise polynomial). ``reference.py`` is the specification.

Layout: x is viewed as (B, S) with S the per-sample numel; the gate and the coefficients are
expanded to S and made contiguous (S is small next to B·S), so column j of every row uses
parameter entry j. A program owns BLOCK_S columns and ``rows_per_program`` consecutive rows:
it loads its parameter tile once, streams the rows, and in the backward keeps the parameter
partials in registers, issuing one fp32 (fp64 for fp64 inputs) ``tl.atomic_add`` per column
and parameter at the end. torch's ``sum_to_size`` then reduces S to each parameter's shape.
Inputs may be fp16, bf16 (CUDA only: the interpreter gets bf16 wrong), fp32 or fp64; maths
is in fp32 (fp64 for fp64). Atomics make the parameter gradients' summation order
nondeterministic on a GPU (equal up to rounding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from ops.dispatch import check_triton_runnable, device_guard

from .cpu import compute_dtype

MIN_BLOCK_S = 16
MAX_BLOCK_S = 1024
# Programs per launch the row split aims at; the interpreter pays ~5 ms per program, and two
# row blocks still exercise the cross-program atomics and the row mask in tests.
INTERPRET_PROGRAMS = 2


@triton.jit
def _polyact_fwd_kernel(
    x_ptr,  # *T, (B, S) contiguous input
    y_ptr,  # *T, (B, S) contiguous output
    g_ptr,  # *G, (S,) gate expanded to the per-sample shape
    w2_ptr,  # *W, (S,) coefficient of s·x²; unused unless HAS_POLY
    w1_ptr,  # *W, (S,) coefficient of x; unused unless HAS_POLY
    w0_ptr,  # *W, (S,) constant term; unused unless HAS_POLY
    B,  # rows (batch size)
    S,  # columns (per-sample numel)
    rows_per_program,  # consecutive rows each program streams
    scale,  # s in P(x) = s·w2·x² + w1·x + w0
    KEEP_POLY: tl.constexpr,  # F = poly (else relu)
    DROP_POLY: tl.constexpr,  # G = poly (else identity)
    HAS_POLY: tl.constexpr,  # KEEP_POLY or DROP_POLY
    ACC: tl.constexpr,  # compute dtype, tl.float32 or tl.float64
    BLOCK_S: tl.constexpr,  # columns per program, a power of two
):
    pid_s = tl.program_id(0)
    pid_b = tl.program_id(1)
    cols = pid_s * BLOCK_S + tl.arange(0, BLOCK_S)
    col_mask = cols < S
    g = tl.load(g_ptr + cols, mask=col_mask, other=0).to(ACC)
    if HAS_POLY:
        a = tl.load(w2_ptr + cols, mask=col_mask, other=0).to(ACC) * scale
        w1 = tl.load(w1_ptr + cols, mask=col_mask, other=0).to(ACC)
        w0 = tl.load(w0_ptr + cols, mask=col_mask, other=0).to(ACC)
    for r in range(rows_per_program):
        row = pid_b * rows_per_program + r
        mask = col_mask & (row < B)
        offs = row.to(tl.int64) * S + cols
        x = tl.load(x_ptr + offs, mask=mask, other=0).to(ACC)
        if HAS_POLY:
            poly = (a * x + w1) * x + w0
        kept = poly if KEEP_POLY else tl.where(x < 0, 0.0, x).to(ACC)
        dropped = poly if DROP_POLY else x
        y = g * kept + (1 - g) * dropped
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _polyact_bwd_kernel(
    dy_ptr,  # *T, (B, S) contiguous upstream gradient
    x_ptr,  # *T, (B, S) contiguous forward input
    dx_ptr,  # *T, (B, S) output dL/dx; unused unless NEED_DX
    g_ptr,  # *G, (S,) gate expanded to the per-sample shape
    w2_ptr,  # *W, (S,) coefficient of s·x²; unused unless HAS_POLY
    w1_ptr,  # *W, (S,) coefficient of x; unused unless HAS_POLY
    w0_ptr,  # *W, (S,) constant term; unused unless HAS_POLY
    dg_ptr,  # *ACC, (S,) zeroed accumulator of dL/dg; unused unless NEED_DG
    dw2_ptr,  # *ACC, (S,) zeroed accumulator of dL/dw2; unused unless NEED_DW2
    dw1_ptr,  # *ACC, (S,) zeroed accumulator of dL/dw1; unused unless NEED_DW1
    dw0_ptr,  # *ACC, (S,) zeroed accumulator of dL/dw0; unused unless NEED_DW0
    B,  # rows (batch size)
    S,  # columns (per-sample numel)
    rows_per_program,  # consecutive rows each program streams and reduces
    scale,  # s in P(x) = s·w2·x² + w1·x + w0
    KEEP_POLY: tl.constexpr,  # F = poly (else relu)
    DROP_POLY: tl.constexpr,  # G = poly (else identity)
    HAS_POLY: tl.constexpr,  # KEEP_POLY or DROP_POLY
    NEED_DX: tl.constexpr,  # write dx
    NEED_DG: tl.constexpr,  # accumulate dg
    NEED_DW2: tl.constexpr,  # accumulate dw2
    NEED_DW1: tl.constexpr,  # accumulate dw1
    NEED_DW0: tl.constexpr,  # accumulate dw0
    ACC: tl.constexpr,  # compute and accumulator dtype, tl.float32 or tl.float64
    BLOCK_S: tl.constexpr,  # columns per program, a power of two
):
    pid_s = tl.program_id(0)
    pid_b = tl.program_id(1)
    cols = pid_s * BLOCK_S + tl.arange(0, BLOCK_S)
    col_mask = cols < S
    g = tl.load(g_ptr + cols, mask=col_mask, other=0).to(ACC)
    if HAS_POLY:
        a = tl.load(w2_ptr + cols, mask=col_mask, other=0).to(ACC) * scale
        w1 = tl.load(w1_ptr + cols, mask=col_mask, other=0).to(ACC)
        w0 = tl.load(w0_ptr + cols, mask=col_mask, other=0).to(ACC)
    # dL/dw_k = Σ dy·c·∂P/∂w_k: c = g when F = poly, 1 − g when G = poly, 1 when both.
    if KEEP_POLY and DROP_POLY:
        c = tl.full((BLOCK_S,), 1.0, ACC)
    elif KEEP_POLY:
        c = g
    else:
        c = 1 - g
    acc_g = tl.zeros((BLOCK_S,), ACC)
    acc_w2 = tl.zeros((BLOCK_S,), ACC)
    acc_w1 = tl.zeros((BLOCK_S,), ACC)
    acc_w0 = tl.zeros((BLOCK_S,), ACC)
    for r in range(rows_per_program):
        row = pid_b * rows_per_program + r
        mask = col_mask & (row < B)
        offs = row.to(tl.int64) * S + cols
        x = tl.load(x_ptr + offs, mask=mask, other=0).to(ACC)
        dy = tl.load(dy_ptr + offs, mask=mask, other=0).to(ACC)
        if HAS_POLY:
            poly = (a * x + w1) * x + w0
            dpoly = 2 * a * x + w1
        if KEEP_POLY:
            kept = poly
            dkept = dpoly
        else:
            kept = tl.where(x < 0, 0.0, x).to(ACC)
            dkept = tl.where(x > 0, 1.0, 0.0).to(ACC)
        if DROP_POLY:
            dropped = poly
            ddropped = dpoly
        else:
            dropped = x
            ddropped = tl.full((BLOCK_S,), 1.0, ACC)
        if NEED_DX:
            dx = dy * (g * dkept + (1 - g) * ddropped)
            tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)
        if NEED_DG:
            acc_g += dy * (kept - dropped)
        if HAS_POLY:
            t = dy * c
            acc_w0 += t
            acc_w1 += t * x
            acc_w2 += t * x * x
    if NEED_DG:
        tl.atomic_add(dg_ptr + cols, acc_g, mask=col_mask)
    if NEED_DW2:
        tl.atomic_add(dw2_ptr + cols, acc_w2 * scale, mask=col_mask)
    if NEED_DW1:
        tl.atomic_add(dw1_ptr + cols, acc_w1, mask=col_mask)
    if NEED_DW0:
        tl.atomic_add(dw0_ptr + cols, acc_w0, mask=col_mask)


_TL_DTYPE = {torch.float32: tl.float32, torch.float64: tl.float64}


def _sample_shape(t: torch.Tensor, sample: Sequence[int]) -> torch.Size:
    """t's shape without the leading batch-position 1 (validated upstream) to broadcast to S."""
    extra = t.dim() - len(sample)
    return t.shape[extra:] if extra > 0 else t.shape


def _expand(t: torch.Tensor | None, sample: Sequence[int]) -> torch.Tensor | None:
    """(S,) contiguous copy of t broadcast to the per-sample shape."""
    if t is None:
        return None
    return t.reshape(_sample_shape(t, sample)).expand(sample).contiguous().view(-1)


def _reduce(acc: torch.Tensor, like: torch.Tensor, sample: Sequence[int]) -> torch.Tensor:
    """(S,) accumulator summed down to ``like``'s shape and cast to its dtype."""
    return acc.view(sample).sum_to_size(_sample_shape(like, sample)).view(like.shape).to(like.dtype)


def _grid(B: int, S: int, device: torch.device) -> tuple[int, int, int]:
    """(BLOCK_S, column blocks, rows per program) for a (B, S) launch."""
    block_s = min(MAX_BLOCK_S, max(MIN_BLOCK_S, triton.next_power_of_2(S)))
    col_blocks = triton.cdiv(S, block_s)
    if device.type == "cuda":
        target = 4 * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        target = INTERPRET_PROGRAMS
    row_blocks = max(1, min(B, target // col_blocks))
    return block_s, col_blocks, triton.cdiv(B, row_blocks)


def polyact_fwd_triton(
    x: torch.Tensor,
    gate: torch.Tensor,
    w2: torch.Tensor | None,
    w1: torch.Tensor | None,
    w0: torch.Tensor | None,
    keep_poly: bool,
    drop_poly: bool,
    scale: float,
) -> torch.Tensor:
    """Forward launch; x (B, *S), parameters broadcastable to S (validated by the caller)."""
    check_triton_runnable(x, op="polyact")
    sample = x.shape[1:]
    B, S = x.shape[0], math.prod(sample)
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    if y.numel() == 0:
        return y
    has_poly = keep_poly or drop_poly
    x2 = x.contiguous()
    g, w2_, w1_, w0_ = (_expand(t, sample) for t in (gate, w2, w1, w0))
    dummy = x2
    block_s, col_blocks, rows = _grid(B, S, x.device)
    with device_guard(x):
        _polyact_fwd_kernel[(col_blocks, triton.cdiv(B, rows))](
            x2,
            y,
            g,
            w2_ if has_poly else dummy,
            w1_ if has_poly else dummy,
            w0_ if has_poly else dummy,
            B,
            S,
            rows,
            float(scale),
            KEEP_POLY=keep_poly,
            DROP_POLY=drop_poly,
            HAS_POLY=has_poly,
            ACC=_TL_DTYPE[compute_dtype(x, gate, w2, w1, w0)],
            BLOCK_S=block_s,
        )
    return y


def polyact_bwd_triton(
    grad_y: torch.Tensor,
    x: torch.Tensor,
    gate: torch.Tensor,
    w2: torch.Tensor | None,
    w1: torch.Tensor | None,
    w0: torch.Tensor | None,
    keep_poly: bool,
    drop_poly: bool,
    scale: float,
    needs: tuple[bool, bool, bool, bool, bool],
) -> tuple[torch.Tensor | None, ...]:
    """Backward launch: (dx, dgate, dw2, dw1, dw0), None where ``needs`` is False."""
    check_triton_runnable(x, op="polyact")
    need_dx, need_dg, need_dw2, need_dw1, need_dw0 = needs
    has_poly = keep_poly or drop_poly
    need_dw2, need_dw1, need_dw0 = (n and has_poly for n in (need_dw2, need_dw1, need_dw0))
    sample = x.shape[1:]
    B, S = x.shape[0], math.prod(sample)
    acc = compute_dtype(x, gate, w2, w1, w0)
    x2 = x.contiguous()
    dy = grad_y.contiguous()
    dx = torch.empty_like(x2) if need_dx else None
    bufs = [
        torch.zeros(max(S, 1), dtype=acc, device=x.device) if need else None
        for need in (need_dg, need_dw2, need_dw1, need_dw0)
    ]
    if x.numel():
        g, w2_, w1_, w0_ = (_expand(t, sample) for t in (gate, w2, w1, w0))
        dummy = x2
        block_s, col_blocks, rows = _grid(B, S, x.device)
        with device_guard(x):
            _polyact_bwd_kernel[(col_blocks, triton.cdiv(B, rows))](
                dy,
                x2,
                dx if need_dx else dummy,
                g,
                *(w if has_poly else dummy for w in (w2_, w1_, w0_)),
                *(b if b is not None else dummy for b in bufs),
                B,
                S,
                rows,
                float(scale),
                KEEP_POLY=keep_poly,
                DROP_POLY=drop_poly,
                HAS_POLY=has_poly,
                NEED_DX=need_dx,
                NEED_DG=need_dg,
                NEED_DW2=need_dw2,
                NEED_DW1=need_dw1,
                NEED_DW0=need_dw0,
                ACC=_TL_DTYPE[acc],
                BLOCK_S=block_s,
            )
    grads = [
        None if buf is None else _reduce(buf[:S], like, sample)
        for buf, like in zip(bufs, (gate, w2, w1, w0), strict=True)
    ]
    if dx is not None:
        dx = dx.view(x.shape)
    return (dx, *grads)
