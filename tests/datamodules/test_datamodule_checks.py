"""Each datamodule's ``check_config``: bad config values raise ConfigError naming the bare key,
before any data is read; the constructor raises the same error."""

from __future__ import annotations

from typing import Any

import pytest

from datamodules.dvs import DVS128GestureDataModule
from datamodules.graphs import GraphDataModule
from datamodules.images import ImageDataModule
from datamodules.skeleton import NTUSkeletonDataModule
from datamodules.skeleton_synthetic import SyntheticSkeletonDataModule
from effml.errors import ConfigError

PATHS = {"data_dir": "/nonexistent/data", "cache_dir": "/nonexistent/cache"}
GRAPH = {"name": "Cora", **PATHS}
EDGES = {"name": "edgelist", "edge_file": "graphs/x.edges.gz", **PATHS}
IMAGES = {"name": "cifar10", **PATHS}

CASES: list[tuple[type, dict[str, Any], str, str]] = [
    (GraphDataModule, {**GRAPH, "name": "Corra"}, "name", "unknown graph dataset"),
    (GraphDataModule, {**GRAPH, "data_dir": None}, "data_dir", "must be a path"),
    (GraphDataModule, {**GRAPH, "split": [0.9, 0.2]}, "split", "train + val < 1"),
    (GraphDataModule, {**GRAPH, "split": [0.6]}, "split", "pair of fractions"),
    (GraphDataModule, {**GRAPH, "seed": -1}, "seed", "must be >= 0"),
    (GraphDataModule, {**GRAPH, "edge_file": "x.txt"}, "edge_file", "only applies"),
    (GraphDataModule, {**EDGES, "edge_file": None}, "edge_file", "needs the edge list"),
    (GraphDataModule, {**EDGES, "num_features": 0}, "num_features", "must be >= 1"),
    (GraphDataModule, {**EDGES, "num_classes": 1}, "num_classes", "must be >= 2"),
    (ImageDataModule, {**IMAGES, "name": "cifar11"}, "name", "choose one of"),
    (ImageDataModule, {**IMAGES, "batch_size": 0}, "batch_size", "must be >= 1"),
    (ImageDataModule, {**IMAGES, "eval_batch_size": 0}, "eval_batch_size", "must be >= 1"),
    (ImageDataModule, {**IMAGES, "num_workers": -1}, "num_workers", "must be >= 0"),
    (ImageDataModule, {**IMAGES, "val_size": 5}, "val_size", "no image per class"),
    (ImageDataModule, {**IMAGES, "train_subset": 5}, "train_subset", "must be >= 10"),
    (ImageDataModule, {**IMAGES, "test_subset": 5}, "test_subset", "must be >= 10"),
    (DVS128GestureDataModule, {**PATHS, "frames_number": 0}, "frames_number", "must be >= 1"),
    (DVS128GestureDataModule, {**PATHS, "image_size": 256}, "image_size", "must be <= 128"),
    (DVS128GestureDataModule, {**PATHS, "batch_size": 0}, "batch_size", "must be >= 1"),
    (NTUSkeletonDataModule, {"data_dir": None}, "data_dir", "must be a path"),
    (NTUSkeletonDataModule, {"data_dir": "/d", "window": [22, 22]}, "window", "start < end"),
    (NTUSkeletonDataModule, {"data_dir": "/d", "window": [5]}, "window", "start < end"),
    (NTUSkeletonDataModule, {"data_dir": "/d", "batch_size": 0}, "batch_size", "must be >= 1"),
    (NTUSkeletonDataModule, {"data_dir": "/d", "num_classes": 61}, "num_classes", "[60, 120]"),
    (NTUSkeletonDataModule, {"data_dir": "/d", "val_fraction": 1.0}, "val_fraction", "[0, 1)"),
    (SyntheticSkeletonDataModule, {"num_classes": 1}, "num_classes", "must be >= 2"),
    (SyntheticSkeletonDataModule, {"num_frames": 1}, "num_frames", "must be >= 2"),
    (SyntheticSkeletonDataModule, {"batch_size": 0}, "batch_size", "must be >= 1"),
    (SyntheticSkeletonDataModule, {"noise_std": -0.1}, "noise_std", "[0, inf)"),
    (SyntheticSkeletonDataModule, {"val_fraction": -0.1}, "val_fraction", "[0, 1)"),
    (
        SyntheticSkeletonDataModule,
        {"samples_per_class_per_view": 1},
        "samples_per_class_per_view",
        "leaves no training performance",
    ),
]


@pytest.mark.parametrize(
    ("cls", "cfg", "key", "problem"),
    CASES,
    ids=[f"{cls.__name__}-{key}-{i}" for i, (cls, _, key, _) in enumerate(CASES)],
)
def test_bad_value_names_its_key(cls: type, cfg: dict, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        cls.check_config(cfg)
    assert info.value.key == key
    assert problem in info.value.problem
    with pytest.raises(ConfigError) as built:
        cls(**cfg)
    assert str(built.value) == str(info.value)


@pytest.mark.parametrize(
    ("cls", "cfg"),
    [
        (GraphDataModule, GRAPH),
        (GraphDataModule, {**EDGES, "split": [0.5, 0.25], "require_source": True}),
        (ImageDataModule, {**IMAGES, "val_size": 0, "train_subset": 100, "test_subset": 10}),
        (DVS128GestureDataModule, {**PATHS, "image_size": 32}),
        (NTUSkeletonDataModule, {"data_dir": "/d", "window": None, "num_classes": 120}),
        (SyntheticSkeletonDataModule, {}),
    ],
)
def test_good_values_pass(cls: type, cfg: dict) -> None:
    cls.check_config(cfg)
