"""Noise-prediction training of a U-ViT on a VP schedule (arXiv:2006.11239 eq. 14,
L_simple = E‖ε − ε_θ(x_t, t)‖²), with an exponential moving average of the weights that the
samplers use."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from effml.checks import check_choice, check_int, check_range, with_defaults
from effml.errors import ConfigError
from lightning_modules.base import EffmlModule
from lightning_modules.diffusion.samplers import SAMPLERS, SampleResult, sample
from lightning_modules.diffusion.schedule import SCHEDULES, VPSchedule
from lightning_modules.diffusion.uvit import UViT

Batch = tuple[torch.Tensor, torch.Tensor]


class DiffusionModule(EffmlModule):
    """A U-ViT ε-predictor trained with L_simple; ``ema`` holds the averaged weights.

    Batches come normalised by the image datamodule (``(x − mean) / std``); the module maps
    them back to [-1, 1] with ``pixel_mean``/``pixel_std`` before adding noise.

    Args:
        in_channels, image_size, num_classes: from the datamodule.
        patch_size, embed_dim, depth, num_heads, mlp_ratio: the U-ViT (see :class:`UViT`).
        class_conditional: add a class token (labels from the batch).
        schedule: ``linear`` or ``cosine``; ``num_train_steps``: T.
        ema_decay: EMA factor per optimizer step.
        pixel_mean, pixel_std: the datamodule's normalisation, per channel.
        sampler, sample_steps: what :meth:`sample` uses by default.
    """

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer] | None,
        in_channels: int,
        image_size: int,
        num_classes: int = 0,
        scheduler: Callable[..., object] | None = None,
        patch_size: int = 2,
        embed_dim: int = 512,
        depth: int = 13,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        class_conditional: bool = False,
        schedule: str = "linear",
        num_train_steps: int = 1000,
        ema_decay: float = 0.9999,
        pixel_mean: tuple[float, ...] = (0.5,),
        pixel_std: tuple[float, ...] = (0.5,),
        sampler: str = "ddim",
        sample_steps: int = 50,
    ) -> None:
        super().__init__(optimizer, scheduler, monitor="val/loss")
        # plain lists, not Hydra's ListConfig, so checkpoints load with weights_only=True
        pixel_mean, pixel_std = [float(m) for m in pixel_mean], [float(s) for s in pixel_std]
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.check_config(self.hparams)
        self.net = UViT(
            image_size,
            in_channels,
            patch_size,
            embed_dim,
            depth,
            num_heads,
            mlp_ratio,
            num_classes if class_conditional else 0,
        )
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.schedule = VPSchedule(schedule, num_train_steps)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, -1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, -1, 1, 1), False)

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """Sizes, schedule, EMA factor and sampler before any data is read."""
        cfg = with_defaults(cls, cfg)
        EffmlModule.check_config(cfg)
        check_int(cfg, "patch_size", minimum=1, example=2)
        check_int(cfg, "embed_dim", minimum=1, example=512)
        check_int(cfg, "depth", minimum=1, example=13)
        if cfg["depth"] is not None and cfg["depth"] % 2 == 0:
            problem = "U-ViT needs an odd depth (in + mid + out blocks)"
            raise ConfigError("depth", cfg["depth"], problem, example=13)
        check_int(cfg, "num_heads", minimum=1, example=8)
        check_choice(cfg, "schedule", SCHEDULES)
        check_int(cfg, "num_train_steps", minimum=2, example=1000)
        check_range(cfg, "ema_decay", 0.0, 1.0, high_open=True, example=0.9999)
        check_choice(cfg, "sampler", SAMPLERS)
        check_int(cfg, "sample_steps", minimum=1, maximum=cfg["num_train_steps"], example=50)

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(trained, averaged) module pairs the EMA updates."""
        return [(self.net, self.ema)]

    @torch.no_grad()
    def update_ema(self) -> None:
        """One EMA step with the warm-up ``min(ema_decay, (1 + n) / (10 + n))`` at optimizer
        step n, so a short run's average is not dominated by the initial weights."""
        n = self.trainer.global_step if self._trainer is not None else 0
        decay = min(self.hparams.ema_decay, (1 + n) / (10 + n))
        for online, averaged in self.ema_pairs():
            for p, q in zip(online.parameters(), averaged.parameters(), strict=True):
                q.lerp_(p, 1 - decay)

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        self.update_ema()
        super().on_train_batch_end(outputs, batch, batch_idx)

    def to_unit_range(self, x: torch.Tensor) -> torch.Tensor:
        """Datamodule-normalised images → [-1, 1]."""
        return (x * self.pixel_std + self.pixel_mean) * 2 - 1

    def noised(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        """``(x_t, t, ε, y)`` for a batch: uniform t, Gaussian ε (arXiv:2006.11239 Alg. 1)."""
        x, y = batch
        x0 = self.to_unit_range(x)
        t = torch.randint(0, self.schedule.num_steps, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        labels = y if self.hparams.class_conditional else None
        return self.schedule.add_noise(x0, noise, t), t, noise, labels

    def loss(self, batch: Batch, stage: str) -> torch.Tensor:
        xt, t, noise, y = self.noised(batch)
        loss = F.mse_loss(self.net(xt, t, y), noise)
        self.log(f"{stage}/loss", loss, prog_bar=True, on_epoch=True, on_step=stage == "train")
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self.loss(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.loss(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self.loss(batch, "test")

    def full_denoiser(self, net: UViT | None = None):
        """The plain denoiser ``(x, t) -> (ε, depth)`` of ``net`` (default: the EMA)."""
        net = net or self.ema

        def denoise(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return net(x, t), torch.full((x.shape[0],), net.depth, dtype=torch.long)

        return denoise

    def sample(self, num: int, seed: int = 0, denoiser=None, **kwargs: Any) -> SampleResult:
        """``num`` samples from ``denoiser`` (default: the full EMA model), in [-1, 1]."""
        hp = self.hparams
        kwargs = {"steps": hp.sample_steps, "method": hp.sampler, **kwargs}
        shape = (num, hp.in_channels, hp.image_size, hp.image_size)
        return sample(
            denoiser or self.full_denoiser(),
            self.schedule,
            shape,
            seed=seed,
            device=self.device,
            **kwargs,
        )
