"""The folded HE circuit: activation specs, float64 simulation against torch, and depth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from he.circuit import StgcnCircuit
from he.spec import SiteSpec, baseline_spec, lingcn_spec, load_spec, save_spec, validate_spec
from lightning_modules.lingcn.stgcn import STGCN

V = 25
CHANNELS = [[3, 4, 1], [4, 8, 2], [8, 8, 1]]


class TorchSite(nn.Module):
    """Independent torch reference of one site: where(kept, a2·x² + a1·x + a0, x)."""

    def __init__(self, site: SiteSpec) -> None:
        super().__init__()
        self.a = torch.tensor(site.coeffs, dtype=torch.float64)  # (V, 3)
        self.kept = torch.tensor(site.kept)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, T, V)
        poly = self.a[:, 0] * x**2 + self.a[:, 1] * x + self.a[:, 2]
        return torch.where(self.kept, poly, x)


def random_net(spec, channels=CHANNELS, classes: int = 5, seed: int = 0) -> STGCN:
    """An eval-mode float64 STGCN with random BN statistics, affines and edge importances."""
    torch.manual_seed(seed)
    net = STGCN(
        channels[0][0],
        classes,
        variant="custom",
        channels=channels,
        act_factory=lambda b, s, c: TorchSite(spec[b][s]),
    )
    with torch.no_grad():
        for block in net.blocks:
            block.edge_importance.uniform_(0.5, 1.5)
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.double().eval()


SPECS = {
    "baseline": lambda: baseline_spec(3, V),
    "lingcn_110": lambda: lingcn_spec([1, 1, 0], V, seed=1),  # last block folds whole
    "lingcn_tcn_fold": lambda: lingcn_spec([2, 0, 1], V, seed=2, sites=[None, None, 0]),
    "lingcn_mixed": lambda: lingcn_spec([1, 2, 1], V, seed=3),  # ordinary head
}


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("frames", [9, 8])
def test_plain_forward_matches_torch(name: str, frames: int) -> None:
    spec = SPECS[name]()
    net = random_net(spec)
    x = torch.randn(3, 3, frames, V, 2, dtype=torch.float64)
    ref = net(x).detach().numpy()
    out = StgcnCircuit.from_module(net, spec).plain_forward(x)
    assert out.shape == ref.shape == (3, 5)
    assert np.abs(out - ref).max() <= 1e-9 * np.abs(ref).max()


def test_single_block_folds_data_bn_and_head() -> None:
    spec = lingcn_spec([0], V, seed=4)
    net = random_net(spec, channels=[[3, 6, 2]], classes=4)
    circuit = StgcnCircuit.from_module(net, spec)
    assert circuit.fold == "block"
    x = torch.randn(2, 3, 7, V, 2, dtype=torch.float64)
    np.testing.assert_allclose(circuit.plain_forward(x), net(x).detach().numpy(), rtol=1e-9)


def test_folded_weights_are_sparse_pairs() -> None:
    spec = baseline_spec(3, V)
    circuit = StgcnCircuit.from_module(random_net(spec), spec)
    block = circuit.blocks[0]
    assert block.gcn_pairs.shape == (V + 2 * 24, 2)  # self loops and both edge directions
    assert block.gcn_weight.shape == (73, 2, 4, 3)  # data_bn differs per person
    assert circuit.blocks[1].gcn_weight.shape == (73, 1, 8, 4)
    assert [b.residual for b in circuit.blocks] == ["none", "conv", "identity"]
    assert circuit.channel_pad == 8


def test_site_spec_helpers() -> None:
    x = np.linspace(-2, 2, 4 * V).reshape(4, V)
    np.testing.assert_array_equal(SiteSpec.identity(V).apply(x), x)
    np.testing.assert_array_equal(SiteSpec.square(V).apply(x), x**2)
    coeffs = np.tile([0.5, -1.0, 0.25], (V, 1))
    kept = np.arange(V) % 2 == 0
    y = SiteSpec.poly(coeffs, kept).apply(x)
    np.testing.assert_allclose(y[:, kept], 0.5 * x[:, kept] ** 2 - x[:, kept] + 0.25)
    np.testing.assert_array_equal(y[:, ~kept], x[:, ~kept])
    with pytest.raises(ValueError, match=r"\(V, 3\)"):
        SiteSpec.poly(np.ones((V, 2)))
    with pytest.raises(ValueError, match="kept must be"):
        SiteSpec(coeffs, np.ones(V - 1, dtype=bool))


def test_validate_spec_rejects_unequal_counts() -> None:
    spec = lingcn_spec([1, 1, 0], V, seed=0)
    assert validate_spec(spec, 3, V) == [1, 1, 0]
    spec[1][0].kept[:] = True  # nodes that kept site 2 now keep both
    with pytest.raises(ValueError, match="block 1: nodes keep different numbers"):
        validate_spec(spec, 3, V)
    with pytest.raises(ValueError, match="blocks"):
        validate_spec(spec[:2], 3, V)


def test_depth_linearized_below_baseline() -> None:
    base_spec, lin_spec = baseline_spec(3, V), lingcn_spec([1, 1, 0], V, seed=1)
    base = StgcnCircuit.from_module(random_net(base_spec), base_spec).depth()
    lin = StgcnCircuit.from_module(random_net(lin_spec), lin_spec).depth()
    assert base.total == 13  # 3 × (gcn + 2 squares + tcn) + head
    assert dict(base.layers)["block0.act"] == 2 and base.layers[-1] == ("head", 1)
    assert lin.total == 7  # (1 + 1 + 1) × 2 + the last block folded into the head
    assert lin.layers[-1] == ("block2+head", 1)
    assert sum(levels for _, levels in lin.layers) == lin.total


def test_depth_of_tcn_fold_and_alignment_check() -> None:
    spec = lingcn_spec([2, 0, 1], V, seed=2, sites=[None, None, 0])
    circuit = StgcnCircuit.from_module(random_net(spec), spec)
    assert circuit.fold == "tcn"
    depth = circuit.depth()
    assert depth.total == 4 + 2 + 3
    assert depth.layers[-3:] == [("block2.gcn", 1), ("block2.act", 1), ("block2.tcn+head", 1)]
    circuit.blocks[1].site1.kept[3] = True  # node 3 would spend one more level than the rest
    with pytest.raises(ValueError, match="block 1: node ciphertexts would spend"):
        circuit.depth()


def test_spec_round_trip(tmp_path) -> None:
    spec = lingcn_spec([1, 2, 0], V, seed=5)
    save_spec(tmp_path / "spec.npz", spec)
    loaded = load_spec(tmp_path / "spec.npz")
    for pair, pair_loaded in zip(spec, loaded, strict=True):
        for site, site_loaded in zip(pair, pair_loaded, strict=True):
            np.testing.assert_array_equal(site.coeffs, site_loaded.coeffs)
            np.testing.assert_array_equal(site.kept, site_loaded.kept)
