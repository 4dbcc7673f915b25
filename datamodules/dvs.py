"""DVS128 Gesture (11 gestures, 128×128 event camera) as frame sequences, via SpikingJelly.

SpikingJelly's ``DVS128Gesture`` integrates each recording into ``frames_number`` frames of
(2 polarities, 128, 128) event counts (``split_by='number'``: equal event counts per frame)
and caches them next to its root. The raw data is read from
``<data_dir>/DVS128Gesture/download`` (IBM's ``DvsGesture.tar.gz``, ``gesture_mapping.csv``,
``LICENSE.txt``, ``README.txt``; the dataset is not downloadable by script) or from an already
converted ``<data_dir>/DVS128Gesture/events_np``; everything SpikingJelly writes goes under
``<cache_dir>/dvs128_gesture`` (the data folder may be read-only). 1176 training and 288 test
recordings; the test split doubles as validation, as in the SNN literature.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from datamodules.provenance import fingerprint, read_record, rebuild_reason, write_record
from effml.checks import check_int, with_defaults
from effml.errors import MissingDataError

log = logging.getLogger(__name__)

NUM_CLASSES = 11
SENSOR_SIZE = 128
RAW_FILES = ("DvsGesture.tar.gz", "gesture_mapping.csv", "LICENSE.txt", "README.txt")
IBM_URL = "https://research.ibm.com/interactive/dvsgesture/"


class FrameCollate:
    """Stack (frames (T, 2, 128, 128), label) items into ((B, T, 2, S, S) float32, (B,) int64),
    average-pooling the sensor to S = ``image_size`` when it is smaller than 128."""

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def __call__(self, items: list) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([torch.as_tensor(frames, dtype=torch.float32) for frames, _ in items])
        y = torch.tensor([int(label) for _, label in items], dtype=torch.long)
        if self.image_size != x.shape[-1]:
            b, t = x.shape[:2]
            x = F.adaptive_avg_pool2d(x.flatten(0, 1), self.image_size)
            x = x.view(b, t, *x.shape[1:])
        return x, y


def prepare_root(data_dir: Path, cache_dir: Path, subdir: str) -> Path:
    """A writable SpikingJelly root that links the raw data in; MissingDataError without it.

    The root keeps a source record (the data folder and its raw files' sizes and mtimes);
    what SpikingJelly extracted and converted there is deleted when the source changed.
    """
    source = (data_dir / subdir).resolve()
    download, events = source / "download", source / "events_np"
    have_raw = all((download / name).is_file() for name in RAW_FILES)
    if not have_raw and not events.is_dir():
        raise MissingDataError(
            f"DVS128 Gesture is absent: looked for {download}/{{{','.join(RAW_FILES)}}} and for "
            f"a converted {events}. IBM does not allow scripted downloads: fetch the four files "
            f"from {IBM_URL} (IBM Box folder) into {download}, or point DATA_DIR elsewhere"
        )
    files = fingerprint(source, [download / name for name in RAW_FILES] if have_raw else None)
    root = cache_dir / "dvs128_gesture"
    reason = rebuild_reason(read_record(root), source, files)
    if reason and root.is_dir() and any(root.iterdir()):
        log.info("DVS128 Gesture: rebuilding the cache %s: %s", root, reason)
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, target in (("download", download), ("events_np", events)):
        link = root / name
        if target.exists() and not link.exists():
            link.symlink_to(target, target_is_directory=True)
    if reason:
        write_record(root, source, files)
    log.info("DVS128 Gesture: reading %s through the cache %s", source, root)
    return root


class DVS128GestureDataModule(pl.LightningDataModule):
    """Train and test loaders of DVS128 Gesture frame sequences (validation = test).

    Args:
        data_dir: raw data root (read only), holding ``subdir``.
        cache_dir: writable; SpikingJelly's extracted events and frames go here.
        subdir: folder of the dataset under ``data_dir``.
        frames_number: T, frames per recording (``split_by='number'``).
        image_size: sensor resolution fed to the net (128, or smaller by average pooling).
        batch_size, num_workers: loader settings.
    """

    def __init__(
        self,
        data_dir: str,
        cache_dir: str,
        subdir: str = "DVS128Gesture",
        frames_number: int = 16,
        image_size: int = SENSOR_SIZE,
        batch_size: int = 16,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.check_config(self.hparams)
        self.train_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """Frames per recording, the sensor size fed to the net, and the loader sizes."""
        cfg = with_defaults(cls, cfg)
        check_int(cfg, "frames_number", minimum=1, example=16)
        check_int(cfg, "image_size", minimum=1, maximum=SENSOR_SIZE, example=SENSOR_SIZE)
        check_int(cfg, "batch_size", minimum=1, example=16)
        check_int(cfg, "num_workers", minimum=0, example=0)

    def model_kwargs(self) -> dict:
        return {
            "in_channels": 2,
            "num_classes": NUM_CLASSES,
            "image_size": self.hparams.image_size,
        }

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        hp = self.hparams
        root = prepare_root(Path(hp.data_dir), Path(hp.cache_dir), hp.subdir)
        try:
            from spikingjelly.datasets.dvs128_gesture import DVS128Gesture
        except ImportError as err:
            raise ImportError(
                "datamodule=dvs128_gesture needs SpikingJelly: pip install -e '.[snn]'"
            ) from err
        kwargs = {"data_type": "frame", "frames_number": hp.frames_number, "split_by": "number"}
        self.train_set = DVS128Gesture(str(root), train=True, **kwargs)
        self.test_set = DVS128Gesture(str(root), train=False, **kwargs)
        log.info("DVS128 Gesture: %d train, %d test", len(self.train_set), len(self.test_set))

    def _loader(self, dataset: Dataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a loader")
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            shuffle=train,
            num_workers=self.hparams.num_workers,
            collate_fn=FrameCollate(self.hparams.image_size),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)
