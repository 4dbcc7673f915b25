"""Reversible LIF node (ops/revsnn): forward, exact inverse and both backwards against the
float64 reference, the saved-tensor budget, and bad input.

Gradients are compared by max |g − g_ref64| / max |g_ref64| (≤ 1e-4); the Triton
kernels run under TRITON_INTERPRET=1 (set in tests/conftest.py) on tiny fp32/fp64 shapes and
again on a GPU when one is present.
"""

from __future__ import annotations

import re

import pytest
import torch

from ops.revsnn import (
    ReversibleLIFNode,
    reversible_lif,
    reversible_lif_inverse,
    reversible_lif_reference,
)

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# name: (T, B, C, *S)
SHAPES = {
    "conv": (4, 2, 6, 3, 5),
    "features": (5, 3, 10),
    "two_channels": (3, 1, 2, 7),
    "one_step": (1, 2, 4, 2, 2),
    "many_blocks": (2, 3, 8, 11, 13),  # B·M = 1716 > one Triton block
}
FAST = [("cpu", "sweep"), ("cpu", "recompute"), ("triton", "sweep"), ("triton", "recompute")]


def drive(shape: tuple[int, ...], seed: int = 0, dtype: torch.dtype = torch.float32):
    """Inputs that make both groups spike at some steps and stay silent at others."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * 1.5 + 0.5).to(dtype)


def reference_grad(x: torch.Tensor, grad_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, dL/dx) by autograd through the float64 reference."""
    x64 = x.detach().double().requires_grad_()
    y, _ = reversible_lif_reference(x64)
    y.backward(grad_y.double())
    return y.detach(), x64.grad


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got.double() - ref).abs().max() / ref.abs().max()).item()


def test_equations_by_hand() -> None:
    """One step from v = 0 with τ = 2, θ = 1: y = Θ(d/2 − 1), v' = d/2 − y (any γ)."""
    x = torch.tensor([[[3.0, 1.0], [0.5, -2.0]]]).permute(0, 2, 1).unsqueeze(0)  # (1, 1, 2, 2)
    x1, x2 = x[0, 0, 0], x[0, 0, 1]  # (2,) each: [3, 0.5] and [1, -2]
    y, v = reversible_lif(x, backend="cpu", return_state=True)
    d1 = x1 + x2  # [4, -1.5]
    y1 = (d1 / 2 >= 1).float()  # [1, 0]
    d2 = x2 + y1  # [2, -2]
    y2 = (d2 / 2 >= 1).float()  # [1, 0]
    torch.testing.assert_close(y[0, 0], torch.stack((y1, y2)))
    torch.testing.assert_close(v[0], torch.stack((d1 / 2 - y1, d2 / 2 - y2)))


@pytest.mark.parametrize("backend", ["reference", "cpu", "triton"])
def test_guard_band_pushes_near_threshold_potentials(backend: str) -> None:
    """A firing potential within GUARD of θ is moved to θ ± GUARD on its own side, so the
    spike the inverse recomputes from the rebuilt potential is the forward's."""
    from ops.revsnn.reference import GUARD

    # one step from v = 0, τ = 2: group-1 potential h1 = (x1 + x2)/2; x2 = 0 keeps group 2 at
    # h2 = y1/2 < θ. Offsets of h1 from θ = 1: inside the band (±1e-6), on θ, and outside it.
    offsets = torch.tensor([-1e-6, 1e-6, 0.0, -1e-3, 1e-3], dtype=torch.float64)
    x = torch.zeros(1, 1, 2, len(offsets), dtype=torch.float32)
    x[0, 0, 0] = (2 * (1 + offsets)).float()
    y, v = reversible_lif(x, backend=backend, return_state=True)
    spikes = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    torch.testing.assert_close(y[0, 0, 0], spikes, rtol=0, atol=0)
    h1 = x[0, 0, 0].double() / 2
    pushed = torch.tensor([1 - GUARD, 1 + GUARD, 1 + GUARD], dtype=torch.float64)
    # v' = h − θ·y: the pushed potential inside the band, the plain one outside it
    spikes64 = spikes.double()
    torch.testing.assert_close(v[0, 0, :3].double(), pushed - spikes64[:3], rtol=0, atol=0)
    torch.testing.assert_close(v[0, 0, 3:].double(), h1[3:] - spikes64[3:], rtol=0, atol=1e-7)
    x_rebuilt, _ = reversible_lif_inverse(y, v)
    assert (x_rebuilt - x).abs().max().item() <= GUARD / 0.5 + 1e-6  # GUARD/β, no flip


