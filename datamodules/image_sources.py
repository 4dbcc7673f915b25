"""Readers that turn the image datasets' on-disk layouts into decoded uint8 arrays.

Every reader returns ``(images, labels, classes)``: images ``(N, H, W, C)`` uint8, labels
``(N,)`` int64, and the class names in label order. Layouts understood, first match wins:

- CIFAR-10/100: torchvision's download (``cifar-10-batches-py/``, ``cifar-100-python/``), an
  ImageFolder tree (``<root>/{train,test}/<class>/*.jpg``) or its ``.tar.gz`` archives
  (``cifar10-jpeg/cifar10_{train,test}_jpg.tar.gz``, the layout of ``../shared/data``).
- MNIST: the four idx files in ``MNIST/raw/`` (torchvision's layout), optionally gzipped.
- Tiny-ImageNet: the ``tiny-imagenet-200/`` folder (``train/<wnid>/images/*.JPEG``,
  ``val/images`` with ``val_annotations.txt``); its validation set is the test split.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from datamodules.provenance import download_error
from effml.errors import MissingDataError

Arrays = tuple[np.ndarray, np.ndarray, list[str]]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class ImageSpec:
    """What a dataset looks like and how it is normalised (per-channel mean/std of train)."""

    channels: int
    size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # the papers' augmentation: random crop with this zero padding, horizontal flips
    crop_padding: int
    flip: bool
    url: str


SPECS = {
    "cifar10": ImageSpec(
        3,
        32,
        10,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        4,
        True,
        "https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar100": ImageSpec(
        3,
        32,
        100,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        4,
        True,
        "https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "mnist": ImageSpec(
        1, 28, 10, (0.1307,), (0.3081,), 0, False, "http://yann.lecun.com/exdb/mnist/"
    ),
    "tinyimagenet": ImageSpec(
        3,
        64,
        200,
        (0.4802, 0.4481, 0.3975),
        (0.2302, 0.2265, 0.2262),
        8,
        True,
        "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
    ),
}


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _stack(items: Iterable[tuple[str, np.ndarray]], where: Path) -> Arrays:
    """(class name, image) pairs → arrays with ImageFolder's sorted class order."""
    names, images = [], []
    for name, image in items:
        names.append(name)
        images.append(image)
    if not images:
        raise MissingDataError(f"no images found in {where}")
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"{where}: images differ in shape {sorted(shapes)[:4]}; resize them first")
    labels = np.fromiter((index[n] for n in names), dtype=np.int64, count=len(names))
    return np.stack(images), labels, classes


def _folder_items(root: Path) -> Iterator[tuple[str, np.ndarray]]:
    for path in sorted(root.glob("*/*")):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            yield path.parent.name, _decode(path.read_bytes())


def _tar_items(archive: Path, split: str) -> Iterator[tuple[str, np.ndarray]]:
    """Members ``[...]/<split>/<class>/<file>`` of an ImageFolder archive, in name order."""
    with tarfile.open(archive, "r:*") as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        for member in sorted(members, key=lambda m: m.name):
            parts = Path(member.name).parts
            if len(parts) < 3 or parts[-3] != split:
                continue
            if Path(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            yield parts[-2], _decode(handle.read())


def _cifar_pickles(root: Path, split: str, coarse: bool) -> Arrays:
    """torchvision's python-pickle CIFAR batches."""
    if root.name == "cifar-10-batches-py":
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        meta, key, names_key = "batches.meta", b"labels", "label_names"
    else:
        files = ["train" if split == "train" else "test"]
        meta = "meta"
        key = b"coarse_labels" if coarse else b"fine_labels"
        names_key = "coarse_label_names" if coarse else "fine_label_names"
    images, labels = [], []
    for name in files:
        with open(root / name, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[key], dtype=np.int64))
    with open(root / meta, "rb") as fh:
        classes = list(pickle.load(fh, encoding="latin1")[names_key])
    return np.concatenate(images).transpose(0, 2, 3, 1).copy(), np.concatenate(labels), classes


def cifar_candidates(data_dir: Path, name: str, split: str) -> list[Path]:
    """Where a CIFAR split may be, in the order they are tried."""
    digits = name.removeprefix("cifar")
    torchvision_dir = "cifar-10-batches-py" if digits == "10" else "cifar-100-python"
    jpeg = data_dir / f"{name}-jpeg"
    return [
        data_dir / torchvision_dir,
        jpeg / split,
        jpeg / f"{name}_{split}_jpg.tar.gz",
        data_dir / name / split,
    ]


def locate(data_dir: Path, name: str, split: str) -> Path:
    """The file or folder ``split`` of ``name`` is read from; MissingDataError if none."""
    if name in ("cifar10", "cifar100"):
        candidates = cifar_candidates(data_dir, name, split)
    elif name == "mnist":
        candidates = [data_dir / "MNIST" / "raw"]
    elif name == "tinyimagenet":
        candidates = [data_dir / "tiny-imagenet-200"]
    else:
        raise ValueError(f"datamodule.name={name!r}: expected one of {sorted(SPECS)}")
    for path in candidates:
        if path.exists():
            return path
    raise _missing(name, candidates)


