"""Samplers over a timestep subsequence: DDPM ancestral and DDIM (arXiv:2010.02502 eq. 12;
DDIM with ``eta = 0`` is the first-order solver of the probability-flow ODE, eq. 14, and
``eta = 1`` is DDPM's ancestral step on the subsequence, arXiv:2006.11239 eqs. 6-7), and
DPM-Solver-2 (arXiv:2206.00927 Alg. 1), a second-order solver of the same ODE: two denoiser
calls per step, the second at the timestep whose half-log-SNR lies midway.

A denoiser is any callable ``(x_t, t) -> (eps, exit_layer)``: the noise prediction ``(B, C, H,
W)`` and, per sample, how many blocks produced it ``(B,)`` (the full depth for a plain model).
Every run records ``exit_layers`` ``(steps, B)`` so early exit can be read step by step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lightning_modules.diffusion.schedule import VPSchedule

SAMPLERS = ("ddpm", "ddim", "dpm2")
Denoiser = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class SampleResult:
    """Samples in [-1, 1] ``(B, C, H, W)``, the timesteps the denoiser ran at ``(calls,)``
    (noisiest first; one a step, two a step for ``dpm2``), the blocks each sample ran at each
    call ``(calls, B)`` and the wall time."""

    images: torch.Tensor
    timesteps: torch.Tensor
    exit_layers: torch.Tensor
    wall_s: float


def timestep_subsequence(num_train_steps: int, steps: int) -> torch.Tensor:
    """``steps`` evenly spaced training timesteps from ``T - 1`` down to 0."""
    if not 1 <= steps <= num_train_steps:
        raise ValueError(f"steps={steps} must be in [1, {num_train_steps}] (the schedule's T)")
    return torch.linspace(num_train_steps - 1, 0, steps).round().long()


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    schedule: VPSchedule,
    shape: tuple[int, ...],
    steps: int = 50,
    method: str = "ddim",
    seed: int = 0,
    device: torch.device | str = "cpu",
    clip_denoised: bool = True,
) -> SampleResult:
    """Draw ``shape[0]`` samples; the same ``seed`` gives the same noise, hence the same
    samples from the same denoiser.

    Args:
        denoiser: ``(x_t, t) -> (eps, exit_layer)``.
        schedule: the VP schedule the denoiser was trained on.
        shape: ``(B, C, H, W)``.
        steps: sampling steps (a subsequence of the schedule's timesteps).
        method: ``ddpm`` (ancestral, eta = 1), ``ddim`` (deterministic, eta = 0) or
            ``dpm2`` (DPM-Solver-2, deterministic; ``steps`` steps of two calls each).
        seed: seeds the initial noise and, for ``ddpm``, every step's noise.
        clip_denoised: clip the predicted ``x_0`` to [-1, 1] at each step.
    """
    if method not in SAMPLERS:
        raise ValueError(f"sampler={method!r}: choose one of {list(SAMPLERS)}")
    eta = 1.0 if method == "ddpm" else 0.0
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(shape, generator=gen, device=device)
    ts = timestep_subsequence(schedule.num_steps, steps)
    if method == "dpm2":
        return _dpm_solver_2(denoiser, schedule, x, ts, clip_denoised)
    abar = schedule.alphas_cumprod
    exits = []
    start = time.perf_counter()
    for k, t in enumerate(ts.tolist()):
        a = float(abar[t])
        a_prev = float(abar[ts[k + 1]]) if k + 1 < len(ts) else 1.0
        eps, exit_layer = denoiser(x, torch.full((shape[0],), t, device=device, dtype=torch.long))
        exits.append(exit_layer.cpu())
        x0 = (x - (1 - a) ** 0.5 * eps) / a**0.5
        if clip_denoised:
            x0 = x0.clamp(-1, 1)
            eps = (x - a**0.5 * x0) / (1 - a) ** 0.5
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)) ** 0.5
        x = a_prev**0.5 * x0 + max(1 - a_prev - sigma**2, 0.0) ** 0.5 * eps
        if sigma > 0:
            x = x + sigma * torch.randn(shape, generator=gen, device=device)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    wall = time.perf_counter() - start
    return SampleResult(x.clamp(-1, 1), ts, torch.stack(exits), wall)


def _dpm_solver_2(
    denoiser: Denoiser,
    schedule: VPSchedule,
    x: torch.Tensor,
    ts: torch.Tensor,
    clip_denoised: bool,
) -> SampleResult:
    """DPM-Solver-2 (arXiv:2206.00927 Alg. 1, noise prediction) from ``x`` at ``ts[0]`` through
    ``ts`` to 0, then the predicted ``x_0``. With α = √ᾱ, σ = √(1 − ᾱ), λ = log(α/σ), a step
    from s to t (h = λ_t − λ_s) calls the denoiser at s and at the training timestep s₁ nearest
    to λ_s + h/2 (r = (λ_{s₁} − λ_s)/h):
    ``u = (α_{s₁}/α_s) x − σ_{s₁}(e^{rh} − 1) ε_s`` and
    ``x_t = (α_t/α_s) x − σ_t(e^h − 1) ε_s − σ_t(e^h − 1)/(2r) (ε(u, s₁) − ε_s)``."""
    abar = schedule.alphas_cumprod
    lam_table = 0.5 * (abar.log() - (1 - abar).log())  # decreasing in t
    b = x.shape[0]

    def coef(t: int) -> tuple[float, float, float]:
        a = float(abar[t])
        return a**0.5, (1 - a) ** 0.5, float(lam_table[t])

    def call(z: torch.Tensor, t: int) -> torch.Tensor:
        eps, exit_layer = denoiser(z, torch.full((b,), t, device=z.device, dtype=torch.long))
        exits.append(exit_layer.cpu())
        visited.append(t)
        return eps

    exits: list[torch.Tensor] = []
    visited: list[int] = []
    start = time.perf_counter()
    steps = ts.tolist()
    for s, t in zip(steps[:-1], steps[1:], strict=True):
        a_s, sig_s, lam_s = coef(s)
        a_t, sig_t, lam_t = coef(t)
        h = lam_t - lam_s
        mid = int(torch.argmin((lam_table - (lam_s + h / 2)).abs()))
        eps_s = call(x, s)
        if mid in (s, t):  # the midpoint falls on an end: a DDIM (DPM-Solver-1) step
            x = a_t / a_s * x - sig_t * math.expm1(h) * eps_s
            continue
        a_m, sig_m, lam_m = coef(mid)
        r = (lam_m - lam_s) / h
        u = a_m / a_s * x - sig_m * math.expm1(r * h) * eps_s
        eps_m = call(u, mid)
        x = a_t / a_s * x - sig_t * math.expm1(h) * eps_s
        x = x - sig_t * math.expm1(h) / (2 * r) * (eps_m - eps_s)
    a_0, sig_0, _ = coef(steps[-1])
    x0 = (x - sig_0 * call(x, steps[-1])) / a_0
    if clip_denoised:
        x0 = x0.clamp(-1, 1)
    if x0.device.type == "cuda":
        torch.cuda.synchronize(x0.device)
    wall = time.perf_counter() - start
    return SampleResult(x0.clamp(-1, 1), torch.tensor(visited), torch.stack(exits), wall)
