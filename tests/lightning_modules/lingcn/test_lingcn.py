"""LinGCN's CryptoGCN-style x² network: offset initialisation, stage wiring, HE coefficients."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from he import StgcnCircuit
from lightning_modules.lingcn.module import (
    LinGCNModule,
    PolySite,
    SquareSite,
    init_square_offsets,
    site_coefficients,
)
from lightning_modules.lingcn.stgcn import STGCN
from tasks.lingcn_he import activation_spec

# block 1 has a conv residual, block 2 an identity residual: every kind of act2 input
CHANNELS = [[3, 4, 1], [4, 8, 2], [8, 8, 1], [8, 8, 1]]


def _nets(seed: int = 0, one_tap: bool = False) -> tuple[STGCN, STGCN, STGCN]:
    """A 'trained' ReLU net (random affines) and its x² and identity-activation twins.

    ``one_tap`` zeroes the temporal kernels but their centre tap, so the temporal conv's zero
    padding cannot turn a constant into an edge effect.
    """
    torch.manual_seed(seed)
    relu = STGCN(3, 5, variant="custom", channels=CHANNELS)
    with torch.no_grad():
        for m in relu.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        relu.head.bias.uniform_(-0.5, 0.5)
        if one_tap:
            for block in relu.blocks:
                centre = block.tcn.weight.shape[2] // 2
                block.tcn.weight[:, :, :centre].zero_()
                block.tcn.weight[:, :, centre + 1 :].zero_()
    twins = []
    for site in (SquareSite, nn.Identity):
        factory = lambda b, s, c, site=site: site()  # noqa: E731
        net = STGCN(3, 5, variant="custom", channels=CHANNELS, act_factory=factory)
        net.load_state_dict(relu.state_dict(), strict=False)
        twins.append(net)
    return relu, twins[0], twins[1]


def _train_mode_logits(net: STGCN, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.double().train()(x)


def test_square_site_is_x_squared() -> None:
    x = torch.randn(2, 3, 4, 25)
    torch.testing.assert_close(SquareSite()(x), x.pow(2))
    coeffs, kept = site_coefficients(SquareSite(), 25)
    assert coeffs.dtype == torch.float64 and coeffs.shape == (25, 3)
    assert (coeffs == torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)).all()
    assert kept.all()


def test_offset_init_makes_the_square_net_the_linear_net_up_to_o_of_1_over_b() -> None:
    """(√c(v + B))² = B/2 + v + v²/(2B): logits → the identity-activation net's as B grows.

    Block 1 has a conv residual, blocks 2 and 3 identity residuals (output scales 1/c and
    1/c³ relative to c·(v + B)²), so every path of the scale and constant bookkeeping runs.
    """
    x = torch.randn(
        6, 3, 16, 25, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    errors = []
    for offset in (30.0, 300.0, 3000.0):
        _, square, linear = _nets(one_tap=True)
        init_square_offsets(square, offset)
        want = _train_mode_logits(linear, x)
        errors.append((_train_mode_logits(square, x) - want).abs().max().item())
    assert errors[-1] < 0.01 * want.abs().max().item()
    # the v²/(2B) terms: the error falls 10x when B grows 10x
    assert 8 < errors[0] / errors[1] < 12 and 8 < errors[1] / errors[2] < 12


def test_offset_init_keeps_an_edge_effect_of_the_temporal_padding() -> None:
    """With full temporal kernels the constant B/2 meets zero padding: not O(1/B) any more."""
    x = torch.randn(6, 3, 16, 25, 2, dtype=torch.float64)
    errors = []
    for offset in (1e2, 1e3):
        _, square, linear = _nets()
        init_square_offsets(square, offset)
        errors.append(
            (_train_mode_logits(square, x) - _train_mode_logits(linear, x)).abs().max().item()
        )
    assert errors[0] / errors[1] < 3


def test_plain_squares_without_offsets_explode() -> None:
    """Why the offsets exist: the same weights with zero-mean square inputs blow up."""
    _, square, _ = _nets()
    x = torch.randn(6, 3, 16, 25, 2)
    with torch.no_grad():
        plain = square.train()(x).abs().max()
        init_square_offsets(square, 8.0)
        shifted = square(x).abs().max()
    assert plain > 100 * shifted


def test_offset_must_be_positive() -> None:
    _, square, _ = _nets()
    with pytest.raises(ValueError, match="square_offset"):
        init_square_offsets(square, 0.0)


def _teacher_ckpt(tmp_path: Path) -> str:
    relu, _, _ = _nets()
    path = tmp_path / "teacher.ckpt"
    state = {f"net.{k}": v for k, v in relu.state_dict().items()}
    torch.save({"state_dict": state}, path)
    return str(path)


def _module(tmp_path: Path, **kwargs) -> LinGCNModule:
    return LinGCNModule(
        optimizer=lambda params: torch.optim.SGD(params, lr=0.01),
        in_channels=3,
        num_classes=5,
        stage="cryptogcn",
        variant="custom",
        channels=CHANNELS,
        teacher_ckpt=_teacher_ckpt(tmp_path),
        **kwargs,
    )


def test_cryptogcn_stage_builds_the_square_net_from_the_teacher(tmp_path: Path) -> None:
    module = _module(tmp_path, square_offset=8.0)
    sites = [s for b in module.net.blocks for s in (b.act1, b.act2)]
    assert all(isinstance(s, SquareSite) for s in sites)
    assert module.gates().sum() == len(CHANNELS) * 2 * 25
    _, expected, _ = _nets()
    init_square_offsets(expected, 8.0)
    for name, value in expected.state_dict().items():
        torch.testing.assert_close(module.net.state_dict()[name], value, msg=name)


def test_cryptogcn_poly_variant_and_bad_choice(tmp_path: Path) -> None:
    module = _module(tmp_path, cryptogcn_act="poly")
    assert all(isinstance(b.act1, PolySite) for b in module.net.blocks)
    with pytest.raises(ValueError, match="cryptogcn_act"):
        _module(tmp_path, cryptogcn_act="relu")


def test_he_spec_of_the_square_net_is_c_x_squared_and_folds_exactly(tmp_path: Path) -> None:
    """The he stage's spec is (c, 0, 0) at every node and site; the folded float64 circuit
    (what CKKS evaluates) gives the module's eval-mode logits."""
    module = _module(tmp_path, square_offset=8.0).double().eval()
    spec = activation_spec(module)
    assert len(spec) == len(CHANNELS)
    for pair in spec:
        for site in pair:
            assert site.kept.all()
            np.testing.assert_array_equal(site.coeffs, np.tile([1 / 16, 0.0, 0.0], (25, 1)))
    x = torch.randn(2, 3, 16, 25, 2, dtype=torch.float64)
    with torch.no_grad():
        want = module.net(x).numpy()
    got = StgcnCircuit.from_module(module.net, spec).plain_forward(x)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
