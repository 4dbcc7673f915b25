"""Autograd glue for the HE-friendly gated activation: checks, dispatch, functional, module.

    y = g · F(x) + (1 − g) · G(x),  F ∈ {relu, poly},  G ∈ {identity, poly},
    P(x) = s·w2·x² + w1·x + w0

Backends: "reference" (``reference.py`` under torch autograd, the specification), "cpu"
(``cpu.py``: vectorised torch with a hand-written backward; plain torch, so it runs on any
device and ``torch.compile`` fuses it), "triton" (``triton.py``: fused kernels, wrapped as the
``torch.library`` ops ``effml::polyact_fwd``/``effml::polyact_bwd`` so ``torch.compile`` keeps
the graph whole around them). Default: "triton" on CUDA, "cpu" elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ops.dispatch import check_backend, resolve_backend

from .cpu import polyact_bwd_cpu, polyact_fwd_cpu
from .reference import DROP_CHOICES, KEEP_CHOICES, poly_act_reference

INITS = ("lingcn", "autorep")


@torch.library.custom_op(
    "effml::polyact_fwd",
    mutates_args=(),
    schema="(Tensor x, Tensor gate, Tensor? w2, Tensor? w1, Tensor? w0, bool keep_poly, "
    "bool drop_poly, float scale) -> Tensor",
)
def _polyact_fwd_op(x, gate, w2, w1, w0, keep_poly, drop_poly, scale):
    from .triton import polyact_fwd_triton

    return polyact_fwd_triton(x, gate, w2, w1, w0, keep_poly, drop_poly, scale)


@_polyact_fwd_op.register_fake
def _(x, gate, w2, w1, w0, keep_poly, drop_poly, scale):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.custom_op(
    "effml::polyact_bwd",
    mutates_args=(),
    schema="(Tensor grad_y, Tensor x, Tensor gate, Tensor? w2, Tensor? w1, Tensor? w0, "
    "bool keep_poly, bool drop_poly, float scale, bool[] needs) "
    "-> (Tensor, Tensor, Tensor, Tensor, Tensor)",
)
def _polyact_bwd_op(grad_y, x, gate, w2, w1, w0, keep_poly, drop_poly, scale, needs):
    """(dx, dgate, dw2, dw1, dw0); a gradient not asked for comes back as an empty tensor."""
    from .triton import polyact_bwd_triton

    grads = polyact_bwd_triton(
        grad_y, x, gate, w2, w1, w0, keep_poly, drop_poly, scale, tuple(needs)
    )
    return tuple(x.new_empty(0) if g is None else g for g in grads)


@_polyact_bwd_op.register_fake
def _(grad_y, x, gate, w2, w1, w0, keep_poly, drop_poly, scale, needs):
    likes = (x, gate, w2, w1, w0)
    return tuple(
        torch.empty_like(t, memory_format=torch.contiguous_format)
        if need and t is not None
        else x.new_empty(0)
        for need, t in zip(needs, likes, strict=True)
    )


class PolyActFunction(torch.autograd.Function):
    """Fused gated activation with a hand-written backward ("cpu" or "triton" backend).

    Arguments (positional): x, gate, w2, w1, w0, keep_poly, drop_poly, scale, backend; the
    parameters must already be checked (``poly_act`` does that); w2/w1/w0 may be None when
    neither F nor G is the polynomial. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, x, gate, w2, w1, w0, keep_poly, drop_poly, scale, backend):
        if backend == "triton":
            y = torch.ops.effml.polyact_fwd(x, gate, w2, w1, w0, keep_poly, drop_poly, scale)
        else:
            y = polyact_fwd_cpu(x, gate, w2, w1, w0, keep_poly, drop_poly, scale)
        ctx.save_for_backward(x, gate, w2, w1, w0)
        ctx.keep_poly, ctx.drop_poly, ctx.scale, ctx.backend = keep_poly, drop_poly, scale, backend
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        x, gate, w2, w1, w0 = ctx.saved_tensors
        needs = tuple(bool(n) for n in ctx.needs_input_grad[:5])
        args = (x, gate, w2, w1, w0, ctx.keep_poly, ctx.drop_poly, ctx.scale)
        if ctx.backend == "triton":
            grads = torch.ops.effml.polyact_bwd(grad_y, *args, list(needs))
            grads = tuple(g if need else None for g, need in zip(grads, needs, strict=True))
        else:
            grads = polyact_bwd_cpu(grad_y, *args, needs)
        return (*grads, None, None, None, None)


