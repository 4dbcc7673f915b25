"""The small CNN classifier whose penultimate features give effml's FID when the Inception
weights are absent (``fid/classifier``): trained on the same dataset as the diffusion model,
on images in the same [-1, 1] range the samplers produce."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lightning_modules.classification import ClassificationModule


class FeatureClassifier(ClassificationModule):
    """Conv-BN-ReLU stages (each halving the side), global average pooling, a linear layer.

    Args:
        in_channels, num_classes: from the datamodule.
        channels: the stages' widths; the feature size is the last.
        pixel_mean, pixel_std: the datamodule's normalisation (batches are mapped to [-1, 1]).
    """

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer] | None,
        in_channels: int,
        num_classes: int,
        image_size: int | None = None,
        scheduler: Callable[..., object] | None = None,
        channels: tuple[int, ...] = (32, 64, 128),
        pixel_mean: tuple[float, ...] = (0.5,),
        pixel_std: tuple[float, ...] = (0.5,),
    ) -> None:
        super().__init__(optimizer, scheduler, num_classes)
        # plain lists, not Hydra's ListConfig, so checkpoints load with weights_only=True
        channels = [int(c) for c in channels]
        pixel_mean, pixel_std = [float(m) for m in pixel_mean], [float(s) for s in pixel_std]
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        layers: list[nn.Module] = []
        width = in_channels
        for out in channels:
            layers += [
                nn.Conv2d(width, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.Conv2d(out, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            width = out
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(width, num_classes)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, -1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, -1, 1, 1), False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(B, channels[-1])`` of images in [-1, 1] ``(B, C, H, W)``."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unit = (x * self.pixel_std + self.pixel_mean) * 2 - 1
        return self.fc(self.features(unit))
