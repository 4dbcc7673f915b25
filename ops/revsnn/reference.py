"""Reversible LIF node, the specification in plain PyTorch (forward, exact inverse).

Paper: "Towards Zero Memory Footprint Spiking Neural Network Training", Lei et al.,
https://arxiv.org/abs/2308.08649 (no public code; the equations below are designed from its
description, see ``ops/revsnn/__init__.py`` for where they depart from it).

Each time step splits the channels of x_t into two groups (x1, x2) with membrane states
(v1, v2) and runs group 1, then group 2 (α = 1 − 1/τ, β = 1/τ, θ = v_threshold):

    d1 = x1 + x2                       d2 = x2 + y1              (additive coupling)
    h  = (α + θγ)·v + β·d              firing potential of a group
    s  = Θ(h − θ)                      spike; backward σ'(h − θ) (SpikingJelly's Sigmoid)
    y  = s + γ·v                       real-valued output: spike plus γ × previous membrane
    v' = h − θ·y  (= α·v + β·d − θ·s)  LIF charge (decay_input) with soft reset

Inverse, from (y_t, v_t) alone, group 2 first: h = v' + θ·y, s = Θ(h − θ), v = (y − s)/γ,
d = (h − (α + θγ)·v)/β, then x2 = d2 − y1 and x1 = d1 − x2. No step divides by α, so
reconstruction errors do not grow as (1/α)^T over the sequence. Firing potentials within
GUARD of θ are pushed to θ ± GUARD in the forward (``guard_potential``), so the spike
recomputed from a rebuilt potential, off by rounding, matches the forward's. Autograd through
``reversible_lif_reference`` gives the reference gradients; it runs in any float dtype.
"""

from __future__ import annotations

import torch

# Firing potentials closer than this to θ are pushed to θ ± GUARD (same side) in the forward,
# so the spike recomputed from the rebuilt potential (off by rounding, ~1e-6) cannot flip.
GUARD = 2.0**-18


class SigmoidSpike(torch.autograd.Function):
    """Θ(u) forward (1 where u ≥ 0), α·σ(αu)·(1 − σ(αu)) backward (SpikingJelly's Sigmoid)."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.alpha = alpha
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (u,) = ctx.saved_tensors
        sig = torch.sigmoid(ctx.alpha * u)
        return grad * ctx.alpha * sig * (1 - sig), None


def leak_coefficients(tau: float) -> tuple[float, float]:
    """(α, β) = (1 − 1/τ, 1/τ): SpikingJelly's LIF charge H = V + (X − V)/τ."""
    return 1.0 - 1.0 / tau, 1.0 / tau


def group_step(
    d: torch.Tensor,
    v: torch.Tensor,
    tau: float,
    v_threshold: float,
    gamma: float,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One group, one step: (drive d, membrane v) → (output y, new membrane v')."""
    a, b = leak_coefficients(tau)
    h = guard_potential((a + v_threshold * gamma) * v + b * d, v_threshold)
    s = SigmoidSpike.apply(h - v_threshold, alpha)
    y = s + gamma * v
    return y, h - v_threshold * y


def guard_potential(h: torch.Tensor, v_threshold: float) -> torch.Tensor:
    """h with values within GUARD of θ moved to θ ± GUARD; the gradient passes unchanged."""
    near = (h - v_threshold).abs() < GUARD
    pushed = torch.where(h >= v_threshold, v_threshold + GUARD, v_threshold - GUARD)
    return h + (torch.where(near, pushed, h) - h).detach()


def split_groups(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel halves of a (B, C, *S) tensor as views (B, C/2·S) each."""
    halves = t.reshape(t.shape[0], 2, -1)  # (B, 2, M)
    return halves[:, 0], halves[:, 1]


def step_reference(
    x: torch.Tensor,
    v1: torch.Tensor,
    v2: torch.Tensor,
    tau: float,
    v_threshold: float,
    gamma: float,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One time step of both groups: x (B, C, *S), v1 and v2 (B, M) → (y, v1', v2')."""
    x1, x2 = split_groups(x)
    y1, v1 = group_step(x1 + x2, v1, tau, v_threshold, gamma, alpha)
    y2, v2 = group_step(x2 + y1, v2, tau, v_threshold, gamma, alpha)
    return torch.stack((y1, y2), dim=1).reshape(x.shape), v1, v2


def inverse_step_reference(
    y: torch.Tensor,
    v1: torch.Tensor,
    v2: torch.Tensor,
    tau: float,
    v_threshold: float,
    gamma: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y_t, v1_t, v2_t) → (x_t, v1_{t−1}, v2_{t−1}), the exact inverse of ``step_reference``."""
    a, b = leak_coefficients(tau)
    y1, y2 = split_groups(y)

    def group(y_g: torch.Tensor, v_g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = v_g + v_threshold * y_g
        s = (h >= v_threshold).to(h.dtype)
        v_prev = (y_g - s) / gamma
        return (h - (a + v_threshold * gamma) * v_prev) / b, v_prev  # (d, v_{t−1})

    d2, v2 = group(y2, v2)
    x2 = d2 - y1
    d1, v1 = group(y1, v1)
    x1 = d1 - x2
    return torch.stack((x1, x2), dim=1).reshape(y.shape), v1, v2


def check_params(tau: float, v_threshold: float, gamma: float, alpha: float) -> None:
    """Raise unless the node's constants keep it a leaky, invertible integrator."""
    if not tau > 1.0:
        raise ValueError(f"tau={tau}: the leak α = 1 − 1/τ needs τ > 1 (SpikingJelly's default 2)")
    if not v_threshold > 0.0:
        raise ValueError(f"v_threshold={v_threshold}: must be > 0 (e.g. 1.0)")
    if not gamma > 0.0:
        raise ValueError(
            f"gamma={gamma}: the output y = s + γ·v needs γ > 0 to be invertible (e.g. 0.125)"
        )
    if not alpha > 0.0:
        raise ValueError(f"surrogate_alpha={alpha}: must be > 0 (SpikingJelly's Sigmoid uses 4)")


def reversible_lif_reference(
    x_seq: torch.Tensor,
    tau: float = 2.0,
    v_threshold: float = 1.0,
    gamma: float = 0.125,
    alpha: float = 4.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The node over T steps from v = 0, under plain autograd.

    Shapes:
        x_seq (T, B, C, *S) with C even → y_seq (T, B, C, *S), v_T (B, 2, C/2·S)
    """
    check_params(tau, v_threshold, gamma, alpha)
    batch = x_seq.shape[1]
    v1 = x_seq.new_zeros(batch, x_seq[0].numel() // batch // 2)
    v2 = torch.zeros_like(v1)
    ys = []
    for x in x_seq:
        y, v1, v2 = step_reference(x, v1, v2, tau, v_threshold, gamma, alpha)
        ys.append(y)
    return torch.stack(ys), torch.stack((v1, v2), dim=1)


def reversible_lif_inverse_reference(
    y_seq: torch.Tensor,
    v_final: torch.Tensor,
    tau: float = 2.0,
    v_threshold: float = 1.0,
    gamma: float = 0.125,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and initial state from the outputs and the final state.

    Shapes:
        y_seq (T, B, C, *S), v_final (B, 2, C/2·S) → x_seq (T, B, C, *S), v_0 (B, 2, C/2·S)
    """
    v1, v2 = v_final[:, 0], v_final[:, 1]
    xs = []
    for y in reversed(y_seq):
        x, v1, v2 = inverse_step_reference(y, v1, v2, tau, v_threshold, gamma)
        xs.append(x)
    return torch.stack(xs[::-1]), torch.stack((v1, v2), dim=1)
