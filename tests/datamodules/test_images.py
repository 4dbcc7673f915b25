"""Image datamodules: every layout reads the same pixels, splits are disjoint and balanced,
augmentation is a crop + flip of the real image, and missing data says where it looked."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require_data
from PIL import Image

from datamodules.image_sources import read_images
from datamodules.images import BatchTransform, ImageDataModule, balanced_subset
from effml.errors import MissingDataError

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % len(CLASSES)


def _write_folder(root: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    for i, (im, lb) in enumerate(zip(images, labels, strict=True)):
        folder = root / split / CLASSES[lb]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(folder / f"{i:04d}.png")  # lossless, so pixels compare exactly


def test_folder_tar_and_pickle_layouts_agree(tmp_path: Path) -> None:
    images, labels = _images(20)
    jpeg = tmp_path / "folder" / "cifar10-jpeg"
    _write_folder(jpeg, "train", images, labels)
    from_folder = read_images(tmp_path / "folder", "cifar10", "train")

    archive_root = tmp_path / "tar" / "cifar10-jpeg"
    archive_root.mkdir(parents=True)
    with tarfile.open(archive_root / "cifar10_train_jpg.tar.gz", "w:gz") as tar:
        tar.add(jpeg / "train", arcname="train")
    from_tar = read_images(tmp_path / "tar", "cifar10", "train")

    pickles = tmp_path / "pickle" / "cifar-10-batches-py"
    pickles.mkdir(parents=True)
    for b in range(1, 6):
        chunk = slice((b - 1) * 4, b * 4)
        data = images[chunk].transpose(0, 3, 1, 2).reshape(-1, 3072)
        with open(pickles / f"data_batch_{b}", "wb") as fh:
            pickle.dump({b"data": data, b"labels": labels[chunk].tolist()}, fh)
    with open(pickles / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": CLASSES}, fh)
    from_pickle = read_images(tmp_path / "pickle", "cifar10", "train")

    key = lambda arrays: sorted((int(lb), im.tobytes()) for im, lb in zip(*arrays[:2], strict=True))  # noqa: E731
    assert from_folder[2] == from_tar[2] == CLASSES == from_pickle[2]
    assert key(from_folder) == key(from_tar) == key(from_pickle) == key((images, labels))


def test_missing_data_names_places_and_fix(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match=r"cifar10-jpeg[\s\S]*DATA_DIR[\s\S]*download=true"):
        ImageDataModule("cifar10", str(tmp_path), str(tmp_path / "cache")).setup()
    with pytest.raises(MissingDataError, match="MNIST"):
        read_images(tmp_path, "mnist", "train")


def test_unknown_name_and_bad_subset() -> None:
    with pytest.raises(ValueError, match="cifar10"):
        ImageDataModule("cifar11", ".", ".")
    with pytest.raises(ValueError, match="no image per class"):
        balanced_subset(np.arange(100) % 10, 5, 10)


def test_balanced_subset_takes_first_of_each_class() -> None:
    labels = np.array([0, 1, 1, 0, 2, 2, 1, 0, 2])
    picked = balanced_subset(labels, 6, 3)
    assert picked.tolist() == [0, 1, 2, 3, 4, 5]


def test_augmentation_is_a_padded_crop_or_flip_of_the_image() -> None:
    torch.manual_seed(0)
    x = torch.randint(1, 256, (64, 3, 8, 8), dtype=torch.uint8)
    t = BatchTransform((0.0,) * 3, (1.0,) * 3, crop_padding=2, flip=True)
    out = (t.augment(x) * 255).round().to(torch.uint8)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    shifted = 0
    for i in range(len(x)):
        candidates = [
            padded[i, :, dy : dy + 8, dx : dx + 8].flip(-1)
            if f
            else padded[i, :, dy : dy + 8, dx : dx + 8]
            for dy in range(5)
            for dx in range(5)
            for f in (False, True)
        ]
        assert any(torch.equal(out[i], c) for c in candidates), f"sample {i} is not a crop/flip"
        shifted += not torch.equal(out[i], x[i])
    assert shifted > 40  # almost every sample moved


def test_cached_splits_are_disjoint_and_cache_is_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = _images(60)
    root = tmp_path / "data" / "cifar10-jpeg"
    _write_folder(root, "train", images, labels)
    _write_folder(root, "test", images[:9], labels[:9])
    dm = ImageDataModule(
        "cifar10",
        str(tmp_path / "data"),
        str(tmp_path / "cache"),
        batch_size=8,
        val_size=20,
        train_subset=30,
    )
    dm.setup()
    train = {bytes(im.numpy()) for im, _ in dm.train_set}
    val = {bytes(im.numpy()) for im, _ in dm.val_set}
    assert len(train) == 30 and len(val) == 20 and not train & val
    assert np.bincount(dm.val_set.labels.numpy()).tolist() == [2] * 10
    cached = sorted((tmp_path / "cache" / "images").glob("*.npz"))
    assert len(cached) == 2
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64

    # a second module reads the cache, not the images
    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded the images again instead of reading the cache")

    monkeypatch.setattr("datamodules.images.read_images", no_decoding)
    again = ImageDataModule("cifar10", str(tmp_path / "data"), str(tmp_path / "cache"), val_size=20)
    again.setup()
    assert len(again.train_set) == 40


def test_two_writers_caching_the_same_split_both_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second run caching the same split between our write and our rename (as two jobs of a
    multirun starting together do) must not make our rename fail."""
    images, labels = _images(20)
    _write_folder(tmp_path / "data" / "cifar10-jpeg", "train", images, labels)
    _write_folder(tmp_path / "data" / "cifar10-jpeg", "test", images[:10], labels[:10])

    def module() -> ImageDataModule:
        return ImageDataModule("cifar10", str(tmp_path / "data"), str(tmp_path / "cache"))

    real_savez, nested = np.savez, []

    def savez_then_other_writer(file, **arrays):
        real_savez(file, **arrays)
        if not nested:  # the other writer runs entirely between our savez and our rename
            nested.append(True)
            other = module()
            monkeypatch.setattr(Path, "is_file", lambda self: False)  # it sees no cache either
            try:
                nested.append(other.load_split("train"))
            finally:
                monkeypatch.undo()
                monkeypatch.setattr(np, "savez", savez_then_other_writer)

    monkeypatch.setattr(np, "savez", savez_then_other_writer)
    ours = module().load_split("train")
    assert len(nested) == 2 and np.array_equal(ours[0], nested[1][0])
    left = sorted(p.name for p in (tmp_path / "cache" / "images").glob("*.npz"))
    assert len(left) == 1 and left[0].startswith("cifar10_train_") and ".tmp" not in left[0]


def test_real_cifar10_and_mnist(cache_dir: Path) -> None:
    root = require_data("cifar10-jpeg/cifar10_test_jpg.tar.gz", "MNIST/raw/t10k-images-idx3-ubyte")
    dm = ImageDataModule("cifar10", str(root), str(cache_dir), val_size=1000, augment=False)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (49000, 1000, 10000)
    assert np.bincount(dm.test_set.labels.numpy()).tolist() == [1000] * 10
    assert dm.model_kwargs() == {"in_channels": 3, "num_classes": 10, "image_size": 32}
    x = torch.cat([xb for xb, _ in dm.test_dataloader()])
    # normalised with the canonical per-channel statistics (the JPEGs match them closely)
    assert x.mean(dim=(0, 2, 3)).abs().max() < 0.05
    assert ((x.std(dim=(0, 2, 3)) - 1).abs() < 0.05).all()
    mnist = ImageDataModule("mnist", str(root), str(cache_dir), val_size=5000)
    mnist.setup()
    assert (len(mnist.train_set), len(mnist.test_set)) == (55000, 10000)
    assert mnist.model_kwargs()["image_size"] == 28
