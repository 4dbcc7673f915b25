"""Gated activation (ops/polyact): every backend against the float64 reference, gates, DaPa.

Tolerance (flash-attention's rule): |fast − ref64| ≤ 2·|torch_same_dtype − ref64| + atol,
maxima over the tensor, atol from the per-dtype table scaled by max(1, |ref64|). Triton runs
under TRITON_INTERPRET=1 (set in tests/conftest.py) on tiny shapes; the CUDA tests repeat
the comparison on a GPU when one is present.
"""

from __future__ import annotations

import math

import pytest
import torch

import ops.dispatch as dispatch
import ops.polyact.triton as polyact_triton
from ops.polyact import (
    PolyAct,
    dapa_coefficients,
    dapa_mse,
    paired_gates,
    poly_act,
    poly_act_reference,
    ste_gate,
)

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

ATOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}
NAMES = ("x", "gate", "w2", "w1", "w0")
COMBOS = [("relu", "identity"), ("poly", "identity"), ("relu", "poly"), ("poly", "poly")]
# name: (x shape, gate shape, coefficient shape)
SHAPES = {
    "stgcn_nodewise": ((3, 5, 7, 25), (1, 1, 25), (1, 1, 25)),
    "cnn_channelwise": ((2, 6, 5, 5), (6, 5, 5), (6, 1, 1)),
    "gate_with_batch_dim": ((3, 4, 5), (1, 4, 5), (4, 1)),
    "odd_S": ((5, 37), (37,), (1,)),
    "two_column_blocks": ((3, 1100), (1, 1100), (1100,)),
    "S_is_1": ((6, 1), (1,), (1,)),
    "x_1d": ((7,), (), ()),
}


def make_inputs(shape_name: str, gate_kind: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """float64 leaves (all requiring grad) for one shape case."""
    x_shape, g_shape, w_shape = SHAPES[shape_name]
    gen = torch.Generator().manual_seed(seed)
    rand = lambda shape, lo, hi: (
        lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)
    )
    gate = (
        (torch.rand(g_shape, generator=gen) > 0.5).double()
        if gate_kind == "binary"
        else torch.randn(g_shape, generator=gen, dtype=torch.float64)
    )
    x = torch.randn(x_shape, generator=gen, dtype=torch.float64)
    x.view(-1)[::7] = 0.0  # relu'(0) = 0, as torch has it
    inputs = {
        "x": x,
        "gate": gate,
        "w2": rand(w_shape, -1.0, 1.0),
        "w1": rand(w_shape, 0.5, 1.5),
        "w0": rand(w_shape, -0.5, 0.5),
    }
    return {k: v.requires_grad_() for k, v in inputs.items()}


def forward_backward(
    inputs: dict[str, torch.Tensor | None],
    dy: torch.Tensor,
    dtype: torch.dtype,
    backend: str,
    device: str = "cpu",
    **kwargs,
) -> dict[str, torch.Tensor]:
    """y and the gradients of the leaves that require grad, all cast to ``dtype`` first."""
    leaves = {
        k: None if v is None else v.detach().to(device, dtype).requires_grad_(v.requires_grad)
        for k, v in inputs.items()
    }
    y = poly_act(*(leaves[k] for k in NAMES), backend=backend, **kwargs)
    wrt = [k for k in NAMES if leaves[k] is not None and leaves[k].requires_grad]
    grads = torch.autograd.grad(
        y, [leaves[k] for k in wrt], dy.to(device, dtype), allow_unused=True
    )
    out = {"y": y}
    for k, grad in zip(wrt, grads, strict=True):
        out[k] = torch.zeros_like(leaves[k]) if grad is None else grad
    return out


def assert_within_rule(fast: dict, same_dtype: dict, ref64: dict, dtype: torch.dtype) -> None:
    assert fast.keys() == ref64.keys()
    for k, ref in ref64.items():
        got = fast[k]
        assert got.dtype == same_dtype[k].dtype, f"{k}: dtype {got.dtype}"
        assert got.shape == ref.shape, f"{k}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
        err = (got.cpu().double() - ref).abs().max().item() if ref.numel() else 0.0
        err_pt = (same_dtype[k].cpu().double() - ref).abs().max().item() if ref.numel() else 0.0
        scale = max(1.0, ref.abs().max().item()) if ref.numel() else 1.0
        bound = 2 * err_pt + ATOL[dtype] * scale
        assert err <= bound, f"{k}: |fast − ref64| = {err:.3g} > {bound:.3g} (torch {err_pt:.3g})"