def _check_param(name: str, t: torch.Tensor | None, x: torch.Tensor) -> None:
    """Raise unless t is a float tensor on x's device broadcastable to x's per-sample shape."""
    if t is None:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} has dtype {t.dtype}; pass a float tensor (e.g. {name}.float())")
    if t.device != x.device:
        raise ValueError(
            f"{name} is on {t.device} but x is on {x.device}; move it with .to(x.device)"
        )
    sample = x.shape[1:]
    fits = (
        t.dim() <= x.dim()
        and (t.dim() <= len(sample) or t.shape[0] == 1)
        and all(a in (1, b) for a, b in zip(reversed(t.shape), reversed(sample), strict=False))
    )
    if not fits:
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} does not broadcast to the per-sample shape "
            f"{tuple(sample)} of x {tuple(x.shape)}: sizes must be 1 or equal, aligned right "
            "(e.g. (1, 1, V) node-wise or (C, 1, 1) channel-wise for x (N, C, T, V))"
        )


def _clamp_bounds(clamp: float | Sequence[float] | None) -> tuple[float, float] | None:
    if clamp is None:
        return None
    if isinstance(clamp, int | float):
        if clamp <= 0:
            raise ValueError(
                f"clamp={clamp}: a single bound must be > 0 (it means [-clamp, clamp])"
            )
        return -float(clamp), float(clamp)
    lo, hi = (float(c) for c in clamp)
    if lo > hi:
        raise ValueError(f"clamp={tuple(clamp)}: lower bound above upper bound")
    return lo, hi


