"""Reversible LIF node in vectorised torch with the hand-written one-sweep backward.

The same equations as ``reference.py`` (α = 1 − 1/τ, β = 1/τ, θ = v_threshold, σ' the
sigmoid surrogate with slope ``alpha``); no autograd graph is built. Plain torch, so it runs on
any device. Per step and group, the backward sweep is (group 2 first, g· are gradients):

    h = v' + θ·y,  s = Θ(h − θ)                          reconstruct the firing potential
    g_hs = (g_y − θ·g_v')·σ'(h − θ)                      through the spike
    g_d = β·(g_v' + g_hs)                                to the drive d
    g_v = γ·g_y + α·g_v' + (α + θγ)·g_hs                 to the previous membrane
    v = (y − s)/γ                                        reconstruct the previous membrane

with g_y1 += g_d2 (d2 = x2 + y1), g_x1 = g_d1 and g_x2 = g_d2 + g_d1 (d1 = x1 + x2).
The inputs x_t are never needed by these Jacobians, so the sweep does not materialise them.
"""

from __future__ import annotations

import torch

from .reference import GUARD, leak_coefficients


def _surrogate(u: torch.Tensor, alpha: float) -> torch.Tensor:
    sig = torch.sigmoid(alpha * u)
    return alpha * sig * (1 - sig)


def revsnn_fwd_cpu(
    x_seq: torch.Tensor, tau: float, v_threshold: float, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, B, C, *S) inputs → outputs of the same shape and the final state (B, 2, C/2·S)."""
    a, b = leak_coefficients(tau)
    c = a + v_threshold * gamma
    steps, batch = x_seq.shape[:2]
    x_all = x_seq.reshape(steps, batch, 2, -1)  # (T, B, 2, M)
    y_all = torch.empty_like(x_all)
    v = x_all.new_zeros(x_all.shape[1:])  # (B, 2, M)

    def group(drive: torch.Tensor, g: int) -> torch.Tensor:
        v_g = v[:, g]
        h = c * v_g + b * drive
        pushed = torch.where(h >= v_threshold, v_threshold + GUARD, v_threshold - GUARD)
        h = torch.where((h - v_threshold).abs() < GUARD, pushed, h)
        y = (h >= v_threshold).to(h.dtype).add_(v_g, alpha=gamma)
        v[:, g] = h - v_threshold * y
        return y

    for t in range(steps):
        x1, x2 = x_all[t, :, 0], x_all[t, :, 1]
        y1 = group(x1 + x2, 0)
        y_all[t, :, 0] = y1
        y_all[t, :, 1] = group(x2 + y1, 1)
    return y_all.view(x_seq.shape), v


def revsnn_bwd_cpu(
    grad_y: torch.Tensor,
    y_seq: torch.Tensor,
    v_final: torch.Tensor,
    tau: float,
    v_threshold: float,
    gamma: float,
    alpha: float,
) -> torch.Tensor:
    """dL/dx_seq from dL/dy_seq, the outputs and the final state, in one reverse sweep."""
    a, b = leak_coefficients(tau)
    c = a + v_threshold * gamma
    steps, batch = y_seq.shape[:2]
    y_all = y_seq.reshape(steps, batch, 2, -1)  # (T, B, 2, M)
    gy_all = grad_y.reshape(steps, batch, 2, -1)
    gx_all = torch.empty_like(y_all)
    v = v_final.clone()  # (B, 2, M), walked back to v_0
    gv = torch.zeros_like(v)
    for t in range(steps - 1, -1, -1):
        gd = [None, None]
        for g in (1, 0):
            y, v_g, gv_g = y_all[t, :, g], v[:, g], gv[:, g]
            gy = gy_all[t, :, g] if g == 1 else gy_all[t, :, 0] + gd[1]
            h = v_g + v_threshold * y
            spike = (h >= v_threshold).to(h.dtype)
            ghs = (gy - v_threshold * gv_g) * _surrogate(h - v_threshold, alpha)
            gd[g] = b * (gv_g + ghs)
            gv[:, g] = gamma * gy + a * gv_g + c * ghs
            v[:, g] = (y - spike) / gamma
        gx_all[t, :, 0] = gd[0]
        gx_all[t, :, 1] = gd[1] + gd[0]
    return gx_all.view(y_seq.shape)
