"""Encrypted ST-GCN inference on real CKKS (TenSEAL/SEAL) against the float64 circuit."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import he.stgcn
from he.circuit import StgcnCircuit
from he.ckks import HeParameterError, OpCounts, select_parameters
from he.reference import calibrated_stgcn
from he.spec import baseline_spec, lingcn_spec
from he.stgcn import HeStgcnInference
from lightning_modules.lingcn.stgcn import STGCN

V, FRAMES, CLASSES = 25, 8, 5
REPORT_KEYS = {
    "n",
    "coeff_mod_bit_sizes",
    "levels",
    "latency_s",
    "latency_s_per_sample",
    "cpu_s_per_sample",
    "setup_s",
    "ops",
    "layers",
}
OP_KEYS = {"ct_ct_mul", "pt_ct_mul", "rotations", "rescales", "additions"}


def encrypted_run(channels, spec, samples: int = 3, seed: int = 0, block_channels=None):
    """Calibrated tiny STGCN → (circuit, encrypted logits, report, plaintext logits)."""
    net = calibrated_stgcn(channels, CLASSES, spec, FRAMES, seed=seed)
    circuit = StgcnCircuit.from_module(net, spec)
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((samples, 3, FRAMES, V, 2)))
    logits, report = HeStgcnInference(circuit, block_channels=block_channels).run(x)
    return circuit, logits, report, circuit.plain_forward(x)


def check_report(logits, report, plain, levels: int, n: int) -> None:
    """Accuracy at scale 2^40 and a self-consistent report."""
    assert np.abs(logits - plain).max() <= 1e-3
    assert (logits.argmax(1) == plain.argmax(1)).all()
    assert report.keys() >= REPORT_KEYS and report["ops"].keys() >= OP_KEYS
    assert report["levels"] == levels and report["n"] == n
    assert report["coeff_mod_bit_sizes"] == [60] + [40] * levels + [60]
    assert sum(layer["levels"] for layer in report["layers"]) == levels
    total = OpCounts()
    for layer in report["layers"]:
        total = total + OpCounts(**layer["ops"])
    assert total.as_dict() == report["ops"]
    assert report["ops"]["rotations"] > 0 and report["ops"]["pt_ct_mul"] > 0
    assert report["ops"]["rescales"] >= levels
    assert report["latency_s"] == pytest.approx(sum(la["latency_s"] for la in report["layers"]))
    # one evaluating thread: its CPU time is positive and never more than the wall time
    assert 0 < report["cpu_s"] <= report["latency_s"] * 1.01 + 1e-3


def test_select_parameters_by_depth_and_slots() -> None:
    assert select_parameters(2, 4096).n == 8192  # 60 + 80 + 60 = 200 ≤ 218
    assert select_parameters(3, 4096).n == 16384  # 240 > 218
    assert select_parameters(7, 4096).n == 16384  # 400 ≤ 438
    assert select_parameters(8, 4096).n == 32768  # 440 > 438
    assert select_parameters(2, 8192).n == 16384  # slots, not depth, decide
    assert select_parameters(19, 16384).coeff_mod_bit_sizes == (60,) + (40,) * 19 + (60,)
    with pytest.raises(HeParameterError, match="depth 20"):
        select_parameters(20, 16)
    with pytest.raises(HeParameterError, match="32768 slots"):
        select_parameters(3, 32768)


def test_too_deep_circuit_fails_before_any_key_or_ciphertext(monkeypatch) -> None:
    spec = baseline_spec(6, V)
    net = STGCN(3, 60, variant="stgcn_6_256").eval()
    circuit = StgcnCircuit.from_module(net, spec)

    def no_backend(*args, **kwargs):
        raise AssertionError("keys were generated for an impossible circuit")

    monkeypatch.setattr(he.stgcn, "CkksBackend", no_backend)
    start = time.perf_counter()
    with pytest.raises(HeParameterError) as err:
        HeStgcnInference(circuit)
    assert time.perf_counter() - start < 1.0
    message = str(err.value)
    assert "depth 25" in message and "881" in message and "N = 32768" in message
    assert "linearize more" in message and "fewer layers" in message


@pytest.mark.slow
def test_lingcn_encrypted_matches_plain() -> None:
    spec = lingcn_spec([1, 1, 0], V, seed=1)  # random sites, LinGCN-like coefficients
    circuit, logits, report, plain = encrypted_run([[3, 4, 1], [4, 8, 2], [8, 8, 1]], spec)
    assert circuit.fold == "block"
    check_report(logits, report, plain, levels=7, n=16384)
    assert report["ops"]["ct_ct_mul"] == 2 * V  # one fused polynomial per node, blocks 0 and 1
    names = [layer["name"] for layer in report["layers"]]
    assert names[-1] == "block2+head" and "block1.residual" in names
    assert report["samples_per_ciphertext"] == 64  # 8192 slots / (8 channels · 8 frames · 2)


@pytest.mark.parametrize(
    ("channels", "counts", "levels", "fold", "cache_gib"),
    [
        pytest.param(
            [[3, 4, 1], [4, 8, 2], [8, 8, 1]], [1, 1, 0], 7, "block", 4.0, marks=pytest.mark.slow
        ),
        pytest.param(  # streamed plaintexts
            [[3, 4, 1], [4, 8, 2], [8, 8, 1]], [1, 1, 0], 7, "block", 0.0, marks=pytest.mark.slow
        ),
        pytest.param([[3, 4, 1], [4, 4, 1]], [0, 1], 6, "none", 4.0, marks=pytest.mark.slow),
        ([[3, 8, 1]], [1], 3, "tcn", 4.0),
    ],
)
def test_channel_blocks_match_plain(channels, counts, levels, fold, cache_gib) -> None:
    """Nodes split into ciphertexts of 2 channels (and the 5 logits into 3) give the same
    logits as the float64 circuit, with every fold of the last block."""
    sites = [0] if fold == "tcn" else None
    spec = lingcn_spec(counts, V, seed=2, sites=sites) if sites else lingcn_spec(counts, V, seed=2)
    net = calibrated_stgcn(channels, CLASSES, spec, FRAMES, seed=0)
    circuit = StgcnCircuit.from_module(net, spec)
    assert circuit.fold == fold
    x = np.random.default_rng(0).standard_normal((2, 3, FRAMES, V, 2))
    he_net = HeStgcnInference(circuit, block_channels=2, plaintext_cache_gib=cache_gib)
    logits, report = he_net.run(x)
    check_report(logits, report, circuit.plain_forward(x), levels=levels, n=16384)
    assert report["block_channels"] == 2
    assert report["channel_blocks"] == circuit.channel_pad // 2


def test_channel_blocks_cost_more_ciphertext_operations() -> None:
    """The same circuit with blocks of 2 channels pays more products than one block."""
    spec = lingcn_spec([1], V, seed=2, sites=[0])
    _, _, whole, _ = encrypted_run([[3, 8, 1]], spec, samples=1)
    _, _, split, _ = encrypted_run([[3, 8, 1]], spec, samples=1, block_channels=2)
    assert whole["channel_blocks"] == 1 and split["channel_blocks"] == 4
    assert split["ops"]["ct_ct_mul"] == 4 * whole["ops"]["ct_ct_mul"]  # one square per block


def test_block_channels_must_be_a_power_of_two() -> None:
    spec = lingcn_spec([1], V, seed=2, sites=[0])
    circuit = StgcnCircuit.from_module(calibrated_stgcn([[3, 8, 1]], CLASSES, spec, FRAMES), spec)
    with pytest.raises(ValueError, match="block_channels=3"):
        HeStgcnInference(circuit, block_channels=3)


@pytest.mark.slow
def test_identity_residual_linear_and_square_sites() -> None:
    spec = lingcn_spec([0, 1], V, seed=3)  # block 1: each node keeps act1 or act2
    site1, site2 = spec[1]
    site = site1 if site1.kept[0] else site2
    site.coeffs[0] = [0.0, 0.8, 0.1]  # a linear kept site: one scalar multiply
    site = site1 if site1.kept[1] else site2
    site.coeffs[1] = [-0.02, 0.0, 0.0]  # a1 = 0, a2 < 0: negated square
    assert site2.kept.any()  # act2 kept somewhere: ordinary head, scaled identity residual
    circuit, logits, report, plain = encrypted_run([[3, 4, 1], [4, 4, 1]], spec, seed=1)
    assert circuit.fold == "none" and circuit.blocks[1].residual == "identity"
    check_report(logits, report, plain, levels=6, n=16384)
    assert report["ops"]["ct_ct_mul"] == V - 1


def test_linearized_spends_fewer_levels_and_multiplies_than_baseline() -> None:
    channels = [[3, 8, 1]]
    _, logits, base, plain = encrypted_run(channels, baseline_spec(1, V))
    check_report(logits, base, plain, levels=5, n=16384)
    spec = lingcn_spec([1], V, seed=2, sites=[0])  # act1 everywhere: tcn folds into the head
    _, logits, lin, plain = encrypted_run(channels, spec)
    check_report(logits, lin, plain, levels=3, n=16384)
    assert base["ops"]["ct_ct_mul"] == 2 * V and lin["ops"]["ct_ct_mul"] == V
    assert lin["ops"]["rotations"] < base["ops"]["rotations"]
    assert lin["latency_s"] < base["latency_s"]


def test_ntu_sized_clips_are_planned_in_channel_blocks() -> None:
    """STGCN-3-256 on 256-frame two-person clips: 131072 values per node do not fit one
    ciphertext; the plan holds each node in 8 blocks of 32 channels at N = 32768."""
    net = STGCN(3, 60, variant="stgcn_3_256").eval()
    he_net = HeStgcnInference(StgcnCircuit.from_module(net, baseline_spec(3, V)))
    params, layout = he_net.plan(256)
    assert he_net.depth.total == 13 and params.n == 32768
    assert (layout.channels, layout.block_count(256), layout.frames) == (32, 8, 256)
    assert layout.samples == 1
    _, layout = he_net.plan(300)  # padded to 512 frames
    assert layout.channels == 16
    with pytest.raises(HeParameterError, match="crop the clips"):
        he_net.plan(10_000)
