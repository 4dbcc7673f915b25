"""Autograd glue for the reversible LIF node: checks, dispatch, the two backwards, the module.

Backends: "reference" (``reference.py`` under torch autograd, the specification; it stores
every step's activations like any autograd graph), "cpu" (``cpu.py``: vectorised torch, a
hand-written backward; plain torch, so it runs on any device), "triton" (``triton.py``: one
fused kernel per forward step and per backward step, wrapped as the ``torch.library`` ops
``effml::revsnn_fwd``/``effml::revsnn_bwd``). Default: "triton" on CUDA, "cpu" elsewhere.

Backwards of the "cpu"/"triton" node (both save only the outputs, which the next layer keeps
anyway, and the final state (B, 2, C/2·S): nothing per step):
- ``"sweep"`` (:class:`ReversibleLIFFunction`): one reverse walk over T that reconstructs
  each step's firing potential and previous state from (y_t, v_t) and applies the surrogate
  Jacobians in the same pass (the paper's streamlined backward).
- ``"recompute"`` (:class:`RecomputeLIFFunction`): standard reversible backpropagation
  (RevNet): per step, reconstruct x_t and v_{t−1} from (y_t, v_t), re-run the step under
  ``torch.enable_grad()`` and backpropagate through that small graph with autograd.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ops.dispatch import check_backend, resolve_backend

from .cpu import revsnn_bwd_cpu, revsnn_fwd_cpu
from .reference import (
    check_params,
    inverse_step_reference,
    reversible_lif_inverse_reference,
    reversible_lif_reference,
    step_reference,
)

BACKWARDS = ("sweep", "recompute")
FAST_DTYPES = (torch.float32, torch.float64)


@torch.library.custom_op(
    "effml::revsnn_fwd",
    mutates_args=(),
    schema="(Tensor x_seq, float tau, float v_threshold, float gamma) -> (Tensor, Tensor)",
)
def _revsnn_fwd_op(x_seq, tau, v_threshold, gamma):
    from .triton import revsnn_fwd_triton

    return revsnn_fwd_triton(x_seq, tau, v_threshold, gamma)


@_revsnn_fwd_op.register_fake
def _(x_seq, tau, v_threshold, gamma):
    batch = x_seq.shape[1]
    m = x_seq[0].numel() // batch // 2
    return torch.empty_like(x_seq, memory_format=torch.contiguous_format), x_seq.new_empty(
        batch, 2, m
    )


@torch.library.custom_op(
    "effml::revsnn_bwd",
    mutates_args=(),
    schema="(Tensor grad_y, Tensor y_seq, Tensor v_final, float tau, float v_threshold, "
    "float gamma, float alpha) -> Tensor",
)
def _revsnn_bwd_op(grad_y, y_seq, v_final, tau, v_threshold, gamma, alpha):
    from .triton import revsnn_bwd_triton

    return revsnn_bwd_triton(grad_y, y_seq, v_final, tau, v_threshold, gamma, alpha)


@_revsnn_bwd_op.register_fake
def _(grad_y, y_seq, v_final, tau, v_threshold, gamma, alpha):
    return torch.empty_like(y_seq, memory_format=torch.contiguous_format)


def _forward(x_seq, tau, v_threshold, gamma, backend):
    if backend == "triton":
        return torch.ops.effml.revsnn_fwd(x_seq, tau, v_threshold, gamma)
    return revsnn_fwd_cpu(x_seq, tau, v_threshold, gamma)


class _OutputsOnlyFunction(torch.autograd.Function):
    """The forward both backwards share: run the node, save only y_seq and v_final.

    Arguments (positional): x_seq, tau, v_threshold, gamma, alpha, backend, checked by
    ``reversible_lif``. Returns (y_seq, v_final); v_final is not differentiable. Not twice
    differentiable. Subclasses supply the backward.
    """

    @staticmethod
    def forward(ctx, x_seq, tau, v_threshold, gamma, alpha, backend):
        y_seq, v_final = _forward(x_seq, tau, v_threshold, gamma, backend)
        ctx.mark_non_differentiable(v_final)
        ctx.save_for_backward(y_seq, v_final)
        ctx.params = (tau, v_threshold, gamma, alpha)
        ctx.backend = backend
        return y_seq, v_final


class ReversibleLIFFunction(_OutputsOnlyFunction):
    """The node with the one-sweep backward ("cpu" or "triton" backend)."""

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, grad_v):
        y_seq, v_final = ctx.saved_tensors
        if ctx.backend == "triton":
            grad_x = torch.ops.effml.revsnn_bwd(grad_y, y_seq, v_final, *ctx.params)
        else:
            grad_x = revsnn_bwd_cpu(grad_y, y_seq, v_final, *ctx.params)
        return grad_x, None, None, None, None, None


class RecomputeLIFFunction(_OutputsOnlyFunction):
    """The node with standard reversible backpropagation, the baseline of the sweep.

    Same forward and saved tensors as :class:`ReversibleLIFFunction`. Backward, per step
    from T down to 1: reconstruct (x_t, v_{t−1}) with the exact inverse, re-run
    ``step_reference`` on them under autograd, and ``torch.autograd.backward`` through it.
    """

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, grad_v):
        y_seq, v_final = ctx.saved_tensors
        tau, v_threshold, gamma, alpha = ctx.params
        grad_x = torch.empty_like(y_seq)
        v1, v2 = v_final[:, 0], v_final[:, 1]
        gv1, gv2 = torch.zeros_like(v1), torch.zeros_like(v2)
        for t in range(y_seq.shape[0] - 1, -1, -1):
            x, v1, v2 = inverse_step_reference(y_seq[t], v1, v2, tau, v_threshold, gamma)
            with torch.enable_grad():
                leaves = [z.detach().requires_grad_() for z in (x, v1, v2)]
                outs = step_reference(*leaves, tau, v_threshold, gamma, alpha)
                torch.autograd.backward(outs, (grad_y[t], gv1, gv2))
            grad_x[t], gv1, gv2 = (leaf.grad for leaf in leaves)
        return grad_x, None, None, None, None, None


def _check_input(x_seq: torch.Tensor, backend: str, backward: str) -> None:
    if not isinstance(x_seq, torch.Tensor) or not x_seq.is_floating_point():
        got = x_seq.dtype if isinstance(x_seq, torch.Tensor) else type(x_seq).__name__
        raise TypeError(f"x_seq must be a float tensor, got {got}")
    if x_seq.dim() < 3:
        raise ValueError(
            f"x_seq has shape {tuple(x_seq.shape)}: expected (T, B, C, *S) with C even "
            "(time first, e.g. (T, B, C, H, W) or (T, B, features))"
        )
    if x_seq.shape[2] % 2:
        raise ValueError(
            f"x_seq has {x_seq.shape[2]} channels: the node splits channels into two equal "
            "groups, so C must be even"
        )
    if backward not in BACKWARDS:
        raise ValueError(f"backward={backward!r}: choose one of {BACKWARDS}")
    if backend != "reference" and x_seq.dtype not in FAST_DTYPES:
        raise TypeError(
            f"backend={backend!r} takes float32 or float64, got {x_seq.dtype}: the inverse "
            "recomputes states from the outputs, so they must be stored in full precision; "
            "cast with x_seq.float() (or use backend='reference')"
        )


def reversible_lif(
    x_seq: torch.Tensor,
    tau: float = 2.0,
    v_threshold: float = 1.0,
    gamma: float = 0.125,
    surrogate_alpha: float = 4.0,
    backend: str | None = None,
    backward: str = "sweep",
    return_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The reversible LIF node over T steps from a zero state (equations in ``reference.py``).

    Args:
        x_seq: (T, B, C, *S) float input, C even; channels [0, C/2) are group 1.
        tau: membrane time constant (α = 1 − 1/τ, β = 1/τ), > 1.
        v_threshold: θ, the firing threshold and soft-reset amount.
        gamma: γ > 0, weight of the previous membrane in the real-valued output.
        surrogate_alpha: slope of the sigmoid surrogate (SpikingJelly's Sigmoid(alpha)).
        backend: "reference", "cpu" or "triton"; None picks triton on CUDA, cpu otherwise.
        backward: "sweep" (one reverse pass, reconstruct + Jacobians) or "recompute"
            (standard reversible backpropagation); ignored by the reference backend.
        return_state: also return the final state v_T (B, 2, C/2·S), not differentiable.

    Returns:
        y_seq with x_seq's shape and dtype (and v_T with ``return_state``).
    """
    backend = resolve_backend(backend, x_seq, op="revsnn")
    _check_input(x_seq, backend, backward)
    check_params(tau, v_threshold, gamma, surrogate_alpha)
    args = (float(tau), float(v_threshold), float(gamma), float(surrogate_alpha))
    if backend == "reference":
        y_seq, v_final = reversible_lif_reference(x_seq, *args)
    else:
        fn = ReversibleLIFFunction if backward == "sweep" else RecomputeLIFFunction
        y_seq, v_final = fn.apply(x_seq, *args, backend)
    return (y_seq, v_final) if return_state else y_seq