def check_against_reference(inputs, keep, drop, dtype, backend, device="cpu", scale=0.5, **kw):
    x = inputs["x"]
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    common = dict(keep=keep, drop=drop, scale=scale, **kw)
    ref64 = forward_backward(inputs, dy, torch.float64, "reference", **common)
    same = forward_backward(inputs, dy, dtype, "reference", **common)
    fast = forward_backward(inputs, dy, dtype, backend, device=device, **common)
    assert_within_rule(fast, same, ref64, dtype)


# bf16 only off the interpreter (it computes bf16 wrongly): the CUDA tests cover Triton bf16
BACKEND_DTYPES = [
    (backend, dtype)
    for backend in ("reference", "cpu", "triton")
    for dtype in (torch.float32, torch.float16, torch.float64, torch.bfloat16)
    if not (backend == "triton" and dtype == torch.bfloat16)
]


@pytest.mark.parametrize("gate_kind", ["binary", "real"])
@pytest.mark.parametrize(("backend", "dtype"), BACKEND_DTYPES, ids=str)
@pytest.mark.parametrize(("keep", "drop"), COMBOS)
@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_matches_reference(shape_name, keep, drop, backend, dtype, gate_kind):
    inputs = make_inputs(shape_name, gate_kind)
    if keep == "relu" and drop == "identity":
        inputs.update(w2=None, w1=None, w0=None)
    check_against_reference(inputs, keep, drop, dtype, backend)


@pytest.mark.parametrize("backend", ["cpu", "triton"])
@pytest.mark.parametrize(("keep", "drop"), COMBOS[1:])
def test_partial_requires_grad(keep, drop, backend):
    """LinGCN's frozen w0, a constant gate, an input that needs no gradient."""
    inputs = make_inputs("stgcn_nodewise", "binary")
    for name in ("x", "gate", "w0"):
        inputs[name].requires_grad_(False)
    check_against_reference(inputs, keep, drop, torch.float32, backend)
    only_x = make_inputs("cnn_channelwise", "real")
    for name in ("gate", "w2", "w1", "w0"):
        only_x[name].requires_grad_(False)
    check_against_reference(only_x, keep, drop, torch.float32, backend)


