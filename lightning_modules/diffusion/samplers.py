"""Samplers over a timestep subsequence: DDPM ancestral and DDIM (arXiv:2010.02502 eq. 12;
DDIM with ``eta = 0`` is the first-order solver of the probability-flow ODE, eq. 14, and
``eta = 1`` is DDPM's ancestral step on the subsequence, arXiv:2006.11239 eqs. 6-7).

A denoiser is any callable ``(x_t, t) -> (eps, exit_layer)``: the noise prediction ``(B, C, H,
W)`` and, per sample, how many blocks produced it ``(B,)`` (the full depth for a plain model).
Every run records ``exit_layers`` ``(steps, B)`` so early exit can be read step by step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lightning_modules.diffusion.schedule import VPSchedule

SAMPLERS = ("ddpm", "ddim")
Denoiser = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class SampleResult:
    """Samples in [-1, 1] ``(B, C, H, W)``, the timesteps visited ``(steps,)`` (noisiest
    first), the blocks each sample ran at each step ``(steps, B)`` and the wall time."""

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
        method: ``ddpm`` (ancestral, eta = 1) or ``ddim`` (deterministic, eta = 0).
        seed: seeds the initial noise and, for ``ddpm``, every step's noise.
        clip_denoised: clip the predicted ``x_0`` to [-1, 1] at each step.
    """
    if method not in SAMPLERS:
        raise ValueError(f"sampler={method!r}: choose one of {list(SAMPLERS)}")
    eta = 1.0 if method == "ddpm" else 0.0
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(shape, generator=gen, device=device)
    ts = timestep_subsequence(schedule.num_steps, steps)
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