@torch.no_grad()
def reversible_lif_inverse(
    y_seq: torch.Tensor,
    v_final: torch.Tensor,
    tau: float = 2.0,
    v_threshold: float = 1.0,
    gamma: float = 0.125,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs x_seq and the initial state v_0 that produced (y_seq, v_final)."""
    return reversible_lif_inverse_reference(y_seq, v_final, tau, v_threshold, gamma)


class ReversibleLIFNode(nn.Module):
    """Multi-step reversible LIF node (``forward(x_seq) -> y_seq``, time first), zero state.

    Args: as in ``reversible_lif``. The node has no parameters and keeps no state between
    calls (each call starts from v = 0, like SpikingJelly's node after ``reset_net``).
    """

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        gamma: float = 0.125,
        surrogate_alpha: float = 4.0,
        backend: str | None = None,
        backward: str = "sweep",
    ) -> None:
        super().__init__()
        check_params(tau, v_threshold, gamma, surrogate_alpha)
        check_backend(backend, op="revsnn")
        if backward not in BACKWARDS:
            raise ValueError(f"backward={backward!r}: choose one of {BACKWARDS}")
        self.tau, self.v_threshold, self.gamma = float(tau), float(v_threshold), float(gamma)
        self.surrogate_alpha = float(surrogate_alpha)
        self.backend, self.backward = backend, backward

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return reversible_lif(
            x_seq,
            self.tau,
            self.v_threshold,
            self.gamma,
            self.surrogate_alpha,
            backend=self.backend,
            backward=self.backward,
        )

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, v_threshold={self.v_threshold}, gamma={self.gamma}, "
            f"surrogate_alpha={self.surrogate_alpha}, backend={self.backend}, "
            f"backward={self.backward!r}"
        )
