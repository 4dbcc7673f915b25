"""Triton kernels for the reversible LIF node: one fused forward step, one fused backward step.

Paper: "Towards Zero Memory Footprint Spiking Neural Network Training", Lei et al.,
https://arxiv.org/abs/2308.08649. ``reference.py`` is the specification and ``cpu.py`` writes
out the backward sweep. Each time step is one launch over the (B, M) pairs of a group-1
element (offset b·2M + j) and its group-2 partner (offset b·2M + M + j), M = C/2·S; the
host loops over T. The forward kernel reads x_t and the state, writes y_t and the state in
place. The backward kernel reads y_t, dL/dy_t, the state v_t and the carried dL/dv_t,
reconstructs h_t and v_{t−1} from them, applies the surrogate Jacobians of both groups and
writes dL/dx_t, v_{t−1} and dL/dv_{t−1} in place: the node keeps nothing per step. Maths in
fp32 (fp64 for fp64 inputs); inputs must be fp32 or fp64 (the inverse is only as exact as
the stored outputs).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ops.dispatch import check_triton_runnable, device_guard

from .reference import GUARD, leak_coefficients

BLOCK = 1024


@triton.jit
def _guard(h, v_threshold, guard):
    """h within ``guard`` of θ pushed to θ ± guard on its own side (see reference.GUARD)."""
    pushed = tl.where(h >= v_threshold, v_threshold + guard, v_threshold - guard)
    return tl.where(tl.abs(h - v_threshold) < guard, pushed, h)


@triton.jit
def _pair_offsets(n, m, BLOCK: tl.constexpr):
    """This program's (mask, offset of the group-1 element, offset of its group-2 partner)."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    row = i // m
    o1 = row * 2 * m + (i - row * m)
    return i < n, o1, o1 + m


