"""Captioned Moving MNIST built from the real MNIST digits, for FlashVideo's text-to-video runs.

A clip holds one or two MNIST digits on a ``size``×``size`` black canvas, each moving
``speed`` pixels a frame in a set direction (up, down, left, right) and bouncing off the
borders; its caption states them: "the digit 3 moves up and the digit 7 moves left". Clip i
of a split is drawn from ``numpy.random.default_rng((seed, split, i))``: the same seed gives
the same clips on any machine. Train and validation clips take their digit images from MNIST's
training images (disjoint halves: train the first 50k, validation the last 10k), test clips
from MNIST's test images, so the splits share no digit image.

With ``holdout=True`` the (digit, direction) pairs with ``(digit + direction index) % 4 == 0``
(ten of the forty: one direction per digit, e.g. "the digit 0 moves up", "the digit 1 moves
right") never appear in train or validation clips (such a draw takes the next direction), and
every test clip uses them: test captions are then combinations the generator never saw.

Batches are dicts: ``video`` (B, T, 1, size, size) float in [0, 1], ``caption`` (B, C) word ids
(``CaptionVocab``, padded), ``digits`` (B, 2) and ``directions`` (B, 2) (−1 where a clip has
one digit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.image_sources import read_mnist
from effml.errors import ConfigError

DIRECTIONS = ("up", "down", "left", "right")
STEP = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}  # (dy, dx)
SPLITS = ("train", "val", "test")
VAL_FROM = 50_000  # MNIST training images from here on feed the validation clips


class CaptionVocab:
    """The caption words, with PAD = 0; ``encode`` refuses words it does not know."""

    WORDS = ("<pad>", "the", "digit", "moves", "and", *map(str, range(10)), *DIRECTIONS)

    def __init__(self, max_words: int = 11) -> None:
        self.max_words = max_words
        self.index = {w: i for i, w in enumerate(self.WORDS)}

    def __len__(self) -> int:
        return len(self.WORDS)

    def encode(self, caption: str) -> torch.Tensor:
        """(max_words,) word ids of a caption, padded with 0.

        Raises:
            ValueError: a word outside the vocabulary (named, with the vocabulary), or more
                than ``max_words`` words.
        """
        words = caption.lower().split()
        unknown = [w for w in words if w not in self.index or w == "<pad>"]
        if unknown:
            raise ValueError(
                f"caption {caption!r}: words outside the vocabulary: {unknown}; captions use "
                f"only {list(self.WORDS[1:])}, e.g. 'the digit 3 moves up'"
            )
        if len(words) > self.max_words:
            raise ValueError(
                f"caption {caption!r}: {len(words)} words > max_words={self.max_words}: "
                "describe at most two digits"
            )
        ids = [self.index[w] for w in words] + [0] * (self.max_words - len(words))
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids: torch.Tensor) -> str:
        return " ".join(self.WORDS[i] for i in ids.tolist() if i)


def heldout_direction(digit: int) -> int:
    """The direction index held out for ``digit`` under ``holdout=True``."""
    return -digit % len(DIRECTIONS)


def caption_for(digits: Sequence[int], directions: Sequence[str]) -> str:
    """ "the digit 3 moves up and the digit 7 moves left"."""
    return " and ".join(f"the digit {d} moves {m}" for d, m in zip(digits, directions, strict=True))


def render_clip(
    images: Sequence[np.ndarray],
    starts: Sequence[tuple[int, int]],
    directions: Sequence[str],
    frames: int,
    size: int,
    speed: int,
) -> np.ndarray:
    """(frames, size, size) uint8: each 28×28 image from its (y, x) start moving ``speed`` px a
    frame in its direction, bouncing off the borders; overlaps take the brighter pixel."""
    video = np.zeros((frames, size, size), dtype=np.uint8)
    span = size - 28
    for img, (y, x), direction in zip(images, starts, directions, strict=True):
        dy, dx = STEP[direction]
        for t in range(frames):
            region = video[t, y : y + 28, x : x + 28]
            np.maximum(region, img, out=region)
            y, dy = _bounce(y + dy * speed, dy, span)
            x, dx = _bounce(x + dx * speed, dx, span)
    return video


def _bounce(pos: int, vel: int, span: int) -> tuple[int, int]:
    """A coordinate moved past [0, span] reflected back in, with its velocity flipped."""
    if pos < 0:
        return -pos, -vel
    if pos > span:
        return 2 * span - pos, -vel
    return pos, vel


class MovingMNIST(Dataset):
    """``length`` captioned clips of one split (see the module docstring).

    Args:
        images: the MNIST images this split draws from, (N, 28, 28) uint8; labels (N,).
        split: "train", "val" or "test" (part of the clip seed).
        num_digits: digits per clip: 1, 2, or 0 for one or two at random.
        frames, size, speed: clip length, canvas side (≥ 28) and pixels per frame.
        holdout: keep the held-out (digit, direction) pairs out of train/val clips and give
            them to every test clip (see the module docstring).
    """

    def __init__(self, images, labels, split, length, num_digits=0, frames=8, size=64, speed=4,
                 seed=0, vocab: CaptionVocab | None = None,
                 holdout: bool = False) -> None:  # fmt: skip
        self.images, self.labels, self.holdout = images, labels, holdout
        self.split_id, self.length, self.num_digits = SPLITS.index(split), length, num_digits
        self.frames, self.size, self.speed, self.seed = frames, size, speed, seed
        self.vocab = vocab or CaptionVocab()

    def __len__(self) -> int:
        return self.length

    def spec(self, i: int) -> dict[str, Any]:
        """The digits (image indices, labels), starts and directions of clip i."""
        rng = np.random.default_rng((self.seed, self.split_id, i))
        count = self.num_digits or int(rng.integers(1, 3))
        picks = rng.integers(0, len(self.images), size=count)
        span = self.size - 28
        digits = [int(self.labels[p]) for p in picks]
        starts = [tuple(int(v) for v in rng.integers(0, span + 1, size=2)) for _ in picks]
        moves = [int(j) for j in rng.integers(0, 4, size=count)]
        if self.holdout:
            held = [heldout_direction(d) for d in digits]
            if SPLITS[self.split_id] == "test":
                moves = held
            else:
                moves = [(m + 1) % 4 if m == h else m for m, h in zip(moves, held, strict=True)]
        return {
            "picks": picks.tolist(),
            "digits": digits,
            "starts": starts,
            "directions": [DIRECTIONS[m] for m in moves],
        }

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = self.spec(i)
        video = render_clip([self.images[p] for p in s["picks"]], s["starts"], s["directions"],
                            self.frames, self.size, self.speed)  # fmt: skip
        pad = 2 - len(s["digits"])
        return {
            "video": torch.from_numpy(video).float().div(255).unsqueeze(1),  # (T, 1, H, W)
            "caption": self.vocab.encode(caption_for(s["digits"], s["directions"])),
            "digits": torch.tensor(s["digits"] + [-1] * pad),
            "directions": torch.tensor([DIRECTIONS.index(d) for d in s["directions"]] + [-1] * pad),
        }


class MovingMNISTDataModule(pl.LightningDataModule):
    """Captioned Moving MNIST clips from ``<data_dir>/MNIST/raw`` (see the module docstring).

    Args:
        data_dir: the folder holding ``MNIST/raw``.
        train_size, val_size, test_size: clips per split.
        num_digits: 1, 2, or 0 (one or two at random).
        frames, size, speed: clip length, canvas side, pixels per frame.
        batch_size, num_workers, seed: the loaders, and the seed of every clip.
        holdout: held-out caption combinations (see the module docstring).
    """

    def __init__(self, data_dir: str | Path, train_size: int = 2000, val_size: int = 200,
                 test_size: int = 200, num_digits: int = 0, frames: int = 8, size: int = 64,
                 speed: int = 4, batch_size: int = 32, num_workers: int = 0,
                 seed: int = 0, holdout: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.vocab = CaptionVocab()
        self.sets: dict[str, MovingMNIST] = {}

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """Sizes, digit count, canvas and speed that give valid clips."""
        for key in ("train_size", "val_size", "test_size", "frames", "batch_size", "speed"):
            if int(cfg.get(key, 1)) < 1:
                raise ConfigError(key, cfg[key], "must be a positive integer", 8)
        if cfg.get("num_digits", 0) not in (0, 1, 2):
            raise ConfigError("num_digits", cfg["num_digits"], "must be 1, 2 or 0 (1 or 2)", 0)
        if int(cfg.get("size", 64)) < 29:
            raise ConfigError("size", cfg["size"], "the canvas must exceed a 28-px digit", 64)

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        hp = self.hparams
        data_dir = Path(hp.data_dir)
        train_x, train_y, _ = read_mnist(data_dir, "train")
        test_x, test_y, _ = read_mnist(data_dir, "test")
        pools = {"train": (train_x[:VAL_FROM, ..., 0], train_y[:VAL_FROM]),
                 "val": (train_x[VAL_FROM:, ..., 0], train_y[VAL_FROM:]),
                 "test": (test_x[..., 0], test_y)}  # fmt: skip
        for split in SPLITS:
            images, labels = pools[split]
            self.sets[split] = MovingMNIST(
                images, labels, split, hp[f"{split}_size"], hp.num_digits, hp.frames, hp.size,
                hp.speed, hp.seed, self.vocab, hp.get("holdout", False),
            )  # fmt: skip

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.sets[split], batch_size=self.hparams.batch_size, shuffle=shuffle,
                          num_workers=self.hparams.num_workers)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
