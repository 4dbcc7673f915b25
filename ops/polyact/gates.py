"""Straight-through gates that decide where the gated activation keeps its nonlinearity.

LinGCN (https://arxiv.org/abs/2309.14331) pairs the two ReLU sites of an ST-GCN block: with
aux of shape (2, V), each node's column is sorted descending, each sorted row is summed over
the nodes, a sorted row is kept (gate 1) when its sum is > 0, and the kept/dropped rows are
un-sorted back to the sites. Every node then keeps the same number of nonlinearities (0, 1 or
2; the ciphertext levels stay aligned) at positions of its own. Both gates here are
straight-through with dL/daux = dL/dgate · softplus(aux), as in LinGCN and AutoReP
(https://arxiv.org/abs/2308.10134).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class PairedGateFunction(torch.autograd.Function):
    """LinGCN's structural gate: aux (*, K, V) → gates (*, K, V) in {0, 1} (K = 2 per block)."""

    @staticmethod
    def forward(ctx, aux: torch.Tensor) -> torch.Tensor:
        order = torch.sort(aux, dim=-2, descending=True, stable=True).indices  # (*, K, V)
        keep_row = aux.gather(-2, order).sum(dim=-1, keepdim=True) > 0  # (*, K, 1) sorted rows
        gates = torch.empty_like(aux).scatter_(-2, order, keep_row.to(aux.dtype).expand_as(aux))
        ctx.save_for_backward(aux)
        return gates

    @staticmethod
    def backward(ctx, grad_gates: torch.Tensor) -> torch.Tensor:
        (aux,) = ctx.saved_tensors
        return grad_gates * F.softplus(aux)


class SteGateFunction(torch.autograd.Function):
    """Per-site gate with hysteresis: keep where aux > t, drop where aux < −t, else previous."""

    @staticmethod
    def forward(
        ctx, aux: torch.Tensor, previous: torch.Tensor | None, threshold: float
    ) -> torch.Tensor:
        on = aux > threshold
        if previous is not None:
            on = on | ((previous > 0) & (aux >= -threshold))
        ctx.save_for_backward(aux)
        return on.to(aux.dtype)

    @staticmethod
    def backward(ctx, grad_gates: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (aux,) = ctx.saved_tensors
        return grad_gates * F.softplus(aux), None, None


def paired_gates(aux: torch.Tensor) -> torch.Tensor:
    """LinGCN paired gates; aux (*, K, V): K sites sharing V nodes (K = 2 in an ST-GCN block),
    leading dimensions independent (e.g. (blocks, 2, V) for a whole network).

    Returns:
        gates (*, K, V) in {0, 1}, aux's dtype; within each (K, V) slice every node keeps the
        same number of sites. Ties within a node keep the lower site index first.
    """
    if aux.dim() < 2 or not aux.is_floating_point():
        raise ValueError(
            "aux must be a float (*, K, V) tensor (K sites, V nodes), "
            f"got {aux.dtype} {tuple(aux.shape)}"
        )
    return PairedGateFunction.apply(aux)


def ste_gate(
    aux: torch.Tensor, previous: torch.Tensor | None = None, threshold: float = 0.0
) -> torch.Tensor:
    """Gate (aux > threshold) with the softplus straight-through backward.

    Args:
        aux: gate logits of any shape.
        previous: last step's gate (same shape); with it a kept site drops only when
            aux < −threshold and a dropped one returns only when aux > threshold (AutoReP's
            hysteresis, threshold 0.003). None: plain aux > threshold.
        threshold: t ≥ 0.
    """
    if not aux.is_floating_point():
        raise TypeError(f"aux has dtype {aux.dtype}; pass a float tensor")
    if threshold < 0:
        raise ValueError(f"threshold={threshold} must be >= 0")
    if previous is not None and previous.shape != aux.shape:
        raise ValueError(
            f"previous gate of shape {tuple(previous.shape)} != aux {tuple(aux.shape)}"
        )
    return SteGateFunction.apply(aux, previous, float(threshold))
