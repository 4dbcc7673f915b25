"""Small-image classification data (CIFAR-10/100, MNIST, Tiny-ImageNet) for AutoReP, SNL
and the spiking nets.

Images are decoded once into uint8 arrays cached under ``cache_dir/images`` (one file per
source, with a record of the source files' names, sizes and times: a changed source is decoded
again), so 50k small JPEGs cost one decode, not one per epoch.
Batches are augmented and normalised as whole tensors in the loader's collate function:
random crop with zero padding (4 px at 32×32) and horizontal flip for training, as in the
ResNet/SNL/AutoReP recipes; evaluation batches are only normalised.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.image_sources import SPECS, ImageSpec, download, locate, read_images
from datamodules.provenance import (
    Fingerprint,
    fingerprint,
    read_record,
    rebuild_reason,
    write_record,
)
from effml.checks import check_choice, check_int, with_defaults
from effml.errors import ConfigError, MissingDataError

log = logging.getLogger(__name__)


class ArrayImageDataset(Dataset):
    """Decoded images ``(N, H, W, C)`` uint8 and labels; items are ``(C, H, W)`` uint8."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images.permute(0, 3, 1, 2)  # (N, C, H, W), a view
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


@dataclass
class BatchTransform:
    """Collate: stack, then (training) random-crop + flip, then normalise to float32.

    Shapes: a list of ((C, H, W) uint8, label) → ((B, C, H, W) float32, (B,) int64).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 0
    flip: bool = False

    def __call__(
        self, items: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([im for im, _ in items])  # (B, C, H, W) uint8
        y = torch.stack([torch.as_tensor(lb) for _, lb in items]).long()
        return self.augment(x), y

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        p = self.crop_padding
        if p:
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            oy = torch.randint(0, 2 * p + 1, (b, 1, 1))
            ox = torch.randint(0, 2 * p + 1, (b, 1, 1))
            rows = oy + torch.arange(h).view(1, h, 1)  # (B, H, 1)
            cols = ox + torch.arange(w).view(1, 1, w)  # (B, 1, W)
            x = padded[torch.arange(b).view(b, 1, 1), :, rows, cols].permute(0, 3, 1, 2)
        if self.flip:
            flip = torch.rand(b) < 0.5
            x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
        return self.normalize(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (x.float() / 255.0 - mean) / std


def balanced_subset(labels: np.ndarray, count: int, num_classes: int) -> np.ndarray:
    """Indices of the first ``count // num_classes`` images of each class (sorted)."""
    per_class = count // num_classes
    if per_class < 1:
        raise ValueError(
            f"datamodule.train_subset={count} gives no image per class ({num_classes} classes): "
            f"use at least {num_classes}"
        )
    picks = [np.flatnonzero(labels == c)[:per_class] for c in range(num_classes)]
    return np.sort(np.concatenate(picks))