@triton.jit
def _revsnn_fwd_step_kernel(
    x_ptr,  # *T, (B, 2, M) input x_t, contiguous
    y_ptr,  # *T, (B, 2, M) output y_t, contiguous
    v_ptr,  # *T, (B, 2, M) membrane state, read as v_{t−1}, written as v_t
    n,  # B·M element pairs
    m,  # M, elements per group and sample
    c,  # α + θγ, weight of v_{t−1} in the firing potential
    b,  # β = 1/τ, weight of the drive
    v_threshold,  # θ
    gamma,  # γ, weight of v_{t−1} in the output
    guard,  # firing potentials within this of θ are pushed to θ ± guard
    ACC: tl.constexpr,  # compute dtype, tl.float32 or tl.float64
    BLOCK: tl.constexpr,  # element pairs per program, a power of two
):
    mask, o1, o2 = _pair_offsets(n, m, BLOCK)
    x1 = tl.load(x_ptr + o1, mask=mask, other=0).to(ACC)
    x2 = tl.load(x_ptr + o2, mask=mask, other=0).to(ACC)
    v1 = tl.load(v_ptr + o1, mask=mask, other=0).to(ACC)
    v2 = tl.load(v_ptr + o2, mask=mask, other=0).to(ACC)
    h1 = _guard(c * v1 + b * (x1 + x2), v_threshold, guard)
    y1 = tl.where(h1 >= v_threshold, 1.0, 0.0).to(ACC) + gamma * v1
    h2 = _guard(c * v2 + b * (x2 + y1), v_threshold, guard)
    y2 = tl.where(h2 >= v_threshold, 1.0, 0.0).to(ACC) + gamma * v2
    tl.store(y_ptr + o1, y1.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(y_ptr + o2, y2.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(v_ptr + o1, (h1 - v_threshold * y1).to(v_ptr.dtype.element_ty), mask=mask)
    tl.store(v_ptr + o2, (h2 - v_threshold * y2).to(v_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _group_bwd(y, gy, v, gv, a, b, c, v_threshold, gamma, alpha):
    """(dL/dd, dL/dv_{t−1}, v_{t−1}) of one group from its y_t, dL/dy_t, v_t, dL/dv_t."""
    h = v + v_threshold * y
    spike = tl.where(h >= v_threshold, 1.0, 0.0).to(h.dtype)
    sig = 1.0 / (1.0 + tl.exp(-alpha * (h - v_threshold)))
    ghs = (gy - v_threshold * gv) * (alpha * sig * (1.0 - sig))
    return b * (gv + ghs), gamma * gy + a * gv + c * ghs, (y - spike) / gamma


@triton.jit
def _revsnn_bwd_step_kernel(
    y_ptr,  # *T, (B, 2, M) output y_t
    gy_ptr,  # *T, (B, 2, M) upstream gradient dL/dy_t
    gx_ptr,  # *T, (B, 2, M) result dL/dx_t
    v_ptr,  # *T, (B, 2, M) state, read as v_t, written as the reconstructed v_{t−1}
    gv_ptr,  # *T, (B, 2, M) carried dL/dv_t, written as dL/dv_{t−1}
    n,  # B·M element pairs
    m,  # M, elements per group and sample
    a,  # α = 1 − 1/τ, the leak
    b,  # β = 1/τ, weight of the drive
    c,  # α + θγ, weight of v_{t−1} in the firing potential
    v_threshold,  # θ
    gamma,  # γ, weight of v_{t−1} in the output
    alpha,  # slope of the sigmoid surrogate
    ACC: tl.constexpr,  # compute dtype, tl.float32 or tl.float64
    BLOCK: tl.constexpr,  # element pairs per program, a power of two
):
    mask, o1, o2 = _pair_offsets(n, m, BLOCK)
    y1 = tl.load(y_ptr + o1, mask=mask, other=0).to(ACC)
    y2 = tl.load(y_ptr + o2, mask=mask, other=0).to(ACC)
    gy1 = tl.load(gy_ptr + o1, mask=mask, other=0).to(ACC)
    gy2 = tl.load(gy_ptr + o2, mask=mask, other=0).to(ACC)
    v1 = tl.load(v_ptr + o1, mask=mask, other=0).to(ACC)
    v2 = tl.load(v_ptr + o2, mask=mask, other=0).to(ACC)
    gv1 = tl.load(gv_ptr + o1, mask=mask, other=0).to(ACC)
    gv2 = tl.load(gv_ptr + o2, mask=mask, other=0).to(ACC)
    gd2, gv2, v2 = _group_bwd(y2, gy2, v2, gv2, a, b, c, v_threshold, gamma, alpha)
    gd1, gv1, v1 = _group_bwd(y1, gy1 + gd2, v1, gv1, a, b, c, v_threshold, gamma, alpha)
    tl.store(gx_ptr + o1, gd1.to(gx_ptr.dtype.element_ty), mask=mask)
    tl.store(gx_ptr + o2, (gd2 + gd1).to(gx_ptr.dtype.element_ty), mask=mask)
    tl.store(v_ptr + o1, v1.to(v_ptr.dtype.element_ty), mask=mask)
    tl.store(v_ptr + o2, v2.to(v_ptr.dtype.element_ty), mask=mask)
    tl.store(gv_ptr + o1, gv1.to(gv_ptr.dtype.element_ty), mask=mask)
    tl.store(gv_ptr + o2, gv2.to(gv_ptr.dtype.element_ty), mask=mask)


_TL_DTYPE = {torch.float32: tl.float32, torch.float64: tl.float64}


def _launch_shape(x_seq: torch.Tensor) -> tuple[int, int, int, int]:
    """(T, B, M, BLOCK) for a (T, B, C, *S) sequence."""
    steps, batch = x_seq.shape[:2]
    m = x_seq[0].numel() // max(batch, 1) // 2
    return steps, batch, m, min(BLOCK, max(16, triton.next_power_of_2(max(batch * m, 1))))


def revsnn_fwd_triton(
    x_seq: torch.Tensor, tau: float, v_threshold: float, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, B, C, *S) inputs → outputs of the same shape and the final state (B, 2, C/2·S)."""
    check_triton_runnable(x_seq, op="revsnn", dtypes=tuple(_TL_DTYPE))
    steps, batch, m, block = _launch_shape(x_seq)
    x = x_seq.contiguous().view(steps, batch, 2, m)
    y = torch.empty_like(x)
    v = x.new_zeros(batch, 2, m)
    a, b = leak_coefficients(tau)
    n = batch * m
    if n:
        with device_guard(x):
            for t in range(steps):
                _revsnn_fwd_step_kernel[(triton.cdiv(n, block),)](
                    x[t], y[t], v, n, m, a + v_threshold * gamma, b, v_threshold, gamma, GUARD,
                    ACC=_TL_DTYPE[x.dtype], BLOCK=block,
                )  # fmt: skip
    return y.view(x_seq.shape), v


def revsnn_bwd_triton(
    grad_y: torch.Tensor,
    y_seq: torch.Tensor,
    v_final: torch.Tensor,
    tau: float,
    v_threshold: float,
    gamma: float,
    alpha: float,
) -> torch.Tensor:
    """dL/dx_seq from dL/dy_seq, the outputs and the final state, one launch per step."""
    check_triton_runnable(y_seq, op="revsnn", dtypes=tuple(_TL_DTYPE))
    steps, batch, m, block = _launch_shape(y_seq)
    y = y_seq.contiguous().view(steps, batch, 2, m)
    gy = grad_y.to(y.dtype).contiguous().view(steps, batch, 2, m)
    gx = torch.empty_like(y)
    v = v_final.clone().contiguous()
    gv = torch.zeros_like(v)
    a, b = leak_coefficients(tau)
    n = batch * m
    if n:
        with device_guard(y):
            for t in range(steps - 1, -1, -1):
                _revsnn_bwd_step_kernel[(triton.cdiv(n, block),)](
                    y[t], gy[t], gx[t], v, gv, n, m, a, b, a + v_threshold * gamma,
                    v_threshold, gamma, alpha, ACC=_TL_DTYPE[y.dtype], BLOCK=block,
                )  # fmt: skip
    return gx.view(y_seq.shape)
