"""The diffusion core under DeeDiff: VP schedules, the U-ViT, the samplers, the Fréchet
distance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_modules.diffusion.fid import feature_stats, frechet_distance
from lightning_modules.diffusion.samplers import sample, timestep_subsequence
from lightning_modules.diffusion.schedule import VPSchedule
from lightning_modules.diffusion.uvit import UViT


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_decreases_from_one_towards_zero(kind: str) -> None:
    s = VPSchedule(kind, 1000)
    a = s.alphas_cumprod
    assert a.dtype == torch.float64 and len(a) == 1000
    assert (a[1:] < a[:-1]).all()
    assert 0.99 < a[0] < 1 and a[-1] < 1e-3


def test_add_noise_is_the_vp_marginal() -> None:
    s = VPSchedule("linear", 1000)
    x0, noise = torch.ones(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    t = torch.tensor([0, 10, 500, 999])
    a = s.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    torch.testing.assert_close(s.add_noise(x0, noise, t), a.sqrt() + (1 - a).sqrt() * noise)


def tiny_uvit(**kw) -> UViT:
    torch.manual_seed(0)
    args = dict(image_size=8, in_channels=1, patch_size=2, embed_dim=16, depth=5, num_heads=2)
    return UViT(**{**args, **kw}).eval()


@pytest.mark.parametrize("num_classes", [0, 3])
def test_uvit_shapes_and_layerwise_pass_match_forward(num_classes: int) -> None:
    net = tiny_uvit(num_classes=num_classes)
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([1, 500, 999])
    y = torch.tensor([0, 1, 2]) if num_classes else None
    out = net(x, t, y)
    assert out.shape == x.shape
    seen = list(net.layers(x, t, y))
    assert [i for i, _, _ in seen] == list(range(5))
    assert seen[0][1].shape == (3, 64 // 4 + 1 + (num_classes > 0), 16)
    assert torch.equal(net.head(seen[-1][1]), out)


def test_uvit_long_skips_reach_the_output_blocks() -> None:
    net = tiny_uvit()
    assert [b.skip_linear is not None for b in net.blocks] == [False, False, False, True, True]
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 4])
    before = net(x, t)
    with torch.no_grad():
        net.blocks[3].skip_linear.weight[:, 16:] += 1.0  # the half that reads the skip
    assert not torch.allclose(net(x, t), before)


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"patch_size": 3}, "patch_size=3"), ({"depth": 4}, "odd depth"), ({"num_heads": 3}, "heads")],
)
def test_uvit_rejects_bad_sizes(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny_uvit(**kw)


def full(net: UViT):
    return lambda x, t: (net(x, t), torch.full((len(x),), net.depth))


@pytest.mark.parametrize("method", ["ddim", "ddpm", "dpm2"])
def test_same_seed_same_samples_other_seed_other_samples(method: str) -> None:
    net, s = tiny_uvit(), VPSchedule("cosine", 100)
    a = sample(full(net), s, (2, 1, 8, 8), steps=5, method=method, seed=1)
    b = sample(full(net), s, (2, 1, 8, 8), steps=5, method=method, seed=1)
    c = sample(full(net), s, (2, 1, 8, 8), steps=5, method=method, seed=2)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    calls = 9 if method == "dpm2" else 5  # dpm2: two calls in each of 4 steps, then x_0
    assert a.exit_layers.shape == (calls, 2) and (a.exit_layers == 5).all()
    assert a.timesteps.shape == (calls,)
    assert a.images.abs().max() <= 1


def test_dpm_solver_2_converges_at_second_order_on_gaussian_data() -> None:
    """Data N(0, c²I): the exact ε-prediction is σ x / (α²c² + σ²) and the probability-flow
    ODE scales x by √(α²c² + σ²), so the exact sample from the same noise is known. DDIM's
    error falls as 1/steps, DPM-Solver-2's as 1/steps²."""
    s, c = VPSchedule("linear", 1000), 0.25
    ab = s.alphas_cumprod

    def oracle(x: torch.Tensor, t: torch.Tensor):
        a = s.alpha_bar(t).double().view(-1, 1, 1, 1)
        eps = (1 - a).sqrt() * x / (a * c * c + 1 - a)
        return eps.to(x.dtype), torch.ones(len(x), dtype=torch.long)

    x_T = torch.randn((64, 1, 4, 4), generator=torch.Generator().manual_seed(0)).double()
    x_0 = x_T * ((ab[0] * c * c + 1 - ab[0]) / (ab[-1] * c * c + 1 - ab[-1])).sqrt()
    eps_0 = (1 - ab[0]).sqrt() * x_0 / (ab[0] * c * c + 1 - ab[0])
    exact = ((x_0 - (1 - ab[0]).sqrt() * eps_0) / ab[0].sqrt()).clamp(-1, 1)

    def error(method: str, steps: int) -> float:
        out = sample(oracle, s, x_T.shape, steps=steps, method=method, seed=0,
                     clip_denoised=False)  # fmt: skip
        return (out.images.double() - exact).abs().max().item()

    ddim = [error("ddim", n) for n in (20, 50)]
    dpm2 = [error("dpm2", n) for n in (20, 50)]
    order = lambda e: math.log(e[0] / e[1]) / math.log(50 / 20)  # noqa: E731
    assert 0.7 < order(ddim) < 1.3 and order(dpm2) > 1.6
    assert dpm2[1] < 0.35 * ddim[1]


def test_ddim_with_a_perfect_denoiser_recovers_the_data() -> None:
    """A denoiser that knows x0 gives back x0 exactly (up to float) through DDIM's update."""
    s, x0 = VPSchedule("linear", 1000), torch.rand(2, 1, 4, 4) * 2 - 1

    def oracle(x: torch.Tensor, t: torch.Tensor):
        a = s.alpha_bar(t).view(-1, 1, 1, 1)
        return (x - a.sqrt() * x0) / (1 - a).sqrt(), torch.ones(len(x), dtype=torch.long)

    out = sample(oracle, s, x0.shape, steps=10, method="ddim", seed=0)
    torch.testing.assert_close(out.images, x0, atol=1e-4, rtol=0)


def test_timestep_subsequence_runs_noisiest_first() -> None:
    assert timestep_subsequence(1000, 4).tolist() == [999, 666, 333, 0]
    with pytest.raises(ValueError, match="steps=0"):
        timestep_subsequence(1000, 0)


def test_frechet_distance_of_gaussians() -> None:
    rng = np.random.default_rng(0)
    f = rng.normal(size=(4000, 3))
    mu, sigma = feature_stats(f)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-6)
    # N(0, I) vs N(m, 4I): |m|^2 + 3 (1 + 4 - 2·2)
    m = np.array([1.0, 2.0, 0.0])
    assert frechet_distance(np.zeros(3), np.eye(3), m, 4 * np.eye(3)) == pytest.approx(5 + 3)
