"""Captioned Moving MNIST: motion and bouncing by hand, captions and their vocabulary, clips
fixed by the seed, splits that share no digit image, batches of the documented shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.moving_mnist import (
    DIRECTIONS,
    VAL_FROM,
    CaptionVocab,
    MovingMNISTDataModule,
    caption_for,
    heldout_direction,
    render_clip,
)
from effml.errors import ConfigError
from tests.conftest import require_data


def test_render_moves_and_bounces() -> None:
    """A 28×28 square on a 32-px canvas: 4 px of room; speed 3 right from x=2 bounces at 4."""
    square = np.full((28, 28), 200, dtype=np.uint8)
    video = render_clip([square], [(0, 2)], ["right"], frames=4, size=32, speed=3)
    lefts = [int(np.flatnonzero(f.max(0))[0]) for f in video]
    assert lefts == [2, 3, 0, 3]  # 2 → 5 reflects to 3 → 0 → 3
    up = render_clip([square], [(4, 0)], ["up"], frames=3, size=32, speed=2)
    assert [int(np.flatnonzero(f.max(1))[0]) for f in up] == [4, 2, 0]


def test_caption_and_vocabulary() -> None:
    text = caption_for([3, 7], ["up", "left"])
    assert text == "the digit 3 moves up and the digit 7 moves left"
    vocab = CaptionVocab()
    ids = vocab.encode(text)
    assert ids.shape == (11,) and vocab.decode(ids) == text
    assert vocab.encode("the digit 5 moves down")[5:].eq(0).all()
    with pytest.raises(ValueError, match=r"words outside the vocabulary: \['sideways', 'cat'\]"):
        vocab.encode("the digit 1 moves sideways cat")
    with pytest.raises(ValueError, match="12 words > max_words=11"):
        vocab.encode("the digit 1 moves up and the digit 2 moves up up")


def test_check_config() -> None:
    MovingMNISTDataModule.check_config({"num_digits": 2, "size": 64})
    with pytest.raises(ConfigError, match="num_digits=3"):
        MovingMNISTDataModule.check_config({"num_digits": 3})
    with pytest.raises(ConfigError, match="size=28"):
        MovingMNISTDataModule.check_config({"size": 28})


def test_clips_fixed_by_seed_and_splits_disjoint() -> None:
    root = require_data("MNIST/raw")
    kw = dict(train_size=6, val_size=3, test_size=3, batch_size=3, frames=5, size=48)
    a, b = MovingMNISTDataModule(root, **kw), MovingMNISTDataModule(root, **kw)
    other = MovingMNISTDataModule(root, seed=1, **kw)
    for dm in (a, b, other):
        dm.setup()
    for i in range(3):
        x, y = a.sets["train"][i], b.sets["train"][i]
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert not torch.equal(a.sets["train"][0]["video"], other.sets["train"][0]["video"])
    batch = next(iter(a.train_dataloader()))
    assert batch["video"].shape == (3, 5, 1, 48, 48)
    assert batch["video"].min() >= 0 and batch["video"].max() <= 1
    assert batch["caption"].shape == (3, 11)
    # train clips draw from MNIST training images < VAL_FROM, val from ≥ VAL_FROM
    assert len(a.sets["train"].images) == VAL_FROM and len(a.sets["val"].images) == 10_000
    spec = a.sets["train"].spec(0)
    text = a.vocab.decode(a.sets["train"][0]["caption"])
    assert text == caption_for(spec["digits"], spec["directions"])


def test_holdout_keeps_caption_pairs_out_of_training() -> None:
    """With holdout, no train/val clip pairs a digit with its held-out direction, every test
    clip does, and the other clips are unchanged."""
    root = require_data("MNIST/raw")
    kw = dict(train_size=200, val_size=50, test_size=50, num_digits=0, frames=2, size=32)
    held, plain = MovingMNISTDataModule(root, holdout=True, **kw), MovingMNISTDataModule(root, **kw)
    held.setup(), plain.setup()
    assert [heldout_direction(d) for d in range(4)] == [0, 3, 2, 1]  # up, right, left, down
    changed = 0
    for split in ("train", "val"):
        for i in range(len(held.sets[split])):
            spec, before = held.sets[split].spec(i), plain.sets[split].spec(i)
            pairs = list(zip(spec["digits"], spec["directions"], strict=True))
            assert all(DIRECTIONS.index(m) != heldout_direction(d) for d, m in pairs)
            assert spec["digits"] == before["digits"] and spec["starts"] == before["starts"]
            changed += spec["directions"] != before["directions"]
    assert changed > 0  # about a quarter of the clips drew a held-out pair
    for i in range(len(held.sets["test"])):
        spec = held.sets["test"].spec(i)
        assert all(DIRECTIONS.index(m) == heldout_direction(d)
                   for d, m in zip(spec["digits"], spec["directions"], strict=True))  # fmt: skip