@pytest.mark.parametrize("backend", ["reference", "cpu", "triton"])
def test_gate_none_means_keep_everywhere(backend):
    inputs = make_inputs("cnn_channelwise", "binary")
    inputs["gate"] = None
    check_against_reference(inputs, "poly", "identity", torch.float32, backend)
    x = inputs["x"].detach()
    y = poly_act(x, None, backend=backend)
    torch.testing.assert_close(y, torch.relu(x), rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_clamp_follows_torch_clamp(backend):
    """w2 = 3 and w1 = −2.5 outside [−2, 2]: the forward uses ±2 and their gradients are 0."""
    inputs = make_inputs("stgcn_nodewise", "real")
    with torch.no_grad():
        inputs["w2"][..., :5] = 3.0
        inputs["w1"][..., 5:8] = -2.5
    check_against_reference(inputs, "relu", "poly", torch.float32, backend, clamp=2.0)
    out = forward_backward(
        inputs,
        torch.ones(3, 5, 7, 25),
        torch.float64,
        backend,
        keep="relu",
        drop="poly",
        clamp=(-2, 2),
    )
    assert (out["w2"][..., :5] == 0).all() and (out["w1"][..., 5:8] == 0).all()
    assert (out["w2"][..., 5:] != 0).all()


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_noncontiguous_and_empty_batch(backend):
    inputs = make_inputs("stgcn_nodewise", "real")
    base = torch.randn(7, 3, 25, 5, dtype=torch.float64)
    inputs["x"] = base.permute(1, 3, 0, 2).requires_grad_()  # (3, 5, 7, 25), not contiguous
    check_against_reference(inputs, "poly", "identity", torch.float32, backend)
    empty = make_inputs("cnn_channelwise", "real")
    empty["x"] = torch.randn(0, 6, 5, 5, dtype=torch.float64, requires_grad=True)
    out = forward_backward(
        empty, torch.randn(0, 6, 5, 5), torch.float32, backend, keep="relu", drop="poly"
    )
    assert out["y"].shape == (0, 6, 5, 5)
    assert all((out[k] == 0).all() for k in ("gate", "w2", "w1", "w0"))


def test_triton_program_split_covers_rows_and_columns():
    """S = 2100 → three column blocks; S = 37, B = 5 → two row blocks of 3, one row masked."""
    block_s, col_blocks, rows = polyact_triton._grid(5, 2100, torch.device("cpu"))
    assert (block_s, col_blocks) == (polyact_triton.MAX_BLOCK_S, 3)
    inputs = make_inputs("odd_S", "real")
    inputs["x"] = torch.randn(5, 2100, dtype=torch.float64, requires_grad=True)
    inputs["gate"] = torch.randn(2100, dtype=torch.float64, requires_grad=True)
    check_against_reference(inputs, "relu", "poly", torch.float32, "triton")
    block_s, col_blocks, rows = polyact_triton._grid(5, 37, torch.device("cpu"))
    assert (block_s, col_blocks, rows) == (64, 1, 3)


def test_module_init_and_forward():
    lingcn = PolyAct((1, 1, 25), keep="poly", drop="identity", scale=0.01, clamp=2.0)
    assert torch.equal(lingcn.w2, torch.full((1, 1, 25), 0.005))
    assert torch.equal(lingcn.w1, torch.ones(1, 1, 25)) and torch.equal(
        lingcn.w0, torch.zeros(1, 1, 25)
    )
    assert lingcn.w2.requires_grad and lingcn.w1.requires_grad and not lingcn.w0.requires_grad
    torch.manual_seed(0)
    autorep = PolyAct((6, 1, 1), keep="relu", drop="poly", init="autorep")
    assert autorep.w2.min() >= 0 and autorep.w2.max() <= 1e-4 and autorep.w0.max() <= 1e-4
    assert autorep.w1.min() >= 1 and autorep.w1.max() <= 1.0001 and autorep.w0.requires_grad
    assert [n for n, _ in PolyAct((1, 1, 25)).named_parameters()] == []

    x = torch.randn(2, 6, 5, 5, requires_grad=True)
    gate = (torch.rand(6, 5, 5) > 0.5).float()
    y = autorep(x, gate)
    torch.testing.assert_close(
        y, poly_act_reference(x, gate, autorep.w2, autorep.w1, autorep.w0, keep="relu", drop="poly")
    )
    y.square().sum().backward()
    assert all(p.grad is not None for p in autorep.parameters())
    w0, w1, w2 = dapa_coefficients(torch.zeros(6, 1, 1), torch.ones(6, 1, 1))
    autorep.set_coefficients(w2, w1, w0)
    assert torch.allclose(autorep.w1, torch.full((6, 1, 1), 0.5))
    assert "keep='relu'" in repr(autorep)


def test_torch_library_ops_and_compile():
    """The Triton ops pass opcheck; both backends trace into one graph under torch.compile."""
    x = torch.randn(3, 4, 5)
    gate, w2, w1, w0 = torch.rand(4, 5), torch.rand(4, 1), torch.rand(4, 1), torch.rand(4, 1)
    torch.library.opcheck(torch.ops.effml.polyact_fwd, (x, gate, w2, w1, w0, False, True, 0.5))
    needs = [True, True, True, False, True]
    torch.library.opcheck(
        torch.ops.effml.polyact_bwd,
        (torch.randn_like(x), x, gate, w2, w1, w0, False, True, 0.5, needs),
    )
    for backend in ("triton", "cpu"):
        leaves = [t.clone().requires_grad_() for t in (x, gate, w2, w1, w0)]
        fn = lambda *t, b=backend: poly_act(*t, keep="relu", drop="poly", scale=0.5, backend=b)
        compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
        grads = torch.autograd.grad(compiled(*leaves).sum(), leaves)
        expected = torch.autograd.grad(fn(*leaves).sum(), leaves)
        for got, want in zip(grads, expected, strict=True):
            torch.testing.assert_close(got, want)


def test_errors_name_the_problem(monkeypatch):
    x = torch.randn(2, 3, 4, 25)
    gate = torch.ones(1, 1, 25)
    w = torch.ones(1, 1, 25)
    with pytest.raises(
        ValueError, match=r"gate of shape \(1, 1, 24\).*\(3, 4, 25\).*\(2, 3, 4, 25\)"
    ):
        poly_act(x, torch.ones(1, 1, 24))
    with pytest.raises(ValueError, match=r"w1 of shape \(2, 1, 1, 25\)"):
        poly_act(x, gate, w, torch.ones(2, 1, 1, 25), w, keep="poly")
    with pytest.raises(ValueError, match=r"keep='gelu'"):
        poly_act(x, gate, keep="gelu")
    with pytest.raises(ValueError, match=r"drop='relu'"):
        poly_act(x, gate, drop="relu")
    with pytest.raises(ValueError, match=r"pass w2, w1 and w0"):
        poly_act(x, gate, keep="poly")
    with pytest.raises(ValueError, match=r"gate is on meta but x is on cpu"):
        poly_act(x, torch.ones(25, device="meta"))
    with pytest.raises(TypeError, match=r"x must be a float tensor, got torch.int64"):
        poly_act(torch.ones(2, 25, dtype=torch.long), gate)
    with pytest.raises(TypeError, match=r"gate has dtype torch.bool"):
        poly_act(x, gate > 0)
    with pytest.raises(ValueError, match=r"backend='cuda'"):
        poly_act(x, gate, backend="cuda")
    with pytest.raises(ValueError, match=r"init='snl'"):
        PolyAct((1, 1, 25), keep="poly", init="snl")
    with pytest.raises(TypeError, match=r"bfloat16"):
        poly_act(x.bfloat16(), gate.bfloat16(), backend="triton")
    monkeypatch.setattr(dispatch, "TRITON_INTERPRET", False)
    with pytest.raises(RuntimeError, match=r"TRITON_INTERPRET=1"):
        poly_act(x, gate, backend="triton")


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize(("keep", "drop"), COMBOS)
@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_cuda_triton_matches_reference(shape_name, keep, drop, dtype):
    inputs = make_inputs(shape_name, "real")
    if keep == "relu" and drop == "identity":
        inputs.update(w2=None, w1=None, w0=None)
    check_against_reference(inputs, keep, drop, dtype, "triton", device="cuda")


@requires_cuda
def test_cuda_large_batch_atomics():
    """Many row blocks accumulate into the same parameter entries."""
    inputs = make_inputs("stgcn_nodewise", "real")
    inputs["x"] = torch.randn(256, 64, 16, 25, dtype=torch.float64, requires_grad=True)
    check_against_reference(inputs, "relu", "poly", torch.float32, "triton", device="cuda")


# ---- gates ----------------------------------------------------------------------------------


def test_paired_gates_pick_the_positive_site():
    """aux = +1 on nodes 0–9 of site 1 and on nodes 10–24 of site 2, −1 elsewhere.

    Every node's sorted column is (+1, −1): the top sorted row sums to 25 > 0 (kept), the
    bottom one to −25 (dropped), so each node keeps exactly its +1 site → counts [10, 15].
    """
    aux = -torch.ones(2, 25)
    aux[0, :10] = 1.0
    aux[1, 10:] = 1.0
    aux.requires_grad_()
    gates = paired_gates(aux)
    assert gates.sum(dim=1).tolist() == [10.0, 15.0]
    assert torch.equal(gates, (aux > 0).float())
    assert torch.equal(gates.sum(dim=0), torch.ones(25))  # one nonlinearity per node
    upstream = torch.randn(2, 25)
    gates.backward(upstream)
    assert torch.equal(aux.grad, upstream * torch.nn.functional.softplus(aux.detach()))


def test_paired_gate_keeps_equal_counts_per_node():
    torch.manual_seed(3)
    aux = torch.randn(2, 25)
    gates = paired_gates(aux)
    per_node = gates.sum(dim=0)
    assert torch.all(per_node == per_node[0])  # same count at every node
    top, bottom = aux.max(dim=0).values.sum(), aux.min(dim=0).values.sum()
    assert per_node[0].item() == int(top > 0) + int(bottom > 0)
    if per_node[0] == 1:  # each node keeps its larger site
        assert torch.equal(gates[0], (aux[0] >= aux[1]).float())
    assert torch.equal(paired_gates(torch.full((2, 25), 0.3)), torch.ones(2, 25))
    assert torch.equal(paired_gates(torch.full((2, 25), -0.3)), torch.zeros(2, 25))
    with pytest.raises(ValueError, match=r"\(\*, K, V\)"):
        paired_gates(torch.randn(25))
    stacked = torch.stack([aux, -aux, torch.full((2, 25), 0.3)])  # (blocks, 2, V)
    for block, gates_b in zip(stacked, paired_gates(stacked), strict=True):
        assert torch.equal(gates_b, paired_gates(block))


def test_ste_gate_and_hysteresis():
    aux = torch.tensor([-1.0, -0.002, 0.0, 0.002, 1.0], requires_grad=True)
    assert ste_gate(aux).tolist() == [0, 0, 0, 1, 1]
    previous = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0])
    assert ste_gate(aux, previous, threshold=0.003).tolist() == [0, 1, 0, 0, 1]
    upstream = torch.randn(5)
    ste_gate(aux).backward(upstream)
    assert torch.equal(aux.grad, upstream * torch.nn.functional.softplus(aux.detach()))


