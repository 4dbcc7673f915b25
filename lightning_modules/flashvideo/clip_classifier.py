"""The judge of caption following: a small 3-D CNN that reads a one-digit Moving MNIST clip's
digit identity (10 classes) and its direction of motion (up, down, left, right), trained on
real rendered clips. FlashVideo's evaluation asks it what a generated clip shows and compares
the answer with the clip's caption; its accuracy on real test clips is the ceiling.

Trained as the ``clip_classifier`` stage of ``flashvideo_mmnist`` on clips of every
(digit, direction) pair, so held-out caption combinations are not held out from the judge.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from effml.errors import ConfigError
from lightning_modules.base import EffmlModule

NUM_DIGITS, NUM_DIRECTIONS = 10, 4


class ClipClassifier(EffmlModule):
    """Conv3d-BN-ReLU stages (space halved, time kept), global pooling, two linear heads.

    Args:
        channels: the stages' widths.
        in_channels: frame channels (1 for Moving MNIST).

    Shapes: video ``(B, T, C, H, W)`` in [0, 1] → digit logits ``(B, 10)`` and direction
    logits ``(B, 4)``.
    """

    def __init__(self, optimizer=None, scheduler=None, channels: tuple[int, ...] = (16, 32, 64),
                 in_channels: int = 1) -> None:  # fmt: skip
        super().__init__(optimizer, scheduler, monitor="val/acc")
        channels = [int(c) for c in channels]
        ClipClassifier.check_config({"channels": channels})
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        layers: list[nn.Module] = []
        width = in_channels
        for out in channels:
            layers += [
                nn.Conv3d(width, out, 3, padding=1, bias=False),
                nn.BatchNorm3d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool3d((1, 2, 2)),
            ]
            width = out
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool3d(1), nn.Flatten())
        self.digit_head = nn.Linear(width, NUM_DIGITS)
        self.direction_head = nn.Linear(width, NUM_DIRECTIONS)

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        channels = cfg.get("channels")
        if channels is not None and (not channels or min(int(c) for c in channels) < 1):
            raise ConfigError("channels", channels, "needs one or more positive widths",
                              [16, 32, 64])  # fmt: skip
        EffmlModule.check_config(cfg)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(video.transpose(1, 2))  # (B, C, T, H, W) for Conv3d
        return self.digit_head(features), self.direction_head(features)

    @torch.no_grad()
    def predict(self, video: torch.Tensor, batch_size: int = 64) -> tuple[torch.Tensor, ...]:
        """Predicted digit and direction ``(N,)`` each, for videos ``(N, T, C, H, W)``."""
        was_training = self.training
        self.eval()
        digits, directions = [], []
        for part in video.split(batch_size):
            d, m = self(part.to(self.device))
            digits.append(d.argmax(-1).cpu())
            directions.append(m.argmax(-1).cpu())
        self.train(was_training)
        return torch.cat(digits), torch.cat(directions)

    @staticmethod
    def targets(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The (digit, direction) labels of a batch of one-digit clips.

        Raises:
            ValueError: a clip holds two digits (the classifier reads one).
        """
        if (batch["digits"][:, 1] >= 0).any():
            raise ValueError(
                "ClipClassifier reads one-digit clips, but this batch has clips with two "
                "digits: set datamodule.num_digits=1"
            )
        return batch["digits"][:, 0], batch["directions"][:, 0]

    def _step(self, batch: dict, split: str) -> torch.Tensor:
        digit, direction = self.targets(batch)
        d_logits, m_logits = self(batch["video"])
        loss = F.cross_entropy(d_logits, digit) + F.cross_entropy(m_logits, direction)
        acc_digit = (d_logits.argmax(-1) == digit).float().mean()
        acc_direction = (m_logits.argmax(-1) == direction).float().mean()
        n = digit.shape[0]
        self.log(f"{split}/loss", loss, prog_bar=True, batch_size=n)
        self.log_dict({f"{split}/acc_digit": acc_digit, f"{split}/acc_direction": acc_direction,
                       f"{split}/acc": (acc_digit + acc_direction) / 2},
                      prog_bar=split != "train", batch_size=n)  # fmt: skip
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")