def poly_act(
    x: torch.Tensor,
    gate: torch.Tensor | None,
    w2: torch.Tensor | None = None,
    w1: torch.Tensor | None = None,
    w0: torch.Tensor | None = None,
    *,
    keep: str = "relu",
    drop: str = "identity",
    scale: float = 1.0,
    clamp: float | Sequence[float] | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """HE-friendly gated activation y = g·F(x) + (1 − g)·G(x).

    Args:
        x: (B, *S) float input, e.g. (N, C, T, V) or (N, C, H, W).
        gate: g broadcastable to S ((1, 1, V) node-wise, (C, H, W) per element); any real
            values (0/1 after gating, real under STE training); None means g = 1.
        w2, w1, w0: coefficients of P(x) = s·w2·x² + w1·x + w0, broadcastable to S; needed
            when keep or drop is "poly".
        keep: F, "relu" or "poly".  drop: G, "identity" or "poly".
        scale: s (LinGCN 0.01; AutoReP's s2).
        clamp: c or (lo, hi): w2 and w1 pass through ``torch.clamp`` first (LinGCN: 2.0), so
            their gradients follow torch's clamp (zero outside the bounds).
        backend: "reference", "cpu" or "triton"; None picks triton on CUDA, cpu otherwise.

    Returns:
        y with x's shape and dtype. Gradients reach every input that requires grad; those of
        the broadcast parameters are summed over the broadcast dimensions (batch included).
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"x must be a float tensor, got {got}")
    if x.dim() < 1:
        raise ValueError("x must have a batch dimension: shape (B, *S)")
    if keep not in KEEP_CHOICES:
        raise ValueError(f"keep={keep!r}: choose one of {KEEP_CHOICES}")
    if drop not in DROP_CHOICES:
        raise ValueError(f"drop={drop!r}: choose one of {DROP_CHOICES}")
    backend = resolve_backend(backend, x, op="polyact")
    has_poly = "poly" in (keep, drop)
    if has_poly and (w2 is None or w1 is None or w0 is None):
        raise ValueError(f"keep={keep!r}, drop={drop!r} uses the polynomial: pass w2, w1 and w0")
    if not has_poly:
        w2 = w1 = w0 = None
    for name, t in (("gate", gate), ("w2", w2), ("w1", w1), ("w0", w0)):
        _check_param(name, t, x)
    bounds = _clamp_bounds(clamp)
    if has_poly and bounds is not None:
        w2, w1 = w2.clamp(*bounds), w1.clamp(*bounds)
    if backend == "reference":
        return poly_act_reference(x, gate, w2, w1, w0, keep=keep, drop=drop, scale=scale)
    if gate is None:
        gate = x.new_ones(())
    return PolyActFunction.apply(
        x, gate, w2, w1, w0, keep == "poly", drop == "poly", float(scale), backend
    )


class PolyAct(nn.Module):
    """Gated activation with learnable polynomial coefficients; the gate is a forward argument.

    Args:
        shape: coefficient shape, broadcastable to the per-sample shape: (1, 1, V) node-wise
            (LinGCN), (C, 1, 1) channel-wise (AutoReP).
        keep, drop, scale, clamp, backend: as in ``poly_act``.
        init: "lingcn" (w2 = 0.005, w1 = 1, w0 = 0 frozen) or "autorep" (w0, w2 ~ U(0, 1e-4),
            w1 ~ U(1, 1.0001), all trained). No coefficients exist when neither keep nor drop
            is "poly".
    """

    def __init__(
        self,
        shape: Sequence[int] = (1,),
        keep: str = "relu",
        drop: str = "identity",
        scale: float = 1.0,
        clamp: float | Sequence[float] | None = None,
        init: str = "lingcn",
        backend: str | None = None,
    ) -> None:
        super().__init__()
        if keep not in KEEP_CHOICES or drop not in DROP_CHOICES:
            raise ValueError(
                f"keep={keep!r}, drop={drop!r}: keep ∈ {KEEP_CHOICES}, drop ∈ {DROP_CHOICES}"
            )
        if init not in INITS:
            raise ValueError(f"init={init!r}: choose one of {INITS}")
        check_backend(backend, op="polyact")
        self.shape, self.keep, self.drop, self.init = tuple(shape), keep, drop, init
        self.scale, self.clamp, self.backend = float(scale), clamp, backend
        _clamp_bounds(clamp)
        for name in ("w2", "w1", "w0"):
            self.register_parameter(name, None)
        if "poly" in (keep, drop):
            if init == "lingcn":
                w2 = torch.full(self.shape, 0.005)
                w1 = torch.ones(self.shape)
                w0 = torch.zeros(self.shape)
            else:
                w2 = torch.empty(self.shape).uniform_(0.0, 1e-4)
                w1 = torch.empty(self.shape).uniform_(1.0, 1.0001)
                w0 = torch.empty(self.shape).uniform_(0.0, 1e-4)
            self.w2 = nn.Parameter(w2)
            self.w1 = nn.Parameter(w1)
            self.w0 = nn.Parameter(w0, requires_grad=init != "lingcn")

    @torch.no_grad()
    def set_coefficients(
        self, w2: torch.Tensor | float, w1: torch.Tensor | float, w0: torch.Tensor | float
    ) -> None:
        """Overwrite the coefficients in place (broadcast), e.g. from ``dapa_coefficients``."""
        if self.w2 is None:
            raise RuntimeError(f"keep={self.keep!r}, drop={self.drop!r} has no polynomial to set")
        for param, value in ((self.w2, w2), (self.w1, w1), (self.w0, w0)):
            param.copy_(
                torch.as_tensor(value, dtype=param.dtype, device=param.device).expand_as(param)
            )

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        return poly_act(
            x,
            gate,
            self.w2,
            self.w1,
            self.w0,
            keep=self.keep,
            drop=self.drop,
            scale=self.scale,
            clamp=self.clamp,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return (
            f"shape={self.shape}, keep={self.keep!r}, drop={self.drop!r}, scale={self.scale}, "
            f"clamp={self.clamp}, init={self.init!r}, backend={self.backend}"
        )