@pytest.mark.parametrize("shape_name", sorted(SHAPES))
@pytest.mark.parametrize("backend", ["cpu", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_matches_reference(shape_name: str, backend: str, dtype: torch.dtype) -> None:
    x = drive(SHAPES[shape_name], dtype=dtype)
    y, v = reversible_lif(x, backend=backend, return_state=True)
    y_ref, v_ref = reversible_lif_reference(x)
    assert y.dtype == dtype and y.shape == x.shape
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-12)
    torch.testing.assert_close(v, v_ref, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("steps", [4, 8, 12, 16])
@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_inverse_reconstructs_inputs_fp32(steps: int, backend: str) -> None:
    x = drive((steps, 2, 8, 4, 4), seed=steps)
    y, v = reversible_lif(x, backend=backend, return_state=True)
    x_rec, v0 = reversible_lif_inverse(y, v)
    assert (x_rec - x).abs().max().item() <= 1e-5
    assert v0.abs().max().item() <= 1e-5


def test_inverse_fp64_is_exact_to_rounding() -> None:
    x = drive((16, 2, 8, 5), dtype=torch.float64)
    x_rec, v0 = reversible_lif_inverse(*reversible_lif(x, backend="cpu", return_state=True))
    assert (x_rec - x).abs().max().item() <= 1e-12 and v0.abs().max().item() <= 1e-12


def test_spike_rate_is_mixed() -> None:
    """The test drive fires some neurons and not others, so the Jacobians are exercised."""
    x = drive((8, 2, 8, 4, 4))
    y = reversible_lif(x, backend="cpu")
    _, v = reversible_lif(x, backend="cpu", return_state=True)
    h = v + y[-1].reshape(v.shape)  # θ = 1: firing potential of the last step
    fired = (h >= 1).float().mean().item()
    assert 0.05 < fired < 0.95


@pytest.mark.parametrize("shape_name", sorted(SHAPES))
@pytest.mark.parametrize(("backend", "backward"), FAST)
def test_gradients_match_reference(shape_name: str, backend: str, backward: str) -> None:
    x = drive(SHAPES[shape_name], seed=1)
    grad_y = drive(SHAPES[shape_name], seed=2)
    _, g_ref = reference_grad(x, grad_y)
    leaf = x.clone().requires_grad_()
    reversible_lif(leaf, backend=backend, backward=backward).backward(grad_y)
    assert rel_err(leaf.grad, g_ref) <= 1e-4


@pytest.mark.parametrize("steps", [4, 16])
@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_gradients_fp64_sweep(steps: int, backend: str) -> None:
    x = drive((steps, 2, 6, 3, 3), seed=3, dtype=torch.float64)
    grad_y = drive(x.shape, seed=4, dtype=torch.float64)
    _, g_ref = reference_grad(x, grad_y)
    leaf = x.clone().requires_grad_()
    reversible_lif(leaf, backend=backend).backward(grad_y)
    assert rel_err(leaf.grad, g_ref) <= 1e-12


@pytest.mark.parametrize("gamma", [0.3, 1.0])
def test_other_constants(gamma: float) -> None:
    x = drive((6, 2, 4, 3), seed=5)
    grad_y = drive(x.shape, seed=6)
    kwargs = {"tau": 3.0, "v_threshold": 0.8, "gamma": gamma, "surrogate_alpha": 2.0}
    x64 = x.double().requires_grad_()
    y_ref, _ = reversible_lif_reference(x64, 3.0, 0.8, gamma, 2.0)
    y_ref.backward(grad_y.double())
    leaf = x.clone().requires_grad_()
    y = reversible_lif(leaf, backend="cpu", **kwargs)
    y.backward(grad_y)
    torch.testing.assert_close(y.double(), y_ref.detach(), rtol=0, atol=1e-6)
    assert rel_err(leaf.grad, x64.grad) <= 1e-4
    y, v = reversible_lif(x, backend="cpu", return_state=True, **kwargs)
    x_rec, _ = reversible_lif_inverse(y, v, tau=3.0, v_threshold=0.8, gamma=gamma)
    assert (x_rec - x).abs().max().item() <= 1e-5


def saved_storages(fn) -> tuple[torch.Tensor, dict[int, int]]:
    """fn's output and {data pointer: bytes} of what autograd saved while it ran."""
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, saved


@pytest.mark.parametrize("backward", ["sweep", "recompute"])
def test_saves_only_outputs_and_final_state(backward: str) -> None:
    """Beyond its output, the node keeps one state per neuron, whatever T is."""
    for steps in (4, 8):
        x = drive((steps, 2, 6, 4, 4)).requires_grad_()
        y, saved = saved_storages(lambda x=x: reversible_lif(x, backend="cpu", backward=backward))
        extra = {p: n for p, n in saved.items() if p != y.untyped_storage().data_ptr()}
        assert sum(extra.values()) == 2 * 6 * 4 * 4 * 4  # v_T: (B, 2, C/2·S) fp32
        assert y.untyped_storage().data_ptr() in saved
    _, saved_ref = saved_storages(lambda: reversible_lif_reference(x)[0])
    assert sum(saved_ref.values()) >= steps * x[0].numel() * 4  # autograd keeps every step


def test_module_and_dispatch() -> None:
    node = ReversibleLIFNode(backend="cpu")
    x = drive((3, 2, 4, 5))
    torch.testing.assert_close(node(x), reversible_lif(x, backend="cpu"))
    assert "backward='sweep'" in repr(node)
    assert not list(node.parameters())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"shape": (3, 2, 5, 4)}, ValueError, "5 channels"),
        ({"shape": (3, 4)}, ValueError, "expected (T, B, C, *S)"),
        ({"dtype": torch.bfloat16}, TypeError, "float32 or float64"),
        ({"backend": "cuda"}, ValueError, "backend='cuda'"),
        ({"backward": "twice"}, ValueError, "backward='twice'"),
        ({"tau": 1.0}, ValueError, "tau=1.0"),
        ({"gamma": 0.0}, ValueError, "gamma=0.0"),
    ],
)
def test_bad_input_fails_early(kwargs: dict, error: type, message: str) -> None:
    shape = kwargs.pop("shape", (3, 2, 4, 4))
    x = drive(shape, dtype=kwargs.pop("dtype", torch.float32))
    with pytest.raises(error, match=re.escape(message)):
        reversible_lif(x, **{"backend": "cpu", **kwargs})


def test_integer_input_is_rejected() -> None:
    with pytest.raises(TypeError, match="float tensor"):
        reversible_lif(torch.ones(2, 1, 4, dtype=torch.int64))


@requires_cuda
@pytest.mark.parametrize("backward", ["sweep", "recompute"])
def test_triton_on_cuda(backward: str) -> None:
    x = drive((8, 4, 16, 9, 9), seed=7)
    grad_y = drive(x.shape, seed=8)
    y_ref, g_ref = reference_grad(x, grad_y)
    leaf = x.cuda().requires_grad_()
    y = reversible_lif(leaf, backward=backward)
    y.backward(grad_y.cuda())
    assert (y.double().cpu() - y_ref).abs().max().item() <= 1e-5
    assert rel_err(leaf.grad.cpu(), g_ref) <= 1e-4
    x_rec, _ = reversible_lif_inverse(*reversible_lif(x.cuda(), return_state=True))
    assert (x_rec.cpu() - x).abs().max().item() <= 1e-5
