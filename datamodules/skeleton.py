"""NTU RGB+D skeletons: ST-GCN's augmentations and the datamodule over ST-GCN's prepared arrays
(the raw ``.skeleton`` files are read by :mod:`datamodules.ntu_raw`).

Prepared layout (ST-GCN's ``tools/ntu_gendata.py``, written by ``scripts/prepare_ntu.py``)::

    <data_dir>/<subdir>/train_data.npy   (N, 3, 300, 25, 2) float32
    <data_dir>/<subdir>/train_label.pkl  (sample_names, labels)
    <data_dir>/<subdir>/val_data.npy     the benchmark's test split (ST-GCN calls it "val")
    <data_dir>/<subdir>/val_label.pkl

Joints are 0-based here (the dataset's joint k is index k - 1); index 1 is "middle of the spine".
"""

from __future__ import annotations

import logging
import math
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.ntu_raw import NUM_JOINTS
from effml.checks import check_choice, check_int, check_range, with_defaults
from effml.errors import ConfigError, MissingDataError

log = logging.getLogger(__name__)

DATA_FILES = ("train_data.npy", "train_label.pkl", "val_data.npy", "val_label.pkl")
ROSE_LAB_URL = "https://rose1.ntu.edu.sg/dataset/actionRecognition/"


def random_shift(x: torch.Tensor) -> torch.Tensor:
    """Move the non-empty frames to a random offset in the clip (ST-GCN ``tools.random_shift``).

    Shapes:
        x (C, T, V, M) → (C, T, V, M)
    """
    valid = torch.nonzero(x.abs().sum(dim=(0, 2, 3)) > 0).flatten()
    if valid.numel() == 0:
        return x
    begin, end = int(valid[0]), int(valid[-1]) + 1
    offset = int(torch.randint(0, x.shape[1] - (end - begin) + 1, ()))
    shifted = torch.zeros_like(x)
    shifted[:, offset : offset + end - begin] = x[:, begin:end]
    return shifted


def random_move(
    x: torch.Tensor,
    angles: Sequence[float] = (-10.0, -5.0, 0.0, 5.0, 10.0),
    scales: Sequence[float] = (0.9, 1.0, 1.1),
    translations: Sequence[float] = (-0.2, -0.1, 0.0, 0.1, 0.2),
) -> torch.Tensor:
    """Rotate, scale and translate x, y by values drawn at the clip's start and end and
    interpolated linearly over time (ST-GCN ``tools.random_move``, one move).

    Shapes:
        x (C, T, V, M) → (C, T, V, M)
    """
    frames = x.shape[1]

    def ramp(candidates: Sequence[float]) -> torch.Tensor:
        ends = torch.tensor(candidates, dtype=x.dtype)[torch.randint(len(candidates), (2,))]
        return torch.linspace(float(ends[0]), float(ends[1]), frames, dtype=x.dtype)

    angle = ramp(angles) * (math.pi / 180.0)
    scale, shift_x, shift_y = ramp(scales), ramp(translations), ramp(translations)
    cos, sin = (torch.cos(angle) * scale)[:, None, None], (torch.sin(angle) * scale)[:, None, None]
    moved = x.clone()
    moved[0] = cos * x[0] - sin * x[1] + shift_x[:, None, None]
    moved[1] = sin * x[0] + cos * x[1] + shift_y[:, None, None]
    return moved


def _check_window(cfg: Mapping[str, Any]) -> None:
    """``window`` is ``[start, end]`` frames with 0 <= start < end, or None for whole clips."""
    window = cfg.get("window")
    if window is None:
        return
    try:
        start, end = (int(b) for b in window)
        valid = 0 <= start < end
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ConfigError(
            "window",
            list(window) if isinstance(window, (list, tuple)) else window,
            "need [start, end] with 0 <= start < end (LinGCN's 256-frame crop is [22, 278]), "
            "or null for whole clips",
            example=[22, 278],
        )


def skeleton_model_kwargs(num_classes: int, num_frames: int) -> dict:
    """What a skeleton classifier (ST-GCN) needs to be built for this data."""
    return {
        "in_channels": 3,
        "num_classes": int(num_classes),
        "num_nodes": NUM_JOINTS,
        "num_frames": int(num_frames),
    }


