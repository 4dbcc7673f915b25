"""Data provenance: source records next to caches, rebuilds when raw files change, the warning
(or error) for a cache built from another folder, and one line per failed download."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

import datamodules.graph_sources as graph_sources
from datamodules.dvs import RAW_FILES, prepare_root
from datamodules.graphs import GraphDataModule
from datamodules.image_sources import download
from datamodules.provenance import read_record, record_path
from effml.errors import MissingDataError

TOY_URL = "https://example.org/toy"


def _write_toy_raw(folder: Path, num_nodes: int) -> None:
    raw = folder / "Toy" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    ring = np.arange(num_nodes)
    np.savez(
        raw / "toy.npz",
        x=np.eye(num_nodes, dtype=np.float32),
        y=ring % 2,
        edge_index=np.stack([ring, (ring + 1) % num_nodes]),
    )


@pytest.fixture
def toy_source(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``Cora`` served by a tiny loader that processes ``raw/toy.npz`` like PyG: once, into
    ``processed/``. Returns the list of node counts it processed."""
    processed_sizes: list[int] = []

    def build(name: str, cache_dir: Path) -> Data:
        folder = cache_dir / "Toy"
        processed = folder / "processed" / "graph.pt"
        if not processed.is_file():
            with np.load(folder / "raw" / "toy.npz") as raw:
                n = len(raw["y"])
                masks = [torch.from_numpy(np.arange(n) % 3 == k) for k in range(3)]
                graph = {
                    "x": torch.from_numpy(raw["x"]),
                    "y": torch.from_numpy(raw["y"]),
                    "edge_index": torch.from_numpy(raw["edge_index"]),
                    "masks": torch.stack(masks),
                }
            processed.parent.mkdir(parents=True, exist_ok=True)
            torch.save(graph, processed)
            processed_sizes.append(n)
        graph = torch.load(processed, weights_only=True)
        masks = graph.pop("masks")
        return Data(**graph, train_mask=masks[0], val_mask=masks[1], test_mask=masks[2])

    source = graph_sources._Source(
        "multiclass", "acc", "Toy", ("raw/toy.npz",), "the toy generator", TOY_URL, build
    )
    monkeypatch.setitem(graph_sources._SOURCES, "Cora", source)
    return processed_sizes


def _load(data_dir: Path, cache: Path, **options: object) -> Data:
    return GraphDataModule("Cora", str(data_dir), str(cache), **options).data


