"""CelebA (aligned and cropped faces) for the diffusion experiments, from the user's copy.

Layout under ``data_dir`` (the official release's files)::

    celeba/img_align_celeba/000001.jpg ... 202599.jpg   (178×218 JPEGs)
    celeba/list_eval_partition.txt                       (file, 0 train | 1 valid | 2 test)
    celeba/list_attr_celeba.txt                          (40 ±1 attributes per file)

Images are centre-cropped to 140×140 and resized to ``image_size`` (64 in DDIM and U-ViT's
CelebA 64×64), decoded once into ``cache_dir/images``. Labels are the ``Male`` attribute, the
two classes of the classifier behind ``fid/classifier``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from datamodules.image_sources import ImageSpec
from datamodules.images import ImageDataModule
from effml.checks import check_int, with_defaults
from effml.errors import DataError, MissingDataError

log = logging.getLogger(__name__)
LAYOUT = (
    "celeba/img_align_celeba/<000001..202599>.jpg, celeba/list_eval_partition.txt and "
    "celeba/list_attr_celeba.txt (the official 'Align&Cropped Images' release, "
    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html)"
)
PARTITIONS = {"train": "0", "val": "1", "test": "2"}
CROP = 140


def celeba_folder(data_dir: str | Path) -> Path:
    """``data_dir/celeba`` when it holds the layout; MissingDataError naming what is absent."""
    root = Path(data_dir).expanduser() / "celeba"
    needed = [root / "img_align_celeba", root / "list_eval_partition.txt"]
    needed.append(root / "list_attr_celeba.txt")
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise MissingDataError(
            f"CelebA is absent: {', '.join(missing)} not found. Put the dataset under "
            f"{root} as {LAYOUT}, or point DATA_DIR (paths.data_dir) at the folder holding "
            "celeba/"
        )
    return root


def read_celeba(root: Path, split: str, size: int, limit: int | None = None) -> tuple:
    """``(images (N, size, size, 3) uint8, labels (N,) int64)`` of ``split``."""
    files = [
        line.split()[0]
        for line in (root / "list_eval_partition.txt").read_text().splitlines()
        if len(line.split()) == 2 and line.split()[1] == PARTITIONS[split]
    ][:limit]
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    names = lines[1].split()
    if "Male" not in names:
        raise DataError(f"{root / 'list_attr_celeba.txt'} has no Male column (header: {names[:5]})")
    col = names.index("Male") + 1
    male = {p[0]: p[col] == "1" for p in (line.split() for line in lines[2:]) if len(p) > col}
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, name in enumerate(tqdm(files, desc=f"CelebA {split}", leave=False)):
        with Image.open(root / "img_align_celeba" / name) as img:
            w, h = img.size
            left, top = (w - CROP) // 2, (h - CROP) // 2
            img = img.convert("RGB").crop((left, top, left + CROP, top + CROP))
            images[i] = np.asarray(img.resize((size, size), Image.BICUBIC))
    labels = np.array([male.get(name, False) for name in files], dtype=np.int64)
    return images, labels


class CelebADataModule(ImageDataModule):
    """CelebA faces at ``image_size`` (see the module doc); the official partition's
    validation and test files are the validation and test splits.

    Args:
        data_dir: the folder holding ``celeba/``; checked when the datamodule is built.
        image_size: output side after the 140×140 centre crop.
        max_images: read at most this many files per split (null: all).
        other arguments: see :class:`ImageDataModule` (``val_size`` is unused).
    """

    def __init__(
        self,
        data_dir: str,
        cache_dir: str,
        image_size: int = 64,
        max_images: int | None = None,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        augment: bool = True,
        pin_memory: bool = False,
        seed: int = 0,
    ) -> None:
        self.check_config({"image_size": image_size, "max_images": max_images})
        self.root = celeba_folder(data_dir)
        super().__init__(
            "cifar10",  # replaced below; ImageDataModule's loaders and caching are reused
            data_dir,
            cache_dir,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            val_size=0,
            augment=augment,
            pin_memory=pin_memory,
            seed=seed,
        )
        self.hparams.name = "celeba"
        self.max_images = max_images
        self.spec = ImageSpec(3, image_size, 2, (0.5,) * 3, (0.5,) * 3, 0, True, LAYOUT)

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        cfg = with_defaults(cls, cfg)
        check_int(cfg, "image_size", minimum=8, example=64)
        check_int(cfg, "max_images", minimum=2, example=50000)

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        size, limit = self.spec.size, self.max_images
        path = self.cache_dir / f"celeba{size}_{split}_{limit or 'all'}.npz"
        if path.is_file():
            with np.load(path) as cached:
                return cached["images"], cached["labels"]
        images, labels = read_celeba(self.root, split, size, limit)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, images=images, labels=labels)
        log.info("CelebA %s: %d images decoded, cached in %s", split, len(labels), path)
        return images, labels

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train = self.load_split("train")
        test = self.load_split("test")
        val = self.load_split("val")
        self.train_set = self._dataset(*train)
        self.val_set = self._dataset(*val)
        self.test_set = self._dataset(*test)