class PreparedSkeletons(Dataset):
    """Clips of a prepared ``*_data.npy``, memory-mapped lazily (each worker opens its own map).

    Shapes:
        item: x (3, T, 25, M) float32 (T cropped to ``window``), y () long
    """

    def __init__(
        self,
        path: Path,
        labels: np.ndarray,
        indices: np.ndarray,
        window: tuple[int, int] | None = None,
        random_shift: bool = False,
        random_move: bool = False,
    ) -> None:
        self.path, self.labels, self.indices, self.window = path, labels, indices, window
        self.random_shift, self.random_move = random_shift, random_move
        self._data: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._data is None:
            self._data = np.load(self.path, mmap_mode="r")
        index = int(self.indices[item])
        start, end = self.window or (0, self._data.shape[2])
        if self.random_shift:
            x = random_shift(torch.from_numpy(np.array(self._data[index], dtype=np.float32)))
            x = x[:, start:end]
        else:
            x = torch.from_numpy(np.array(self._data[index, :, start:end], dtype=np.float32))
        if self.random_move:
            x = random_move(x)
        return x, torch.tensor(int(self.labels[index]), dtype=torch.long)


def _read_labels(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, "rb") as f:
        names, labels = pickle.load(f)
    return list(names), np.asarray(labels, dtype=np.int64)


