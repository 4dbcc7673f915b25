"""Spiking VGG/ResNet with the reversible node, its autograd twin and SpikingJelly's LIFNode."""

from __future__ import annotations

import sys
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from effml.errors import MissingToolError
from lightning_modules.snn.module import SpikingClassifier
from lightning_modules.snn.nets import SpikingJellyLIF, SpikingResNet, SpikingVGG, make_node
from ops.revsnn import ReversibleLIFNode

NODES = ("reversible", "reversible_autograd", "lif")
ADAM = partial(torch.optim.Adam, lr=1e-2)


def tiny(arch: str, node: str, time_steps: int = 3, in_channels: int = 1) -> SpikingClassifier:
    return SpikingClassifier(
        in_channels,
        5,
        8,
        ADAM,
        arch=arch,
        node=node,
        time_steps=time_steps,
        channels=[4, "M", 6],
        widths=[4, 6],
        blocks=[1, 1],
        backend="cpu",
    )


@pytest.mark.parametrize("arch", ["vgg", "resnet"])
@pytest.mark.parametrize("node", NODES)
def test_forward_backward_shapes(arch: str, node: str) -> None:
    torch.manual_seed(0)
    model = tiny(arch, node)
    logits = model(torch.randn(2, 1, 8, 8))
    assert logits.shape == (2, 5)
    F.cross_entropy(logits, torch.tensor([0, 3])).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_event_frames_run_step_by_step() -> None:
    """(B, T, C, H, W) frames go through the stem per step; T follows the data."""
    torch.manual_seed(0)
    model = tiny("vgg", "reversible", time_steps=2, in_channels=2)
    frames = torch.rand(2, 5, 2, 8, 8)
    assert model(frames).shape == (2, 5)
    with pytest.raises(ValueError, match="expected"):
        model(torch.rand(8, 8))


@pytest.mark.parametrize("arch", ["vgg", "resnet"])
def test_sweep_and_recompute_give_the_same_training_signal(arch: str) -> None:
    x, y = torch.randn(3, 1, 8, 8), torch.tensor([0, 1, 4])
    grads = {}
    for node in ("reversible", "reversible_autograd"):
        torch.manual_seed(0)
        model = tiny(arch, node)
        F.cross_entropy(model(x), y).backward()
        grads[node] = torch.cat([p.grad.flatten() for p in model.parameters()])
    ref = grads["reversible_autograd"]
    assert (grads["reversible"] - ref).abs().max() <= 1e-4 * ref.abs().max()


def test_lif_node_is_spikingjelly_with_shared_constants() -> None:
    node = make_node("lif", tau=3.0, v_threshold=0.5, surrogate_alpha=2.0)
    assert isinstance(node, SpikingJellyLIF)
    inner = node.node
    assert (inner.tau, inner.v_threshold, inner.step_mode) == (3.0, 0.5, "m")
    assert inner.store_v_seq is False and inner.surrogate_function.alpha == 2.0
    x = torch.randn(4, 2, 6)
    first = node(x)
    assert torch.equal(first, node(x))  # state reset on every call
    assert set(first.unique().tolist()) <= {0.0, 1.0}


def test_lif_reset_hard_or_soft() -> None:
    assert make_node("lif").node.v_reset == 0.0
    soft = make_node("lif", lif_reset="soft")
    assert soft.node.v_reset is None
    # one step over threshold: hard reset leaves 0, soft reset leaves h - θ
    x = torch.full((2, 1, 1), 3.0)  # τ = 2: h_1 = 1.5 → spike; v = 0 (hard) or 0.5 (soft)
    hard = make_node("lif")
    hard_out, soft_out = hard(x), soft(x)
    assert hard_out[0].item() == 1.0 and soft_out[0].item() == 1.0
    assert hard_out[1].item() == 1.0 and soft_out[1].item() == 1.0  # h_2 = 1.5 or 1.75
    assert hard.node.v.item() == 0.0 and soft.node.v.item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="lif_reset='partial'"):
        make_node("lif", lif_reset="partial")


def test_classifier_passes_lif_reset_to_every_node() -> None:
    model = SpikingClassifier(1, 5, 8, ADAM, node="lif", channels=[4, "M", 6], lif_reset="soft")
    nodes = [m for m in model.modules() if isinstance(m, SpikingJellyLIF)]
    assert len(nodes) == 2 and all(n.node.v_reset is None for n in nodes)


def test_reversible_node_kinds() -> None:
    sweep, recompute = make_node("reversible", gamma=0.25), make_node("reversible_autograd")
    assert isinstance(sweep, ReversibleLIFNode) and sweep.backward == "sweep"
    assert sweep.gamma == 0.25 and recompute.backward == "recompute"


def test_missing_spikingjelly_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "spikingjelly.activation_based", None)
    with pytest.raises(MissingToolError, match=r"\.\[snn\]"):
        make_node("lif")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"node": "izhikevich"}, "node=izhikevich"),
        ({"arch": "vit"}, "arch=vit"),
        ({"time_steps": 0}, "time_steps=0"),
        ({"channels": ["M", 4]}, "start with a width"),
        ({"channels": [4, "M", "M", "M", "M"]}, "pools a 8-pixel image away"),
        ({"gamma": -1.0}, "gamma=-1.0"),
        ({"backend": "gpu"}, "backend=gpu"),
    ],
)
def test_bad_values_fail_at_construction(kwargs: dict, message: str) -> None:
    base = {"arch": "vgg", "node": "reversible", "channels": [4, "M", 6], "backend": "cpu"}
    with pytest.raises(ValueError, match=message):
        SpikingClassifier(1, 5, 8, ADAM, **{**base, **kwargs})


def test_resnet_blocks_and_widths() -> None:
    net = SpikingResNet(3, 10, 16, [4, 8, 8], [2, 1, 1], 2, {"node": "reversible"})
    assert len(net.stages) == 4
    with pytest.raises(ValueError, match="one per stage"):
        SpikingResNet(3, 10, 16, [4, 8], [1], 2, {"node": "reversible"})
    assert isinstance(SpikingVGG(3, 10, 16, [4, "M", 8], 2, {"node": "lif"}).features[0],
                      SpikingJellyLIF)  # fmt: skip


def test_hydra_lists_become_plain_hyperparameters(tmp_path) -> None:
    """Checkpoints must load with torch.load(weights_only=True): no ListConfig inside."""
    from omegaconf import OmegaConf

    model = SpikingClassifier(
        1, 5, 8, ADAM, channels=OmegaConf.create([4, "M", 6]), widths=OmegaConf.create([4])
    )
    assert model.hparams.channels == [4, "M", 6] and type(model.hparams.channels) is list
    torch.save(dict(model.hparams), tmp_path / "hparams.pt")
    assert torch.load(tmp_path / "hparams.pt", weights_only=True)["widths"] == [4]


def test_golden_loss() -> None:
    """Loss after 5 Adam steps of the reversible spiking VGG on a fixed tiny batch."""
    pl.seed_everything(0)
    model = tiny("vgg", "reversible", time_steps=4)
    x, y = torch.randn(8, 1, 8, 8), torch.arange(8) % 5
    optimizer = model.configure_optimizers()["optimizer"]
    for _ in range(5):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    assert loss.item() == pytest.approx(GOLDEN_LOSS, abs=1e-4)


# recorded with torch 2.14.1 on CPU; a change here means the reversible node's training changed
GOLDEN_LOSS = 1.1923900
