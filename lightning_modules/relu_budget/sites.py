"""Activation sites whose ReLUs can be removed: plain, AutoReP (masked, polynomial
replacement) and SNL (continuous α, then a binary mask), and the exact ReLU counter.

Every site knows the per-sample shape (C, H, W) it acts on, so the number of ReLUs a private
inference protocol must evaluate is a count over the sites' masks, exact and independent of
any input.

AutoReP (Peng et al., ICCV 2023, arXiv 2308.10134), per element of (C, H, W)::

    m   = hysteresis(aux; t):  a kept ReLU drops only if aux < −t, a dropped one returns
          only if aux > +t;    dL/daux = dL/dm · softplus(aux)  (straight through)
    y   = m·ReLU(x) + (1 − m)·P(x),   P(x) = s·w2·x² + w1·x + w0  (per channel, trained)

During the first ``dapa_steps`` training steps the site tracks its input's per-channel mean
μ and variance v and, every ``dapa_every`` steps, resets P to DaPa's least-squares fit of
ReLU under N(μ, σ²) (``ops.polyact.dapa_coefficients``), σ = sqrt(max(v, var_min)); then P
is learned. ``dapa_rescale`` multiplies the fitted (w0, w1, w2): (1, 1, 1) is the closed form;
the released code effectively uses (0.2, 1, 0.01) and σ = max(v, var_min) (its ``approx``
returns w0/5, w2/10 and its forward scales w2 by s = 0.1 again) — ``dapa_sigma="variance"``
with that rescale reproduces it.

SNL (Cho et al., ICML 2022): y = α·ReLU(x) + (1 − α)·x with α per element (init 1), an L1
penalty on α pushes it to 0; ``binarize`` fixes the mask α > threshold (1e-2).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from effml.checks import check_choice, check_int, check_range, with_defaults
from effml.errors import ConfigError
from lightning_modules.base import check_op_backend
from ops.polyact import PolyAct, dapa_coefficients, poly_act, ste_gate

Shape = tuple[int, int, int]
DAPA_SIGMAS = ("std", "variance")


class ReluSite(nn.Module):
    """A plain ReLU that knows its per-sample shape (every element is one ReLU)."""

    def __init__(self, shape: Shape) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def kept_mask(self) -> torch.Tensor:
        return torch.ones(self.shape, dtype=torch.bool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class AutoRepSite(nn.Module):
    """AutoReP's masked site; ``mask`` (a buffer, 1 = ReLU kept) is the hysteresis state."""

    def __init__(
        self,
        shape: Shape,
        scale: float = 0.1,
        threshold: float = 0.003,
        dapa_steps: int = 500,
        dapa_every: int = 10,
        var_min: float = 0.5,
        dapa_sigma: str = "std",
        dapa_rescale: tuple[float, float, float] = (1.0, 1.0, 1.0),
        momentum: float = 0.1,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        self.check_config(
            {
                "scale": scale,
                "threshold": threshold,
                "dapa_steps": dapa_steps,
                "dapa_every": dapa_every,
                "var_min": var_min,
                "dapa_sigma": dapa_sigma,
                "dapa_rescale": dapa_rescale,
                "momentum": momentum,
                "backend": backend,
            }
        )
        self.shape = tuple(shape)
        channels = self.shape[0]
        self.threshold, self.dapa_steps, self.dapa_every = threshold, dapa_steps, dapa_every
        self.var_min, self.dapa_sigma, self.momentum = var_min, dapa_sigma, momentum
        self.dapa_rescale = tuple(float(v) for v in dapa_rescale)
        self.aux = nn.Parameter(torch.rand(self.shape))  # U(0, 1)
        self.register_buffer("mask", torch.ones(self.shape))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.poly = PolyAct(
            (channels, 1, 1), keep="relu", drop="poly", scale=scale, init="autorep", backend=backend
        )
        self.last_gate: torch.Tensor | None = None

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """Hysteresis threshold >= 0; scale, var_min > 0; DaPa's steps >= 0, refresh period
        >= 1, sigma choice and three rescale factors; momentum in (0, 1]; a known backend."""
        cfg = with_defaults(cls, cfg)
        check_range(cfg, "threshold", 0.0, None, example=0.003)
        check_range(cfg, "scale", 0.0, None, low_open=True, example=0.1)
        check_range(cfg, "var_min", 0.0, None, low_open=True, example=0.5)
        check_int(cfg, "dapa_steps", minimum=0, example=500)
        check_int(cfg, "dapa_every", minimum=1, example=10)
        check_choice(cfg, "dapa_sigma", DAPA_SIGMAS)
        check_range(cfg, "momentum", 0.0, 1.0, low_open=True, example=0.1)
        check_op_backend(cfg)
        rescale = cfg["dapa_rescale"]
        if len(rescale) != 3 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in rescale
        ):
            problem = "must be three factors of the fitted (w0, w1, w2)"
            raise ConfigError("dapa_rescale", list(rescale), problem, example=[1.0, 1.0, 1.0])

    def gate(self) -> torch.Tensor:
        """The 0/1 mask from aux and the previous mask (straight-through to aux)."""
        return ste_gate(self.aux, self.mask, self.threshold)

    def kept_mask(self) -> torch.Tensor:
        return self.mask.detach().cpu() > 0

    @torch.no_grad()
    def _track(self, x: torch.Tensor) -> None:
        if int(self.steps) >= self.dapa_steps:
            return
        dims = [d for d in range(x.dim()) if d != 1]
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        first = int(self.steps) == 0
        m = 1.0 if first else self.momentum
        self.running_mean.lerp_(mean, m)
        self.running_var.lerp_(var, m)
        self.steps += 1
        if first or int(self.steps) % self.dapa_every == 0:
            self.refresh_dapa()

    @torch.no_grad()
    def refresh_dapa(self) -> None:
        """Set P to DaPa's fit of ReLU under the tracked input statistics, per channel."""
        var = self.running_var.clamp(min=self.var_min)
        sigma = var.sqrt() if self.dapa_sigma == "std" else var
        w0, w1, w2 = dapa_coefficients(self.running_mean, sigma)
        r0, r1, r2 = self.dapa_rescale
        view = (-1, 1, 1)
        self.poly.set_coefficients(
            (r2 * w2 / self.poly.scale).view(view), (r1 * w1).view(view), (r0 * w0).view(view)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.gate()
        if self.training:
            self.mask.copy_(gate.detach())
            self._track(x)
        self.last_gate = gate
        return self.poly(x, gate)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, threshold={self.threshold}"


class SnlSite(nn.Module):
    """SNL's site: continuous α until ``binarize``, then a fixed 0/1 mask."""

    def __init__(self, shape: Shape, backend: str | None = None) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.alpha = nn.Parameter(torch.ones(self.shape))
        self.register_buffer("mask", torch.ones(self.shape))
        self.register_buffer("binary", torch.zeros((), dtype=torch.bool))
        self.backend = backend

    @torch.no_grad()
    def binarize(self, threshold: float) -> None:
        """Fix the mask α > threshold; α stops training."""
        self.mask.copy_((self.alpha > threshold).to(self.mask.dtype))
        self.binary.fill_(True)
        self.alpha.requires_grad_(False)

    def kept_mask(self, threshold: float = 1e-2) -> torch.Tensor:
        if bool(self.binary):
            return self.mask.detach().cpu() > 0
        return self.alpha.detach().cpu() > threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.mask if bool(self.binary) else self.alpha
        return poly_act(x, gate, keep="relu", drop="identity", backend=self.backend)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, binary={bool(self.binary)}"


SITE_TYPES = (ReluSite, AutoRepSite, SnlSite)


def sites(net: nn.Module) -> Iterator[nn.Module]:
    """The activation sites of ``net`` in forward-construction order."""
    return (m for m in net.modules() if isinstance(m, SITE_TYPES))


def relu_count(net: nn.Module) -> tuple[int, int]:
    """(kept ReLUs, total sites' elements): per-sample counts, exact, from the masks."""
    kept = total = 0
    for site in sites(net):
        kept += int(site.kept_mask().sum())
        total += math.prod(site.shape)
    return kept, total


def export_mask(net: nn.Module) -> dict[str, torch.Tensor]:
    """Module name → the site's boolean keep mask (C, H, W), for saving next to the weights."""
    return {
        name: module.kept_mask().clone()
        for name, module in net.named_modules()
        if isinstance(module, SITE_TYPES)
    }