class NTUSkeletonDataModule(pl.LightningDataModule):
    """NTU RGB+D 60/120 from ST-GCN's prepared arrays; train, a held-out val part, test.

    Missing files raise :class:`MissingDataError` at construction (so a run fails before any
    model is built) and again in :meth:`setup`.

    Args:
        data_dir: the data root (``DATA_DIR`` / ``paths.data_dir``).
        subdir: the prepared folder under it, e.g. ``NTU-RGB-D/xview``; its name (xview, xsub,
            xset) is the benchmark the error message's prepare command uses.
        window: ``[start, end)`` frames kept (LinGCN: [22, 278], 256 frames) or None for all.
        batch_size: clips per batch.
        num_workers: DataLoader workers.
        num_classes: 60 (NTU-60) or 120 (NTU-120).
        val_fraction: part of ``train`` held out for validation (seeded); 0 validates on the
            test split, as ST-GCN and LinGCN do.
        seed: seeds the held-out part.
        random_shift: ST-GCN's random temporal shift of training clips.
        random_move: ST-GCN's random rotation/scale/translation of training clips.
    """

    def __init__(
        self,
        data_dir: str,
        subdir: str = "NTU-RGB-D/xview",
        window: Sequence[int] | None = (22, 278),
        batch_size: int = 64,
        num_workers: int = 0,
        num_classes: int = 60,
        val_fraction: float = 0.05,
        seed: int = 0,
        random_shift: bool = False,
        random_move: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.check_config(self.hparams)
        self.data_dir = Path(os.path.abspath(os.path.expanduser(data_dir)))
        self.subdir = str(subdir)
        self.folder = self.data_dir / self.subdir
        self.window = None if window is None else (int(window[0]), int(window[1]))
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.num_classes = int(num_classes)
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)
        self.random_shift, self.random_move = bool(random_shift), bool(random_move)
        self.splits: dict[str, PreparedSkeletons] = {}
        self.check()

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """The data root, the frame window, loader sizes, classes and the held-out part."""
        cfg = with_defaults(cls, cfg)
        if cfg.get("data_dir") is None:
            raise ConfigError(
                "data_dir", None, "must be a path", fix="Set DATA_DIR or paths.data_dir."
            )
        _check_window(cfg)
        check_int(cfg, "batch_size", minimum=1, example=64)
        check_int(cfg, "num_workers", minimum=0, example=0)
        check_choice(cfg, "num_classes", [60, 120])
        check_range(cfg, "val_fraction", 0.0, 1.0, high_open=True, example=0.05)
        check_int(cfg, "seed", minimum=0, example=0)

    def check(self) -> None:
        """Raise :class:`MissingDataError` unless all four prepared files exist."""
        missing = [name for name in DATA_FILES if not (self.folder / name).is_file()]
        if not missing:
            return
        benchmark = Path(self.subdir).name
        if benchmark not in ("xview", "xsub", "xset"):
            benchmark = "xview"
        dataset = "ntu120" if self.num_classes == 120 else "ntu60"
        raise MissingDataError(
            f"NTU RGB+D skeletons not found: {self.folder} lacks {', '.join(missing)}. That "
            f"folder is data_dir/subdir with data_dir={self.data_dir} (the DATA_DIR environment "
            f"variable or paths.data_dir) and subdir={self.subdir}. NTU RGB+D is for research "
            f"use only: request it from the ROSE Lab site ({ROSE_LAB_URL}), download the 3D "
            f"skeletons (nturgbd_skeletons_s001_to_s017.zip; NTU-120 adds s018_to_s032), "
            f"unzip, then run: python scripts/prepare_ntu.py <unzipped nturgb+d_skeletons "
            f"folder> {self.folder} --benchmark {benchmark} --dataset {dataset} "
            f"[--ignore-file <samples_with_missing_skeletons.txt>]. To run the whole pipeline "
            f"now without it, use datamodule=ntu_synthetic (synthetic 25-joint skeleton "
            f"actions with a cross-view split)."
        )

    @property
    def num_frames(self) -> int:
        """Frames per clip after the window crop."""
        if self.window is not None:
            return self.window[1] - self.window[0]
        return int(np.load(self.folder / "train_data.npy", mmap_mode="r").shape[2])

    def model_kwargs(self) -> dict:
        """What a skeleton classifier needs to be built for this data."""
        return skeleton_model_kwargs(self.num_classes, self.num_frames)

    def _split(self, part: str) -> tuple[Path, np.ndarray]:
        path = self.folder / f"{part}_data.npy"
        shape = np.load(path, mmap_mode="r").shape
        _, labels = _read_labels(self.folder / f"{part}_label.pkl")
        if len(shape) != 5 or shape[0] != len(labels) or shape[1] != 3 or shape[3] != NUM_JOINTS:
            raise ValueError(
                f"{path} has shape {shape} and {len(labels)} labels: expected (N, 3, T, "
                f"{NUM_JOINTS}, M) with N labels; prepare it again with scripts/prepare_ntu.py"
            )
        if self.window is not None and self.window[1] > shape[2]:
            raise ValueError(f"window={list(self.window)} exceeds the {shape[2]} frames of {path}")
        if len(labels) and not 0 <= labels.min() <= labels.max() < self.num_classes:
            raise ValueError(
                f"{path.with_name(f'{part}_label.pkl')} has labels {labels.min()}..{labels.max()}"
                f", outside num_classes={self.num_classes}; set num_classes=120 for NTU-120"
            )
        return path, labels

    def setup(self, stage: str | None = None) -> None:
        """Map the arrays, read the labels and hold ``val_fraction`` of train out."""
        if self.splits:
            return
        self.check()
        train_path, train_labels = self._split("train")
        test_path, test_labels = self._split("val")
        order = np.random.default_rng(self.seed).permutation(len(train_labels))
        num_val = max(1, round(self.val_fraction * len(train_labels))) if self.val_fraction else 0
        if num_val >= len(train_labels):
            raise ValueError(
                f"val_fraction={self.val_fraction} leaves no training clip of the "
                f"{len(train_labels)} in {train_path}; lower it"
            )
        augment = {"random_shift": self.random_shift, "random_move": self.random_move}
        test = PreparedSkeletons(test_path, test_labels, np.arange(len(test_labels)), self.window)
        self.splits = {
            "train": PreparedSkeletons(
                train_path, train_labels, np.sort(order[num_val:]), self.window, **augment
            ),
            "val": PreparedSkeletons(
                train_path, train_labels, np.sort(order[:num_val]), self.window
            )
            if num_val
            else test,
            "test": test,
        }
        log.info(
            "NTU skeletons %s: train %d, val %d%s, test %d clips of %d frames",
            self.folder,
            len(self.splits["train"]),
            len(self.splits["val"]),
            "" if num_val else " (the test split)",
            len(test),
            self.num_frames,
        )

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        self.setup()
        return DataLoader(
            self.splits[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training clips: x (B, 3, T, 25, 2) float32, y (B,) long."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Held-out training clips (or the test split when ``val_fraction`` is 0)."""
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        """The benchmark's test split (the prepared ``val_*`` files)."""
        return self._loader("test")
