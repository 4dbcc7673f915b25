"""DeeDiff: the losses of arXiv:2309.17074 eqs. 5-8, early exit (bit-identical when it never
fires, monotone in the threshold), the static baseline, and the errors raised before work."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from effml.errors import CheckpointError, ConfigError
from lightning_modules.diffusion import DeeDiffModule, DiffusionModule
from lightning_modules.diffusion.classifier import FeatureClassifier
from lightning_modules.diffusion.deediff import StaticExitDenoiser, static_plan

SIZES = dict(in_channels=1, image_size=8, patch_size=2, embed_dim=16, depth=5, num_heads=2)


def tiny(cls=DeeDiffModule, **kw):
    torch.manual_seed(0)
    opt = partial(torch.optim.AdamW, lr=1e-3)
    return cls(opt, **{**SIZES, "ema_decay": 0.9, "sample_steps": 4, **kw}).eval()


def spread_heads(module: DeeDiffModule) -> DeeDiffModule:
    """Heads whose uncertainties spread over (0, 1), so thresholds split the samples."""
    torch.manual_seed(1)
    for head in module.ema_heads:
        torch.nn.init.normal_(head.linear.weight, std=2.0)
    return module


@pytest.mark.parametrize("rule", ["sample", "batch"])
def test_threshold_that_never_fires_is_bit_identical_to_the_full_model(rule: str) -> None:
    m = tiny()
    full = m.sample(6, seed=3)
    early = m.sample(6, seed=3, denoiser=m.early_exit_denoiser(0.0, rule))
    assert torch.equal(full.images, early.images)
    assert (early.exit_layers == m.ema.depth).all()


def test_fraction_of_layers_falls_monotonically_as_the_threshold_loosens() -> None:
    m = spread_heads(tiny())
    x, t = torch.randn(64, 1, 8, 8), torch.randint(0, 1000, (64,))
    thresholds = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
    per_call = [m.early_exit_denoiser(thr)(x, t)[1].float().mean().item() for thr in thresholds]
    assert per_call == sorted(per_call, reverse=True)
    assert per_call[0] == m.ema.depth and per_call[-1] == 1 and len(set(per_call)) > 3
    sampled = [
        m.sample(16, seed=0, denoiser=m.early_exit_denoiser(thr)).exit_layers.float().mean()
        for thr in thresholds
    ]
    assert sampled == sorted(sampled, reverse=True) and sampled[0] > sampled[-1]


def test_an_exited_sample_gets_its_layers_head_prediction() -> None:
    m = spread_heads(tiny())
    x, t = torch.randn(32, 1, 8, 8), torch.randint(0, 1000, (32,))
    eps, exit_layer = m.early_exit_denoiser(0.5)(x, t)
    with torch.no_grad():
        preds, u = m.layer_outputs(m.ema, m.ema_heads, x, t)
    first = [next((i + 1 for i in range(4) if u[i, b] < 0.5), 5) for b in range(32)]
    assert exit_layer.tolist() == first
    for b, layer in enumerate(first):
        torch.testing.assert_close(eps[b], preds[layer - 1][b], atol=1e-5, rtol=1e-5)


def test_batch_rule_waits_for_patience_blocks() -> None:
    m = spread_heads(tiny())
    x, t = torch.randn(16, 1, 8, 8), torch.randint(0, 1000, (16,))
    with torch.no_grad():
        _, u = m.layer_outputs(m.ema, m.ema_heads, x, t)
    thr = float(u.mean(1).max()) + 1e-3  # every block's batch mean is under it
    _, one = m.early_exit_denoiser(thr, "batch", 1)(x, t)
    _, three = m.early_exit_denoiser(thr, "batch", 3)(x, t)
    assert (one == 1).all() and (three == 3).all()


def test_losses_follow_the_paper() -> None:
    m = tiny()
    noise = torch.randn(3, 1, 8, 8)
    preds = [noise + 0.1 * (i + 1) for i in range(5)]
    u = torch.full((4, 3), 0.25, requires_grad=True)
    parts = m.deediff_losses(preds, u, noise)
    target = torch.tanh(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    assert parts["simple"].item() == pytest.approx(0.25)
    assert parts["u"].item() == pytest.approx(((0.25 - target) ** 2).sum().item(), rel=1e-5)
    ual = sum(0.75 * (0.1 * (i + 1)) ** 2 for i in range(4))
    assert parts["ual"].item() == pytest.approx(ual, rel=1e-5)
    assert parts["u"].requires_grad
    assert not parts["ual"].requires_grad  # L_UAL weights by u, it does not train u


def test_training_step_trains_heads_and_backbone_and_the_ema_follows() -> None:
    m = tiny().train()
    batch = (torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    loss = m.loss(batch, "val")
    loss.backward()
    assert m.heads[0].linear.weight.grad.abs().sum() > 0
    assert m.net.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    before = m.ema_heads[0].linear.weight.clone()
    with torch.no_grad():
        m.heads[0].linear.weight.add_(1.0)
    m.update_ema()  # step 0 of the warm-up: decay min(0.9, 1/10)
    torch.testing.assert_close(m.ema_heads[0].linear.weight, before + 0.9)


def test_adadiff_heads_read_detached_tokens() -> None:
    m = tiny(uncertainty="adadiff")
    h = torch.randn(2, 17, 16, requires_grad=True)
    u = m.heads[0](h, torch.randn(2, 16))
    assert u.shape == (2,)
    assert not u.requires_grad or torch.autograd.grad(u.sum(), h, allow_unused=True)[0] is None


def test_static_plan_matches_the_cost() -> None:
    assert static_plan(0.6, depth=10, steps=20, shallow_depth=3) == (3, 11)
    shallow, k = static_plan(0.2, depth=10, steps=20, shallow_depth=3)
    assert (shallow, k) == (2, 20)
    m = tiny()
    res = m.sample(2, seed=0, denoiser=StaticExitDenoiser(m.ema, 2, t_split=500))
    assert res.exit_layers[:, 0].tolist() == [2, 2, 5, 5]  # t = 999, 666 | 333, 0


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": -0.1}, "threshold"),
        ({"exit_rule": "mean"}, "exit_rule"),
        ({"lambda_u": -1.0}, "lambda_u"),
        ({"depth": 4}, "depth"),
        ({"patience": 0}, "patience"),
    ],
)
def test_bad_settings_fail_before_the_model_is_built(kw: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        DeeDiffModule.check_config({**SIZES, **kw})
    with pytest.raises(ConfigError, match=key):
        tiny(**kw)


def test_bad_sampling_threshold_names_the_value() -> None:
    with pytest.raises(ConfigError, match="threshold=2"):
        tiny().early_exit_denoiser(2.0)


def save(module: pl.LightningModule, path: Path) -> str:
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu")
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return str(path)


def test_fine_tuning_starts_from_the_backbones_ema(tmp_path: Path) -> None:
    backbone = tiny(DiffusionModule)
    with torch.no_grad():
        backbone.ema.pos_embed.add_(1.0)
    ckpt = save(backbone, tmp_path / "backbone.ckpt")
    m = tiny(backbone_ckpt=ckpt)
    assert torch.equal(m.net.pos_embed, backbone.ema.pos_embed)
    assert torch.equal(m.ema.pos_embed, backbone.ema.pos_embed)


def test_checkpoint_of_another_architecture_fails_before_work(tmp_path: Path) -> None:
    wider = save(tiny(DiffusionModule, embed_dim=32), tmp_path / "wider.ckpt")
    with pytest.raises(CheckpointError, match="does not fit this U-ViT.*embed_dim"):
        tiny(backbone_ckpt=wider)
    classifier = FeatureClassifier(None, in_channels=1, num_classes=10)
    other = save(classifier, tmp_path / "classifier.ckpt")
    with pytest.raises(CheckpointError, match="backbone_ckpt"):
        tiny(backbone_ckpt=other)


def test_golden_loss_after_a_few_steps() -> None:
    """A silent change to the model, the losses or the noising changes this number."""
    torch.manual_seed(0)
    m = tiny().train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, 8, 8, generator=gen)
    batch = (x, torch.zeros(8, dtype=torch.long))
    for _ in range(3):
        opt.zero_grad()
        loss = m.loss(batch, "val")
        loss.backward()
        opt.step()
    assert loss.item() == pytest.approx(GOLDEN_LOSS, abs=1e-4)


GOLDEN_LOSS = 2.9220802783966064


def test_checkpoints_load_with_weights_only(tmp_path: Path) -> None:
    """Hydra hands lists over as ListConfig; the hyperparameters must be plain to unpickle."""
    from omegaconf import OmegaConf

    half = OmegaConf.create({"v": [0.5]}).v
    for module in (
        tiny(pixel_mean=half, pixel_std=half),
        FeatureClassifier(
            None, in_channels=1, num_classes=10, channels=OmegaConf.create({"c": [4]}).c
        ),
    ):
        path = save(module, tmp_path / "m.ckpt")
        assert torch.load(path, weights_only=True)["hyper_parameters"]
