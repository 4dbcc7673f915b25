"""Fast CPU path of the gated activation: vectorised torch, hand-written backward.

Same maths as ``reference.py`` but without an autograd graph: the forward keeps nothing but
its inputs, the backward recomputes F, G and their derivatives in one sweep and reduces the
parameter partials with ``sum_to_size``. Half-precision inputs are computed in float32.
Plain torch on purpose: under ``torch.compile`` inductor fuses each function into one loop
(``scripts/bench_polyact.py`` measures eager and compiled against the autograd reference).
"""

from __future__ import annotations

import torch


def compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """float64 when any input is float64, else float32 (fp16/bf16 are computed in fp32)."""
    return (
        torch.float64
        if any(t is not None and t.dtype == torch.float64 for t in tensors)
        else torch.float32
    )


def _cast(t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if t is None else t.to(dtype)


def _poly(x: torch.Tensor, a: torch.Tensor, w1: torch.Tensor, w0: torch.Tensor) -> torch.Tensor:
    """(a·x + w1)·x + w0 with a = s·w2, in one fresh (B, *S) tensor."""
    return torch.addcmul(w1, a, x).mul_(x).add_(w0)


def polyact_fwd_cpu(
    x: torch.Tensor,
    gate: torch.Tensor,
    w2: torch.Tensor | None,
    w1: torch.Tensor | None,
    w0: torch.Tensor | None,
    keep_poly: bool,
    drop_poly: bool,
    scale: float,
) -> torch.Tensor:
    """y = G(x) + g·(F(x) − G(x)), parameters broadcast against x; y has x's dtype."""
    acc = compute_dtype(x, gate, w2, w1, w0)
    x_, g = x.to(acc), gate.to(acc)
    if not keep_poly and not drop_poly:  # x + g·(relu(x) − x) = x − g·min(x, 0)
        m = x_.clamp(max=0)
        return torch.addcmul(x_, g, m, value=-1, out=m).to(x.dtype)
    poly = _poly(x_, scale * w2.to(acc), w1.to(acc), w0.to(acc))
    if keep_poly and drop_poly:
        return poly.to(x.dtype)
    if keep_poly:  # x + g·(P − x)
        return torch.addcmul(x_, g, poly.sub_(x_), out=poly).to(x.dtype)
    diff = torch.relu(x_).sub_(poly)  # P + g·(relu − P)
    return torch.addcmul(poly, g, diff, out=poly).to(x.dtype)


def polyact_bwd_cpu(
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
    """Gradients (dx, dgate, dw2, dw1, dw0); an entry is None where ``needs`` says so.

    dx = dy·(g·F'(x) + (1 − g)·G'(x)),  dg = Σ dy·(F(x) − G(x)),
    dw_k = Σ dy·c·∂P/∂w_k with c = g (F = poly), 1 − g (G = poly) or 1 (both),
    sums over the broadcast dimensions of each parameter (batch included). Only what a
    requested gradient needs is computed; temporaries are reused in place (never x or dy).
    """
    need_dx, need_dg, need_dw2, need_dw1, need_dw0 = needs
    acc = compute_dtype(x, gate, w2, w1, w0)
    x_, g, dy = x.to(acc), gate.to(acc), grad_y.to(acc)
    has_poly = keep_poly or drop_poly
    if has_poly:
        a, w1_, w0_ = scale * w2.to(acc), w1.to(acc), w0.to(acc)

    dx = dg = dw2 = dw1 = dw0 = None
    if need_dx:
        if has_poly:
            dpoly = torch.addcmul(w1_, 2 * a, x_)
        if keep_poly and drop_poly:
            deriv = dpoly
        elif keep_poly:  # 1 + g·(P' − 1)
            deriv = torch.addcmul(1 - g, g, dpoly, out=dpoly)
        elif drop_poly:  # P' + g·(relu' − P')
            deriv = torch.addcmul(dpoly, g, (x_ > 0).to(acc).sub_(dpoly), out=dpoly)
        else:  # 1 − g·[x ≤ 0]
            deriv = torch.where(x_ > 0, 1.0, 1 - g)
        dx = deriv.mul_(dy).to(x.dtype)
    if need_dg:
        if keep_poly and drop_poly:
            diff = torch.zeros_like(x_)
        elif keep_poly:
            diff = _poly(x_, a, w1_, w0_).sub_(x_)
        elif drop_poly:
            diff = torch.relu(x_).sub_(_poly(x_, a, w1_, w0_))
        else:
            diff = x_.clamp(max=0).neg_()
        dg = diff.mul_(dy).sum_to_size(gate.shape).to(gate.dtype)
    if has_poly and (need_dw2 or need_dw1 or need_dw0):
        t = dy if keep_poly and drop_poly else dy * (g if keep_poly else 1 - g)
        if need_dw0:
            dw0 = t.sum_to_size(w0.shape).to(w0.dtype)
        if need_dw1 or need_dw2:
            tx = dy * x_ if t is dy else t.mul_(x_)
            if need_dw1:
                dw1 = tx.sum_to_size(w1.shape).to(w1.dtype)
            if need_dw2:
                dw2 = (scale * tx.mul_(x_).sum_to_size(w2.shape)).to(w2.dtype)
    return dx, dg, dw2, dw1, dw0