def read_cifar(data_dir: Path, name: str, split: str) -> Arrays:
    """CIFAR-10 or CIFAR-100 (``name``) ``split`` ("train" | "test") from any known layout."""
    path = locate(data_dir, name, split)
    if path.is_dir() and path.name.startswith("cifar-1"):
        return _cifar_pickles(path, split, coarse=False)
    if path.is_dir():
        return _stack(_folder_items(path), path)
    return _stack(_tar_items(path, split), path)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    magic = int.from_bytes(data[:4], "big")
    if magic >> 8 != 0x08:
        raise ValueError(f"{path}: not an idx file of unsigned bytes (magic {magic:#x})")
    ndim = magic & 0xFF
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def read_mnist(data_dir: Path, split: str) -> Arrays:
    """MNIST from torchvision's ``MNIST/raw`` idx files (plain or ``.gz``)."""
    raw = data_dir / "MNIST" / "raw"
    prefix = "train" if split == "train" else "t10k"
    found = {}
    for kind, stem in (
        ("images", f"{prefix}-images-idx3-ubyte"),
        ("labels", f"{prefix}-labels-idx1-ubyte"),
    ):
        for path in (raw / stem, raw / f"{stem}.gz"):
            if path.is_file():
                found[kind] = path
                break
        else:
            raise _missing("mnist", [raw / stem])
    images = _read_idx(found["images"])[..., None].copy()
    labels = _read_idx(found["labels"]).astype(np.int64)
    return images, labels, [str(d) for d in range(10)]


def read_tinyimagenet(data_dir: Path, split: str) -> Arrays:
    """Tiny-ImageNet-200; ``split="test"`` is its labelled validation set (10k images)."""
    root = data_dir / "tiny-imagenet-200"
    if not (root / "wnids.txt").is_file():
        raise _missing("tinyimagenet", [root])
    wnids = sorted((root / "wnids.txt").read_text().split())
    if split == "train":
        items = (
            (path.parts[-3], _decode(path.read_bytes()))
            for path in sorted((root / "train").glob("*/images/*.JPEG"))
        )
    else:
        rows = [
            ln.split("\t") for ln in (root / "val" / "val_annotations.txt").read_text().splitlines()
        ]
        items = ((r[1], _decode((root / "val" / "images" / r[0]).read_bytes())) for r in rows if r)
    images, labels, classes = _stack(items, root / split)
    remap = np.array([wnids.index(c) for c in classes], dtype=np.int64)
    return images, remap[labels], wnids


def read_images(data_dir: Path, name: str, split: str) -> Arrays:
    """Dispatch on the dataset ``name`` (a key of ``SPECS``)."""
    if name in ("cifar10", "cifar100"):
        return read_cifar(data_dir, name, split)
    if name == "mnist":
        return read_mnist(data_dir, split)
    if name == "tinyimagenet":
        return read_tinyimagenet(data_dir, split)
    raise ValueError(f"datamodule.name={name!r}: expected one of {sorted(SPECS)}")


def _downloads(data_dir: Path, name: str) -> list[tuple[list[str], Path, str, str | None]]:
    """What ``download`` fetches: (mirror URLs, folder, file name, md5) per archive."""
    import torchvision.datasets as tvd

    if name in ("cifar10", "cifar100"):
        dataset = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        return [([dataset.url], data_dir, dataset.filename, dataset.tgz_md5)]
    if name == "mnist":
        raw = data_dir / "MNIST" / "raw"
        return [
            ([mirror + file for mirror in tvd.MNIST.mirrors], raw, file, md5)
            for file, md5 in tvd.MNIST.resources
        ]
    if name == "tinyimagenet":
        url = SPECS[name].url
        return [([url], data_dir, url.rsplit("/", 1)[1], None)]
    raise ValueError(f"no download for {name!r}")


def download(data_dir: Path, name: str) -> None:
    """Fetch ``name`` into ``data_dir`` in a layout the readers understand (needs a network).

    Raises:
        MissingDataError: an archive could not be fetched from any mirror; one line per
            failed URL.
    """
    from torchvision.datasets.utils import download_and_extract_archive

    failures: list[tuple[str, BaseException]] = []
    for urls, folder, file, md5 in _downloads(data_dir, name):
        for url in urls:
            try:
                download_and_extract_archive(url, str(folder), filename=file, md5=md5)
                break
            except Exception as err:  # network, HTTP, checksum: each tried URL is reported
                failures.append((url, err))
        else:
            raise download_error(
                f"{name}: the download into {data_dir} failed, so the dataset is absent. Fix: "
                f"run with network access, or put one of the layouts the readers understand "
                f"into DATA_DIR (or datamodule.data_dir) yourself ({SPECS[name].url}).",
                failures,
            ) from None


def _missing(name: str, looked: list[Path]) -> MissingDataError:
    where = "\n  ".join(str(p) for p in looked)
    return MissingDataError(
        f"{name} not found; looked in:\n  {where}\n"
        f"Point DATA_DIR (or datamodule.data_dir) at a folder holding one of these layouts, "
        f"or run once with datamodule.download=true to fetch it ({SPECS[name].url})."
    )