# ---- DaPa -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mu", "sigma", "expected"),
    [
        (0.0, 1.0, (0.19947, 0.5, 0.19947)),
        # (w0, w1, w2), AutoReP's order (arXiv 2308.10134)
        (0.5, 1.0, (0.22004, 0.51543, 0.17603)),
        (-1.0, 0.5, (0.06749, 0.13073, 0.05399)),
    ],
)
def test_dapa_coefficients_values(mu, sigma, expected):
    got = dapa_coefficients(mu, sigma)
    assert all(isinstance(v, float) for v in got)
    for g, e in zip(got, expected, strict=True):
        assert abs(g - e) <= 1e-5, (got, expected)


@pytest.mark.parametrize(("mu", "sigma"), [(0.0, 1.0), (0.5, 1.0), (-1.0, 0.5), (0.3, 2.0)])
def test_dapa_is_the_least_squares_optimum(mu, sigma):
    """Weighted least squares on a fine quadrature grid of N(μ, σ²) gives the same fit and MSE."""
    x = torch.linspace(mu - 12 * sigma, mu + 12 * sigma, 400_001, dtype=torch.float64)
    weight = torch.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    weight = weight * (x[1] - x[0])  # Riemann weights (the tails are negligible)
    basis = torch.stack([torch.ones_like(x), x, x * x], dim=1)
    root = weight.sqrt()[:, None]
    fit = torch.linalg.lstsq(basis * root, torch.relu(x)[:, None] * root).solution.squeeze(1)
    assert torch.allclose(
        fit, torch.tensor(dapa_coefficients(mu, sigma), dtype=torch.float64), atol=1e-7
    )
    mse = ((torch.relu(x) - basis @ fit) ** 2 * weight).sum().item()
    assert abs(mse - dapa_mse(mu, sigma)) <= 1e-8


def test_dapa_mse_and_tensors():
    assert abs(dapa_mse(0.0, 1.0) - (0.25 - 3 / (4 * math.pi))) <= 1e-12
    assert round(dapa_mse(0.0, 1.0), 5) == 0.01127
    mu, sigma = torch.tensor([0.0, 0.5, -1.0]), torch.tensor([1.0, 1.0, 0.5])
    w0, w1, w2 = dapa_coefficients(mu, sigma)
    assert w2.dtype == torch.float32 and w2.shape == (3,)
    torch.testing.assert_close(w1, torch.tensor([0.5, 0.51543, 0.13073]), atol=1e-5, rtol=0)
    assert dapa_mse(mu, sigma).shape == (3,)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        dapa_coefficients(0.0, 0.0)
