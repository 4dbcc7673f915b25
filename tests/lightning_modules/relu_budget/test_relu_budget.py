"""AutoReP / SNL: exact ReLU counts, hysteresis, DaPa refresh, SNL binarisation, the module's
losses and errors, and the private-inference cost model."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from lightning_modules.relu_budget.module import ReluBudgetModule
from lightning_modules.relu_budget.resnet_cifar import build_net
from lightning_modules.relu_budget.sites import (
    AutoRepSite,
    ReluSite,
    SnlSite,
    export_mask,
    relu_count,
    sites,
)
from ops.polyact import dapa_coefficients, dapa_mse
from tasks.pi_cost import GcCostModel

# recorded with torch 2.14.1 on CPU (see _five_steps)
GOLDEN_RELU = 0.38775
GOLDEN_AUTOREP = 9.11349
GOLDEN_SNL = 2.28500


@pytest.mark.parametrize(("arch", "expected"), [("resnet18_in", 491_520), ("wrn_22_8", 1_359_872)])
def test_relu_counts_match_snl(arch: str, expected: int) -> None:
    net = build_net(arch, num_classes=10, in_channels=3, image_size=32, act=ReluSite).eval()
    assert relu_count(net) == (expected, expected)
    seen = []
    for site in sites(net):
        site.register_forward_hook(lambda m, i, o: seen.append(i[0][0].numel()))
    with torch.no_grad():
        net(torch.randn(1, 3, 32, 32))
    assert sum(seen) == expected  # the elements that really pass through ReLU sites


def test_bad_arch_names_the_choices() -> None:
    with pytest.raises(ValueError, match="wrn_<depth>_<widen>"):
        build_net("resnet50", 10, 3, 32)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        build_net("wrn_20_8", 10, 3, 32)


def test_hysteresis_oscillating_aux_never_flips() -> None:
    t = 0.003
    site = AutoRepSite((2, 3, 3), threshold=t, dapa_steps=0).train()
    x = torch.randn(4, 2, 3, 3)
    with torch.no_grad():
        site.aux.fill_(0.5)
    site(x)
    assert bool((site.mask == 1).all())
    for step in range(50):  # aux swings inside (−t, t): every mask stays where it is
        with torch.no_grad():
            site.aux.copy_(torch.full_like(site.aux, (-1) ** step * 0.9 * t))
        site(x)
        assert bool((site.mask == 1).all()), f"flipped at step {step}"
    with torch.no_grad():
        site.aux.fill_(-2 * t)
    site(x)
    assert bool((site.mask == 0).all())
    for step in range(50):
        with torch.no_grad():
            site.aux.copy_(torch.full_like(site.aux, (-1) ** step * 0.9 * t))
        site(x)
        assert bool((site.mask == 0).all()), f"returned at step {step}"
    with torch.no_grad():
        site.aux.fill_(2 * t)
    site(x)
    assert bool((site.mask == 1).all())


def test_eval_forward_does_not_move_the_mask() -> None:
    site = AutoRepSite((1, 2, 2), dapa_steps=0).eval()
    with torch.no_grad():
        site.aux.fill_(-1.0)
    site(torch.randn(2, 1, 2, 2))
    assert bool((site.mask == 1).all())


def test_site_output_and_straight_through_gradient() -> None:
    torch.manual_seed(0)
    site = AutoRepSite((3, 2, 2), dapa_steps=0).train()
    with torch.no_grad():
        site.aux.copy_(torch.randn(3, 2, 2))
    x = torch.randn(5, 3, 2, 2)
    y = site(x)
    m = (site.aux > 0.003).float()  # from all-ones, a mask drops only below −t
    m = torch.where(site.aux.abs() <= 0.003, torch.ones_like(m), m)
    p = site.poly
    poly = p.scale * p.w2 * x**2 + p.w1 * x + p.w0
    torch.testing.assert_close(y, m * torch.relu(x) + (1 - m) * poly)
    site.last_gate.sum().backward()
    torch.testing.assert_close(site.aux.grad, torch.nn.functional.softplus(site.aux.detach()))


def test_dapa_refresh_fits_the_tracked_distribution() -> None:
    torch.manual_seed(0)
    mu, sigma = torch.tensor([0.0, 0.5, -1.0]), torch.tensor([1.0, 1.0, 0.8])
    site = AutoRepSite((3, 8, 8), dapa_steps=1000, dapa_every=1, var_min=0.01).train()
    for _ in range(60):
        x = mu.view(1, 3, 1, 1) + sigma.view(1, 3, 1, 1) * torch.randn(64, 3, 8, 8)
        site(x)
    w0, w1, w2 = dapa_coefficients(mu, sigma)
    p = site.poly
    torch.testing.assert_close(p.w1.flatten(), w1, atol=0.02, rtol=0)
    torch.testing.assert_close(p.scale * p.w2.flatten(), w2, atol=0.02, rtol=0)
    torch.testing.assert_close(p.w0.flatten(), w0, atol=0.02, rtol=0)
    # the fitted P approximates ReLU with DaPa's closed-form error
    x = mu.view(1, 3) + sigma.view(1, 3) * torch.randn(200_000, 3)
    poly = p.scale * p.w2.view(1, 3) * x**2 + p.w1.view(1, 3) * x + p.w0.view(1, 3)
    mse = ((poly - torch.relu(x)) ** 2).mean(0)
    torch.testing.assert_close(mse, dapa_mse(mu, sigma), atol=3e-3, rtol=0.1)


def test_dapa_stops_refreshing_after_dapa_steps() -> None:
    site = AutoRepSite((2, 2, 2), dapa_steps=3, dapa_every=1).train()
    for _ in range(3):
        site(torch.randn(8, 2, 2, 2))
    with torch.no_grad():
        site.poly.w1.fill_(7.0)
    site(torch.randn(8, 2, 2, 2) + 3)
    assert bool((site.poly.w1 == 7.0).all())


def test_snl_site_and_binarize() -> None:
    site = SnlSite((2, 2, 2))
    with torch.no_grad():
        site.alpha.copy_(torch.tensor([0.5, 0.005, 0.02, 0.0, 1.0, 0.009, 0.3, -0.1]).view(2, 2, 2))
    x = torch.randn(3, 2, 2, 2)
    a = site.alpha.detach()
    torch.testing.assert_close(site(x), a * torch.relu(x) + (1 - a) * x)
    assert int(site.kept_mask().sum()) == 4
    site.binarize(1e-2)
    m = (a > 1e-2).float()
    torch.testing.assert_close(site(x), m * torch.relu(x) + (1 - m) * x)
    assert not site.alpha.requires_grad
    assert int(site.kept_mask().sum()) == 4


def _module(method: str, **kw) -> ReluBudgetModule:
    return ReluBudgetModule(
        optimizer=torch.optim.Adam, method=method, width=4, image_size=8, budget=50, **kw
    )


def test_module_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="method=autorp"):
        _module("autorp")
    with pytest.raises(ValueError, match=r"budget=999999: exceeds the 1920 ReLUs"):
        ReluBudgetModule(torch.optim.Adam, method="autorep", width=4, image_size=8, budget=999_999)


def test_autorep_penalty_pushes_masks_down_only_above_budget() -> None:
    torch.manual_seed(0)
    model = _module("autorep", lam=10.0, dapa_steps=0).train()
    model.log = lambda *a, **k: None
    model(torch.randn(4, 3, 8, 8))
    assert model.total_relus == 1920
    penalty = model._penalty()
    assert penalty.item() == pytest.approx(10.0 * (1 - 50 / 1920), rel=1e-6)
    penalty.backward()
    grads = [s.aux.grad for s in sites(model.net)]
    assert all(g is not None and bool((g > 0).all()) for g in grads)
    model.hparams.budget = 1920  # within budget: no penalty
    assert model._penalty().item() == 0.0


def test_aux_lr_puts_masks_in_their_own_group() -> None:
    model = _module("snl", aux_lr=0.05)
    optimizer = model.configure_optimizers()["optimizer"]
    lrs = sorted(g["lr"] for g in optimizer.param_groups)
    assert lrs == [1e-3, 0.05]
    alphas = sum(math.prod(s.shape) for s in sites(model.net))
    assert sum(p.numel() for p in optimizer.param_groups[1]["params"]) == alphas


def test_export_mask_counts_exactly() -> None:
    model = _module("autorep")
    first = next(iter(sites(model.net)))
    first.mask.zero_()
    masks = export_mask(model.net)
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == relu_count(model.net)[0] == 1920 - first.mask.numel()


def test_cost_model_is_linear_in_relus_and_checks_inputs() -> None:
    model = GcCostModel()
    assert model.gc_bytes_per_relu == 8 * 41 * 32
    one, two = model.estimate(1000, 0, 1), model.estimate(2000, 0, 1)
    assert two["online_comm_mb"] == pytest.approx(2 * one["online_comm_mb"])
    assert two["online_gc_compute_s"] == pytest.approx(2 * one["online_gc_compute_s"])
    assert model.estimate(0, 1000, 1)["online_comm_mb"] < one["online_comm_mb"] / 20
    with pytest.raises(ValueError, match="bandwidth_mbps"):
        GcCostModel(bandwidth_mbps=0)


def _five_steps(method: str) -> float:
    """Loss after 5 Adam steps of a width-4 resnet18_in on fixed 8×8 images (reference ops)."""
    torch.manual_seed(0)
    model = ReluBudgetModule(
        partial(torch.optim.Adam, lr=0.01),
        method=method,
        width=4,
        image_size=8,
        budget=200,
        lam=10.0 if method == "autorep" else 1e-3,
        dapa_steps=3,
        dapa_every=1,
        backend="reference",
    ).train()
    model.log = lambda *a, **k: None
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(16) % 10
    optimizer = model.configure_optimizers()["optimizer"]
    for step in range(5):
        loss = model.training_step((x, y), step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


@pytest.mark.parametrize("method", ["relu", "autorep", "snl"])
def test_golden_loss(method: str) -> None:
    golden = {"relu": GOLDEN_RELU, "autorep": GOLDEN_AUTOREP, "snl": GOLDEN_SNL}[method]
    assert _five_steps(method) == pytest.approx(golden, abs=1e-4)


def test_snl_schedule_grows_lambda_on_stalls_and_stops_within_budget() -> None:
    model = _module("snl", snl_patience=2, snl_growth=2.0, snl_min_drop=0.1)
    model.log = lambda *a, **k: None
    trainer = type("T", (), {"should_stop": False})()
    model._trainer = trainer
    alphas = [s.alpha for s in sites(model.net)]
    total = sum(a.numel() for a in alphas)

    def keep(n: int) -> None:
        flat = torch.zeros(total)
        flat[:n] = 1.0
        with torch.no_grad():
            for a, chunk in zip(alphas, flat.split([a.numel() for a in alphas]), strict=True):
                a.copy_(chunk.view_as(a))

    lam = model.lam
    keep(1500)  # a 22% drop from 1920: progress
    model._snl_check()
    keep(1450)  # 3%: below snl_min_drop, a stall
    model._snl_check()
    assert model.lam == lam
    keep(1440)  # the second stall in a row: λ doubles
    model._snl_check()
    assert model.lam == 2 * lam and not trainer.should_stop
    keep(50)
    model._snl_check()
    assert trainer.should_stop
