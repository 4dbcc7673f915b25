"""Synthetic skeleton actions on the NTU RGB+D 25-joint body with a cross-view split
(``datamodule=ntu_synthetic``): the whole skeleton pipeline runs without the licensed data.

The actions come from :func:`datamodules.skeleton_motion.synthesize_skeleton_actions`: twin
classes of joint-angle motions through forward kinematics, each performance rendered from three
camera azimuths about the vertical axis with independent joint noise per view. Train on −45° and
+45°, test on 0° (the cross-view shift of NTU's xview benchmark); validation holds out
performances of the train views.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from datamodules.skeleton import skeleton_model_kwargs
from datamodules.skeleton_motion import AZIMUTHS_DEG, synthesize_skeleton_actions
from effml.checks import check_int, check_range, with_defaults
from effml.errors import ConfigError

log = logging.getLogger(__name__)

TRAIN_AZIMUTHS_DEG = (-45.0, 45.0)
TEST_AZIMUTH_DEG = 0.0


class SyntheticSkeletonDataModule(pl.LightningDataModule):
    """Synthetic NTU-like skeleton actions: train on −45°/+45° views, test on the 0° view.

    Args:
        num_classes: action classes.
        samples_per_class_per_view: performances per class; each is rendered once per view.
        num_frames: frames per clip (T).
        batch_size: clips per batch.
        val_fraction: performances per class held out of training; their ±45° views are val.
        noise_std: joint noise (metres), drawn independently per view.
        seed: fixes the whole data set (classes, performances, noise).
    """

    def __init__(
        self,
        num_classes: int = 10,
        samples_per_class_per_view: int = 60,
        num_frames: int = 64,
        batch_size: int = 32,
        val_fraction: float = 0.1,
        noise_std: float = 0.02,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.check_config(self.hparams)
        self.num_classes, self.num_frames = int(num_classes), int(num_frames)
        self.samples_per_class = int(samples_per_class_per_view)
        self.batch_size = int(batch_size)
        self.val_fraction = float(val_fraction)
        self.num_val = max(1, round(self.val_fraction * self.samples_per_class))
        self.noise_std, self.seed = float(noise_std), int(seed)
        self.splits: dict[str, TensorDataset] = {}

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """Sizes, noise, and a held-out part that leaves training performances."""
        cfg = with_defaults(cls, cfg)
        check_int(cfg, "num_classes", minimum=2, example=10)
        check_int(cfg, "samples_per_class_per_view", minimum=1, example=40)
        check_int(cfg, "num_frames", minimum=2, example=32)
        check_int(cfg, "batch_size", minimum=1, example=32)
        check_range(cfg, "val_fraction", 0.0, 1.0, high_open=True, example=0.1)
        check_range(cfg, "noise_std", 0.0, example=0.02)
        check_int(cfg, "seed", minimum=0, example=0)
        samples = cfg["samples_per_class_per_view"]
        if max(1, round(cfg["val_fraction"] * samples)) >= samples:
            raise ConfigError(
                "samples_per_class_per_view",
                samples,
                f"with val_fraction={cfg['val_fraction']} leaves no training performance",
                example=40,
            )

    def model_kwargs(self) -> dict:
        """What a skeleton classifier needs to be built for this data."""
        return skeleton_model_kwargs(self.num_classes, self.num_frames)

    def setup(self, stage: str | None = None) -> None:
        """Generate the data once and split it into train/val (±45°) and test (0°) tensors."""
        if self.splits:
            return
        start = time.perf_counter()
        data = synthesize_skeleton_actions(
            self.num_classes,
            self.samples_per_class,
            self.num_frames,
            self.seed,
            AZIMUTHS_DEG,
            self.noise_std,
        )
        held_out = np.arange(len(data.labels)) % self.samples_per_class < self.num_val
        train_views = [AZIMUTHS_DEG.index(a) for a in TRAIN_AZIMUTHS_DEG]

        def tensors(views: list[int], keep: np.ndarray) -> TensorDataset:
            x = np.concatenate([data.clips[v][keep] for v in views])  # (n, 3, T, 25, 2)
            y = np.tile(data.labels[keep], len(views))
            return TensorDataset(torch.from_numpy(x), torch.from_numpy(y))

        self.splits = {
            "train": tensors(train_views, ~held_out),
            "val": tensors(train_views, held_out),
            "test": tensors([AZIMUTHS_DEG.index(TEST_AZIMUTH_DEG)], np.ones_like(held_out)),
        }
        log.info(
            "synthetic skeletons: %d classes, train %d, val %d, test %d clips, %.2f s",
            self.num_classes,
            *(len(self.splits[s]) for s in ("train", "val", "test")),
            time.perf_counter() - start,
        )

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        self.setup()
        return DataLoader(self.splits[split], batch_size=self.batch_size, shuffle=shuffle)

    def train_dataloader(self) -> DataLoader:
        """Shuffled −45°/+45° clips: x (B, 3, T, 25, 2) float32, y (B,) long."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Held-out performances at −45°/+45°."""
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        """Every performance at 0°, a view never trained on."""
        return self._loader("test")