class ImageDataModule(pl.LightningDataModule):
    """Train / validation (held out of train) / test loaders over a cached decoded dataset.

    Args:
        name: ``cifar10`` | ``cifar100`` | ``mnist`` | ``tinyimagenet``.
        data_dir: the raw data root (read only; e.g. ``DATA_DIR=../shared/data``).
        cache_dir: where decoded arrays are cached (writable).
        batch_size: training batch size; evaluation uses ``eval_batch_size`` (default same).
        val_size: images held out of the training set for validation (class-balanced picks
            from a fixed permutation); 0 validates on the test set, as many papers do.
        train_subset: train on the first ``n // classes`` images of each class (CPU runs).
        test_subset: evaluate on the first ``n // classes`` test images of each class.
        augment: the papers' random crop and flip on training batches.
        download: fetch the dataset into ``data_dir`` when it is absent (needs a network).
        seed: fixes the validation split, independent of the training seed.
    """

    def __init__(
        self,
        name: str,
        data_dir: str,
        cache_dir: str,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        val_size: int = 5000,
        train_subset: int | None = None,
        test_subset: int | None = None,
        augment: bool = True,
        download: bool = False,
        pin_memory: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.check_config(self.hparams)
        self.spec: ImageSpec = SPECS[name]
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir) / "images"
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """The dataset name, loader sizes, and subsets of at least one image per class."""
        cfg = with_defaults(cls, cfg)
        check_choice(cfg, "name", sorted(SPECS))
        check_int(cfg, "batch_size", minimum=1, example=128)
        check_int(cfg, "eval_batch_size", minimum=1, example=512)
        check_int(cfg, "num_workers", minimum=0, example=0)
        check_int(cfg, "val_size", minimum=0, example=5000)
        check_int(cfg, "seed", minimum=0, example=0)
        classes = SPECS[cfg["name"]].num_classes
        if 0 < cfg["val_size"] < classes:
            raise ConfigError(
                "val_size",
                cfg["val_size"],
                f"holds out no image per class ({classes} classes): use 0 (validate on the "
                f"test set) or at least {classes}",
                example=5000,
            )
        for key in ("train_subset", "test_subset"):
            check_int(cfg, key, minimum=classes, example=100 * classes)

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    def model_kwargs(self) -> dict:
        return {
            "in_channels": self.spec.channels,
            "num_classes": self.spec.num_classes,
            "image_size": self.spec.size,
        }

    def _source(self, split: str) -> tuple[Path, Fingerprint]:
        """The file or folder ``split`` is read from and its files' fingerprint."""
        try:
            source = locate(self.data_dir, self.hparams.name, split)
        except MissingDataError:
            if not self.hparams.download:
                raise
            download(self.data_dir, self.hparams.name)
            source = locate(self.data_dir, self.hparams.name, split)
        source = source.resolve()
        if source.is_dir():
            return source, fingerprint(source)
        return source, fingerprint(source.parent, [source])

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Decoded ``(images, labels)`` of ``split``, from the cache when it is current."""
        name = self.hparams.name
        source, files = self._source(split)
        digest = hashlib.sha1(str(source).encode()).hexdigest()[:12]
        path = self.cache_dir / f"{name}_{split}_{digest}.npz"
        reason = rebuild_reason(read_record(path), source, files)
        if path.is_file() and reason is None:
            log.info("%s %s: read from the cache %s, built from %s", name, split, path, source)
            with np.load(path) as cached:
                return cached["images"], cached["labels"]
        if path.is_file():
            log.info("%s %s: rebuilding the cache %s: %s", name, split, path, reason)
        images, labels, _ = read_images(self.data_dir, name, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        # a name of its own per writer: two runs started together (a multirun, a job array)
        # both decode and cache, and a shared temporary name made the slower rename fail
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.npz")
        try:
            np.savez(tmp, images=images, labels=labels)
            tmp.replace(path)  # atomic; the last writer wins with the same content
        finally:
            tmp.unlink(missing_ok=True)
        write_record(path, source, files)
        log.info(
            "%s %s: decoded %d images from %s, cached in %s", name, split, len(labels), source, path
        )
        return images, labels

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        hp = self.hparams
        images, labels = self.load_split("train")
        rng = np.random.default_rng(hp.seed)
        order = rng.permutation(len(labels))
        if hp.val_size:
            if hp.val_size >= len(labels):
                raise ValueError(f"datamodule.val_size={hp.val_size} leaves no training images")
            held = balanced_subset(labels[order], hp.val_size, self.num_classes)
            val_idx = np.sort(order[held])
            train_mask = np.ones(len(labels), dtype=bool)
            train_mask[val_idx] = False
            train_idx = np.flatnonzero(train_mask)
        else:
            val_idx, train_idx = None, np.arange(len(labels))
        if hp.train_subset:
            train_idx = train_idx[
                balanced_subset(labels[train_idx], hp.train_subset, self.num_classes)
            ]
        test_images, test_labels = self.load_split("test")
        if hp.test_subset:
            keep = balanced_subset(test_labels, hp.test_subset, self.num_classes)
            test_images, test_labels = test_images[keep], test_labels[keep]
        self.train_set = self._dataset(images[train_idx], labels[train_idx])
        self.test_set = self._dataset(test_images, test_labels)
        self.val_set = (
            self._dataset(images[val_idx], labels[val_idx])
            if val_idx is not None
            else self.test_set
        )
        log.info(
            "%s: %d train, %d val, %d test images",
            hp.name,
            len(self.train_set),
            len(self.val_set),
            len(self.test_set),
        )

    @staticmethod
    def _dataset(images: np.ndarray, labels: np.ndarray) -> ArrayImageDataset:
        return ArrayImageDataset(
            torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)
        )

    def transform(self, train: bool) -> BatchTransform:
        augment = train and self.hparams.augment
        return BatchTransform(
            self.spec.mean,
            self.spec.std,
            crop_padding=self.spec.crop_padding if augment else 0,
            flip=self.spec.flip and augment,
        )

    def _loader(self, dataset: Dataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a loader")
        hp = self.hparams
        return DataLoader(
            dataset,
            batch_size=hp.batch_size if train else (hp.eval_batch_size or hp.batch_size),
            shuffle=train,
            drop_last=False,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
            pin_memory=hp.pin_memory,
            collate_fn=self.transform(train),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)
