"""DaPa: least-squares quadratic fit of ReLU under x ~ N(μ, σ²) (AutoReP, arXiv 2308.10134).

With z = μ/σ and φ, Φ the standard normal density and distribution,

    w2 = φ(z)/(2σ),   w1 = Φ(z) − z·φ(z),   w0 = φ(z)·(μ² + σ²)/(2σ)

minimises E[(ReLU(x) − (w2·x² + w1·x + w0))²]. Derivation: x = μ + σu, u ~ N(0, 1);
projecting ReLU(x) = σ·ReLU(u + z) on the Hermite polynomials 1, u, u² − 1 gives the
coefficients E[·] = σ(φ + zΦ), E[·u] = σΦ, E[·(u² − 1)]/2 = σφ/2 (Stein's lemma), and
the residual is the expected squared error returned by ``dapa_mse``.
"""

from __future__ import annotations

import math

import torch

Number = float | torch.Tensor


def _normal_pdf_cdf(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi), torch.special.ndtr(z)


def _as_tensors(mu: Number, sigma: Number) -> tuple[torch.Tensor, torch.Tensor, bool]:
    scalar = not isinstance(mu, torch.Tensor) and not isinstance(sigma, torch.Tensor)
    mu_t, sigma_t = torch.as_tensor(mu), torch.as_tensor(sigma)
    dtype = torch.promote_types(torch.promote_types(mu_t.dtype, sigma_t.dtype), torch.float32)
    if scalar:
        dtype = torch.float64
    mu_t, sigma_t = mu_t.to(dtype), sigma_t.to(dtype)
    if bool((sigma_t <= 0).any()):
        raise ValueError("sigma must be > 0 (a standard deviation; take sqrt of a variance)")
    return mu_t, sigma_t, scalar


def dapa_coefficients(mu: Number, sigma: Number) -> tuple[Number, Number, Number]:
    """(w0, w1, w2), ascending powers, of the least-squares quadratic fit of ReLU under N(μ, σ²).

    The order is AutoReP's (arXiv 2308.10134): ``dapa_coefficients(0.5, 1)`` is
    (0.22004, 0.51543, 0.17603). Floats in, floats out; tensors broadcast (e.g. per channel
    from BatchNorm statistics).
    """
    mu_t, sigma_t, scalar = _as_tensors(mu, sigma)
    z = mu_t / sigma_t
    pdf, cdf = _normal_pdf_cdf(z)
    w2 = pdf / (2 * sigma_t)
    w1 = cdf - z * pdf
    w0 = pdf * (mu_t**2 + sigma_t**2) / (2 * sigma_t)
    if scalar:
        return float(w0), float(w1), float(w2)
    return w0, w1, w2


def dapa_mse(mu: Number, sigma: Number) -> Number:
    """Expected squared error of the DaPa fit, closed form; 1/4 − 3/(4π) at (0, 1).

    E[ReLU(x)²] = σ²((1 + z²)Φ + zφ) minus the energy of the projection
    σ²((φ + zΦ)² + Φ² + φ²/2) on the orthogonal basis 1, u, u² − 1 (norms 1, 1, 2).
    """
    mu_t, sigma_t, scalar = _as_tensors(mu, sigma)
    z = mu_t / sigma_t
    pdf, cdf = _normal_pdf_cdf(z)
    second_moment = (1 + z * z) * cdf + z * pdf
    projected = (pdf + z * cdf) ** 2 + cdf**2 + pdf**2 / 2
    mse = sigma_t**2 * (second_moment - projected)
    return float(mse) if scalar else mse
