"""Real video clips from folders, for FlashVideo runs on the user's data (UCF-101, BAIR).

Layouts (``layout``):
- ``ucf101``: ``<root>/<ClassName>/<clip>.avi`` (UCF-101's own; any container PyAV reads);
  the caption is the class name split into words ("ApplyEyeMakeup" → "apply eye makeup").
  The split lists ``trainlist01.txt``/``testlist01.txt`` under ``<root>/ucfTrainTestlist/``
  are used when present, else clips are split by a hash of their file name.
- ``frames``: ``<root>/<split>/<clip>/<frame>.png`` (BAIR robot pushing once converted to
  images, as most BAIR loaders do); caption from ``<clip>/caption.txt`` if present, else none.

Each item: ``video`` (T, C, size, size) float in [0, 1] (``frames`` frames from the start,
every ``stride``-th, resized), ``caption`` (the words, padded ids of a vocabulary built from
the training captions), ``label`` (class index, −1 when the layout has none). Videos are
decoded with PyAV (``pip install av``).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from effml.errors import ConfigError, DataError, MissingDataError, MissingToolError

LAYOUTS = ("ucf101", "frames")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".webm", ".mov")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def class_caption(name: str) -> str:
    """ "ApplyEyeMakeup" → "apply eye makeup" (also splits "YoYo", "PlayingDaf")."""
    return " ".join(re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", name)).lower()


def read_video(path: Path, frames: int, stride: int) -> np.ndarray:
    """(frames, H, W, 3) uint8: every ``stride``-th frame from the start, decoded by PyAV."""
    try:
        import av
    except ImportError as err:
        raise MissingToolError(
            f"{path}: decoding videos needs PyAV: pip install av (or convert the clips to "
            "frame folders and use layout=frames)"
        ) from err
    out = []
    try:
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i % stride == 0:
                    out.append(frame.to_ndarray(format="rgb24"))
                if len(out) == frames:
                    break
    except av.error.FFmpegError as err:
        raise DataError(f"{path}: cannot be decoded ({err}); remove or re-encode it") from err
    if len(out) < frames:
        raise DataError(
            f"{path}: {len(out)} frames at stride {stride}, need {frames}: lower "
            "datamodule.frames or datamodule.stride"
        )
    return np.stack(out)


def read_frames(folder: Path, frames: int, stride: int) -> np.ndarray:
    """(frames, H, W, 3) uint8 from a folder of images in name order."""
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[::stride]
    if len(files) < frames:
        raise DataError(f"{folder}: {len(files)} frames at stride {stride}, need {frames}")
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in files[:frames]])


def find_clips(root: Path, layout: str, split: str) -> list[tuple[Path, str, int]]:
    """[(clip path, caption, label)] of one split ("train" or "test")."""
    if layout == "ucf101":
        classes = sorted(
            p.name for p in root.iterdir() if p.is_dir() and p.name != "ucfTrainTestlist"
        )
        clips = [(p, c) for c in classes for p in sorted((root / c).iterdir())
                 if p.suffix.lower() in VIDEO_SUFFIXES]  # fmt: skip
        lists = root / "ucfTrainTestlist" / f"{split}list01.txt"
        if lists.is_file():
            names = {Path(line.split()[0]).name for line in lists.read_text().splitlines() if line}
            chosen = [(p, c) for p, c in clips if p.name in names]
        else:  # 1 in 5 clips to test, by a stable hash of the name
            chosen = [(p, c) for p, c in clips
                      if (zlib.crc32(p.name.encode()) % 5 == 0) == (split == "test")]  # fmt: skip
        return [(p, class_caption(c), classes.index(c)) for p, c in chosen]
    base = root / split
    folders = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    return [(p, (p / "caption.txt").read_text().strip() if (p / "caption.txt").is_file() else "",
             -1) for p in folders]  # fmt: skip


class VideoFolder(Dataset):
    """Clips of one split; see the module docstring."""

    def __init__(self, clips, layout, frames, stride, size, words: dict[str, int],
                 caption_len: int) -> None:  # fmt: skip
        self.clips, self.layout, self.frames, self.stride, self.size = (
            clips,
            layout,
            frames,
            stride,
            size,
        )
        self.words, self.caption_len = words, caption_len

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        path, caption, label = self.clips[i]
        read = read_video if self.layout == "ucf101" else read_frames
        video = torch.from_numpy(read(path, self.frames, self.stride)).permute(0, 3, 1, 2)
        video = F.interpolate(video.float().div(255), size=(self.size, self.size),
                              mode="bilinear", antialias=True, align_corners=False)  # fmt: skip
        ids = [self.words.get(w, 0) for w in caption.split()][: self.caption_len]
        ids += [0] * (self.caption_len - len(ids))
        return {"video": video.clamp(0, 1), "caption": torch.tensor(ids),
                "label": torch.tensor(label)}  # fmt: skip


class VideoFolderDataModule(pl.LightningDataModule):
    """Train/test clips from ``root`` in ``layout``; validation on the test clips.

    Args:
        root: the dataset folder (for UCF-101 the folder of class folders).
        layout: "ucf101" or "frames". frames, stride, size: the clip read from each video.
        caption_len: caption words kept; batch_size, num_workers: the loaders.
    """

    def __init__(self, root: str | Path, layout: str = "ucf101", frames: int = 16,
                 stride: int = 2, size: int = 64, caption_len: int = 11, batch_size: int = 8,
                 num_workers: int = 4) -> None:  # fmt: skip
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.sets: dict[str, VideoFolder] = {}

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        if cfg.get("layout", "ucf101") not in LAYOUTS:
            raise ConfigError("layout", cfg["layout"], f"choose one of {list(LAYOUTS)}", "ucf101")
        for key in ("frames", "stride", "size", "batch_size"):
            if int(cfg.get(key, 1)) < 1:
                raise ConfigError(key, cfg[key], "must be a positive integer", 16)

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        hp = self.hparams
        root = Path(hp.root)
        example = ("<root>/<ClassName>/<clip>.avi" if hp.layout == "ucf101"
                   else "<root>/{train,test}/<clip>/<frame>.png")  # fmt: skip
        clips = {
            s: find_clips(root, hp.layout, s) if root.is_dir() else [] for s in ("train", "test")
        }
        if not clips["train"] or not clips["test"]:
            raise MissingDataError(
                f"no {hp.layout} clips for both splits under {root} (train: "
                f"{len(clips['train'])}, test: {len(clips['test'])}); expected the layout "
                f"{example}. Point datamodule.root at your copy of the dataset"
            )
        vocab = sorted({w for _, c, _ in clips["train"] for w in c.split()})
        self.words = {w: i + 1 for i, w in enumerate(vocab)}  # 0 = padding / unknown
        for split, items in clips.items():
            self.sets[split] = VideoFolder(items, hp.layout, hp.frames, hp.stride, hp.size,
                                           self.words, hp.caption_len)  # fmt: skip

    @property
    def num_words(self) -> int:
        """Caption vocabulary size including padding (known after ``setup``)."""
        return len(self.words) + 1

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.sets[split], batch_size=self.hparams.batch_size, shuffle=shuffle,
                          num_workers=self.hparams.num_workers)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
