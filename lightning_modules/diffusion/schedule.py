"""Variance-preserving noise schedules (DDPM, arXiv:2006.11239; cosine: arXiv:2102.09672).

A schedule is the table of ``alpha_bar[t] = prod_{s<=t} (1 - beta_s)`` for ``t = 0..T-1``;
``q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)`` (arXiv:2006.11239 eq. 4).
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("linear", "cosine")


class VPSchedule:
    """``betas``, ``alphas_cumprod`` (float64) of a linear or cosine VP schedule.

    Args:
        kind: ``linear`` (betas from ``beta_start`` to ``beta_end``, arXiv:2006.11239 §4) or
            ``cosine`` (arXiv:2102.09672 eq. 17, betas clipped at 0.999).
        num_steps: T, the training timesteps.
    """

    def __init__(
        self,
        kind: str = "linear",
        num_steps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ) -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"schedule={kind!r}: choose one of {list(SCHEDULES)}")
        self.kind = kind
        self.num_steps = num_steps
        if kind == "linear":
            betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
        else:
            s = 0.008
            steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
            f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1 - betas, dim=0)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """``alpha_bar`` at integer timesteps ``t`` (any shape), float32 on ``t``'s device."""
        return self.alphas_cumprod.to(t.device)[t].float()

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise``; ``t`` is ``(B,)``."""
        a = self.alpha_bar(t).view(-1, *([1] * (x0.dim() - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * noise