def test_cache_from_another_folder_warns_naming_both(
    toy_source: list[int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder_a, empty_b, cache = tmp_path / "a", tmp_path / "b", tmp_path / "cache"
    empty_b.mkdir()
    _write_toy_raw(folder_a, 6)
    with caplog.at_level(logging.INFO):
        assert _load(folder_a, cache).num_nodes == 6
    assert f"read the prepared copy {folder_a / 'Toy'}" in caplog.text
    assert read_record(cache / "Toy").source == str(folder_a / "Toy")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert _load(empty_b, cache).num_nodes == 6
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"DATA_DIR={empty_b} has no Cora" in warnings[0]
    assert f"built from {folder_a / 'Toy'}" in warnings[0]
    assert "require_source=true" in warnings[0]
    assert toy_source == [6]  # the cache served the second run


def test_require_source_makes_the_foreign_cache_an_error(
    toy_source: list[int], tmp_path: Path
) -> None:
    folder_a, empty_b, cache = tmp_path / "a", tmp_path / "b", tmp_path / "cache"
    empty_b.mkdir()
    _write_toy_raw(folder_a, 6)
    _load(folder_a, cache)
    with pytest.raises(MissingDataError) as info:
        _load(empty_b, cache, require_source=True)
    message = str(info.value)
    assert str(empty_b) in message and str(folder_a / "Toy") in message
    assert "require_source=false" in message and "DATA_DIR" in message


def test_changed_raw_file_rebuilds_the_cache(
    toy_source: list[int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder_a, cache = tmp_path / "a", tmp_path / "cache"
    _write_toy_raw(folder_a, 6)
    _load(folder_a, cache)
    _load(folder_a, cache)
    assert toy_source == [6]
    _write_toy_raw(folder_a, 9)
    with caplog.at_level(logging.INFO):
        assert _load(folder_a, cache).num_nodes == 9
    assert toy_source == [6, 9]
    assert "rebuilding the cache" in caplog.text and "raw/toy.npz changed size" in caplog.text
    record = read_record(cache / "Toy")
    assert record.files["raw/toy.npz"][0] == (folder_a / "Toy" / "raw" / "toy.npz").stat().st_size


def test_failed_download_is_one_line_per_url_without_chained_tracebacks(
    toy_source: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(name: str, cache_dir: Path) -> Data:
        raise OSError("network unreachable\nsecond line of a long report")

    offline_source = dataclasses.replace(graph_sources._SOURCES["Cora"], build=offline)
    monkeypatch.setitem(graph_sources._SOURCES, "Cora", offline_source)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MissingDataError) as info:
        _load(empty, tmp_path / "cache")
    lines = str(info.value).splitlines()
    assert lines[-2:] == ["Downloads tried:", f"  {TOY_URL}: OSError: network unreachable"]
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_require_source_does_not_download(toy_source: list[int], tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="require_source=true rules out a download"):
        _load(tmp_path, tmp_path / "cache", require_source=True)
    assert toy_source == []


def test_image_download_failures_name_each_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried: list[str] = []

    def offline(url: str, *args: object, **kwargs: object) -> None:
        tried.append(url)
        raise OSError(f"cannot reach {url}")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", offline)
    with pytest.raises(MissingDataError) as info:
        download(tmp_path, "mnist")
    lines = str(info.value).splitlines()
    assert len(tried) == 2  # both mirrors of the first archive, then it stops
    assert lines[-2:] == [f"  {url}: OSError: cannot reach {url}" for url in tried]
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_edge_list_cache_records_its_source_and_follows_edits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    edges, cache = tmp_path / "tiny.txt", tmp_path / "cache"
    edges.write_text("0 1\n1 2\n")
    make = lambda: GraphDataModule("edgelist", str(tmp_path), str(cache), edge_file=str(edges))  # noqa: E731
    with caplog.at_level(logging.INFO):
        assert make().data.num_nodes == 3
        assert make().data.num_nodes == 3
    assert "edges read from the cache" in caplog.text and f"built from {edges}" in caplog.text
    (cache_file,) = (cache / "edge_lists").glob("*.pt")
    assert record_path(cache_file).is_file()
    caplog.clear()
    edges.write_text("0 1\n1 2\n2 3\n")
    with caplog.at_level(logging.INFO):
        assert make().data.num_nodes == 4
    assert "rebuilding the cache" in caplog.text and "tiny.txt changed size" in caplog.text


def test_dvs_cache_is_cleared_when_the_raw_files_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    download_dir = tmp_path / "data" / "DVS128Gesture" / "download"
    download_dir.mkdir(parents=True)
    for name in RAW_FILES:
        (download_dir / name).write_text("x")
    root = prepare_root(tmp_path / "data", tmp_path / "cache", "DVS128Gesture")
    (root / "frames_number_16_split_by_number").mkdir()  # what SpikingJelly derives
    prepare_root(tmp_path / "data", tmp_path / "cache", "DVS128Gesture")
    assert (root / "frames_number_16_split_by_number").is_dir()
    archive = download_dir / "DvsGesture.tar.gz"
    stat = archive.stat()
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with caplog.at_level(logging.INFO):
        prepare_root(tmp_path / "data", tmp_path / "cache", "DVS128Gesture")
    assert "download/DvsGesture.tar.gz was modified" in caplog.text
    assert not (root / "frames_number_16_split_by_number").exists()
    assert (root / "download").resolve() == download_dir.resolve()
