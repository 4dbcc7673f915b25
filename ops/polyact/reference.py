"""HE-friendly gated activation, the specification in plain PyTorch.

    y = g · F(x) + (1 − g) · G(x),    F ∈ {relu, poly},  G ∈ {identity, poly}
    poly: P(x) = s · w2 · x² + w1 · x + w0

LinGCN (arXiv 2309.14331) uses F = relu, G = identity while it learns which ReLUs to drop
(stage 2), then F = poly, G = identity with node-wise coefficients (stage 3); AutoReP
(arXiv 2308.10134) uses F = relu, G = poly with channel-wise coefficients. Autograd through
this function gives the reference gradients; it runs in any float dtype, float64 included.
"""

from __future__ import annotations

import torch

KEEP_CHOICES = ("relu", "poly")
DROP_CHOICES = ("identity", "poly")


def poly_reference(
    x: torch.Tensor, w2: torch.Tensor, w1: torch.Tensor, w0: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """P(x) = s·w2·x² + w1·x + w0 (LinGCN writes it x·(s·w2·x + w1) + b)."""
    return scale * w2 * x**2 + w1 * x + w0


def poly_act_reference(
    x: torch.Tensor,
    gate: torch.Tensor | None,
    w2: torch.Tensor | None = None,
    w1: torch.Tensor | None = None,
    w0: torch.Tensor | None = None,
    *,
    keep: str = "relu",
    drop: str = "identity",
    scale: float = 1.0,
) -> torch.Tensor:
    """y = g·F(x) + (1 − g)·G(x) with torch broadcasting; the result has x's dtype.

    Args:
        x: input of shape (B, *S).
        gate: g, broadcastable to S (e.g. (1, 1, V) node-wise, (C, H, W) per element);
            None means g = 1 (every site keeps F).
        w2, w1, w0: polynomial coefficients broadcastable to S; needed when keep or drop
            is "poly".
        keep: F, "relu" or "poly".
        drop: G, "identity" or "poly".
        scale: s in P(x).
    """
    if keep not in KEEP_CHOICES or drop not in DROP_CHOICES:
        raise ValueError(
            f"keep={keep!r} drop={drop!r}: keep ∈ {KEEP_CHOICES}, drop ∈ {DROP_CHOICES}"
        )
    if "poly" in (keep, drop):
        poly = poly_reference(x, w2, w1, w0, scale)
    kept = poly if keep == "poly" else torch.relu(x)
    dropped = poly if drop == "poly" else x
    if gate is None:
        return kept.to(x.dtype)
    return (gate * kept + (1 - gate) * dropped).to(x.dtype)
