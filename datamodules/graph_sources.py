"""Loaders that turn a dataset name or an edge-list file into one PyG node-classification graph.

Named datasets are read from a prepared copy under ``data_dir`` when it is complete, else
downloaded into ``cache_dir``; ``data_dir`` is only ever read. Prepared layouts (paths relative
to ``data_dir``; the same paths are used under ``cache_dir``):

- ``Planetoid/<Name>/raw/ind.<name>.{x,tx,allx,y,ty,ally,graph,test.index}`` for Cora,
  CiteSeer and PubMed (the kimiyoung/planetoid files)
- ``Reddit/raw/{reddit_data.npz,reddit_graph.npz}`` (the extracted data.dgl.ai ``reddit.zip``)
- ``Flickr/raw/`` and ``Yelp/raw/`` with ``{adj_full.npz,feats.npy,class_map.json,role.json}``
- ``ogbn_products/``, ``ogbn_proteins/`` and ``ogbn_arxiv/``: the folder ogb itself creates
  under its root (the official zip extracted and renamed), i.e. ``raw/*.csv.gz``,
  ``split/<split>/*.csv.gz`` and ``RELEASE_v1.txt``; a ``processed/`` folder there is ignored.

The files of a complete prepared copy are symlinked (copied where links fail) into ``cache_dir``
and processed there by PyG or ogb.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from ogb.utils import url as ogb_url
from torch_geometric.data import Data
from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
from torch_geometric.data.storage import GlobalStorage
from torch_geometric.utils import index_to_mask, scatter

from datamodules.provenance import (
    check_cache_source,
    download_error,
    fingerprint,
    read_record,
    rebuild_reason,
    write_record,
)
from effml.errors import MissingDataError

log = logging.getLogger(__name__)

EDGE_LIST = "edgelist"

_OGB_URL = "http://snap.stanford.edu/ogb/data/nodeproppred"


@dataclass(frozen=True)
class LoadedGraph:
    """A node-classification graph and what a model needs to know about it."""

    data: Data
    num_classes: int
    task_type: str
    metric: str


@dataclass(frozen=True)
class _Source:
    task_type: str
    metric: str
    folder: str  # relative to data_dir (prepared copy) and to cache_dir (processing root)
    required: tuple[str, ...]  # relative to folder: what a complete prepared copy holds
    how_to_get: str
    download_url: str  # what a download fetches, named when it fails
    build: Callable[[str, Path], Data]  # (canonical name, cache_dir) -> graph


def _build_planetoid(name: str, cache_dir: Path) -> Data:
    from torch_geometric.datasets import Planetoid

    return Planetoid(str(cache_dir / "Planetoid"), name, split="public")[0]


def _build_pyg(name: str, cache_dir: Path) -> Data:
    from torch_geometric import datasets

    return getattr(datasets, name)(str(cache_dir / name))[0]


def _build_ogbn(name: str, cache_dir: Path) -> Data:
    from ogb.nodeproppred import PygNodePropPredDataset

    folder = cache_dir / _SOURCES[name].folder
    if _missing(folder, _SOURCES[name].required):
        _download_ogbn(name, folder)
    # ogb reads its processed file with a bare torch.load, which since torch 2.6 unpickles
    # only allow-listed classes: allow the three PyG ones that file holds.
    with torch.serialization.safe_globals([DataEdgeAttr, DataTensorAttr, GlobalStorage]):
        dataset = PygNodePropPredDataset(name=name, root=str(folder.parent))
        graph, split = dataset[0], dataset.get_idx_split()
    n = graph.num_nodes
    x = graph.x
    if x is None:  # ogbn-proteins has edge features only: average the incoming ones per node
        x = scatter(graph.edge_attr.float(), graph.edge_index[1], 0, dim_size=n, reduce="mean")
    return Data(
        x=x,
        y=graph.y,
        edge_index=graph.edge_index,
        train_mask=index_to_mask(split["train"], n),
        val_mask=index_to_mask(split["valid"], n),
        test_mask=index_to_mask(split["test"], n),
    )


def _download_ogbn(name: str, folder: Path) -> None:
    """Fetch the official zip into ``folder.parent`` and rename it as ogb expects (no prompts)."""
    short = name.split("-", 1)[1]
    folder.parent.mkdir(parents=True, exist_ok=True)
    archive = ogb_url.download_url(f"{_OGB_URL}/{short}.zip", str(folder.parent))
    ogb_url.extract_zip(archive, str(folder.parent))
    os.unlink(archive)
    if folder.exists():
        shutil.rmtree(folder)
    shutil.move(folder.parent / short, folder)


def _planetoid(name: str) -> _Source:
    parts = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
    return _Source(
        "multiclass",
        "acc",
        f"Planetoid/{name}",
        tuple(f"raw/ind.{name.lower()}.{part}" for part in parts),
        "https://github.com/kimiyoung/planetoid/tree/master/data",
        "https://github.com/kimiyoung/planetoid/raw/master/data",
        _build_planetoid,
    )


def _saint(name: str, task_type: str, metric: str) -> _Source:
    files = ("adj_full.npz", "feats.npy", "class_map.json", "role.json")
    return _Source(
        task_type,
        metric,
        name,
        tuple(f"raw/{f}" for f in files),
        f"the GraphSAINT release (Google Drive ids in torch_geometric.datasets.{name})",
        f"https://drive.google.com (the file ids in torch_geometric.datasets.{name})",
        _build_pyg,
    )


def _ogbn(name: str, task_type: str, metric: str, split: str, raw: tuple[str, ...]) -> _Source:
    short, folder = name.split("-", 1)[1], name.replace("-", "_")
    raw_files = ("edge", "node-label", "num-node-list", "num-edge-list", *raw)
    required = (
        *(f"raw/{f}.csv.gz" for f in raw_files),
        *(f"split/{split}/{part}.csv.gz" for part in ("train", "valid", "test")),
        "RELEASE_v1.txt",
    )
    how = f"{_OGB_URL}/{short}.zip, extracted and the folder renamed to {folder}"
    return _Source(task_type, metric, folder, required, how, f"{_OGB_URL}/{short}.zip", _build_ogbn)


_SOURCES: dict[str, _Source] = {
    "Cora": _planetoid("Cora"),
    "CiteSeer": _planetoid("CiteSeer"),
    "PubMed": _planetoid("PubMed"),
    "Reddit": _Source(
        "multiclass",
        "acc",
        "Reddit",
        ("raw/reddit_data.npz", "raw/reddit_graph.npz"),
        "https://data.dgl.ai/dataset/reddit.zip, extracted into raw/",
        "https://data.dgl.ai/dataset/reddit.zip",
        _build_pyg,
    ),
    "Flickr": _saint("Flickr", "multiclass", "acc"),
    "Yelp": _saint("Yelp", "multilabel", "f1_micro"),
    "ogbn-products": _ogbn("ogbn-products", "multiclass", "acc", "sales_ranking", ("node-feat",)),
    "ogbn-proteins": _ogbn("ogbn-proteins", "multilabel", "rocauc", "species", ("edge-feat",)),
    "ogbn-arxiv": _ogbn("ogbn-arxiv", "multiclass", "acc", "time", ("node-feat",)),
}
GRAPH_NAMES: tuple[str, ...] = (*_SOURCES, EDGE_LIST)


def canonical_name(name: str) -> str:
    """Return the canonical spelling of a dataset name given in any case."""
    by_lower = {known.lower(): known for known in GRAPH_NAMES}
    if not isinstance(name, str) or name.lower() not in by_lower:
        raise ValueError(
            f"Unknown graph dataset name={name!r}; valid names: "
            f"{', '.join(GRAPH_NAMES)} (case-insensitive)."
        )
    return by_lower[name.lower()]


def _missing(folder: Path, required: tuple[str, ...]) -> list[str]:
    return [rel for rel in required if not (folder / rel).is_file()]


def _link_prepared(src: Path, dst: Path) -> None:
    """Symlink every file of ``src`` except ``processed/`` into the same place under ``dst``."""
    for file in sorted(src.rglob("*")):
        rel = file.relative_to(src)
        if rel.parts[0] == "processed" or not file.is_file():
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        try:
            target.symlink_to(file)
        except OSError:
            shutil.copy2(file, target)


def _linked_folder(dst: Path, rel: str) -> Path | None:
    """The prepared copy that ``dst/rel`` links into, or None when it is not a link."""
    link = dst / rel
    if not link.is_symlink():
        return None
    return link.resolve().parents[len(Path(rel).parts) - 1]


def _refresh_processed(name: str, dst: Path, reason: str | None) -> None:
    """Delete the processed files under ``dst`` when ``reason`` says they are out of date."""
    if reason and (dst / "processed").exists():
        log.info("%s: rebuilding the cache %s: %s", name, dst, reason)
        shutil.rmtree(dst / "processed")


def load_named_graph(
    name: str, data_dir: Path, cache_dir: Path, require_source: bool = False
) -> LoadedGraph:
    """Load a named dataset (not ``edgelist``) with its standard split.

    The prepared copy in ``data_dir`` is used when complete; else a cache built earlier (with
    a warning naming the folder it came from, or an error with ``require_source``); else a
    download. The cache keeps a source record and is rebuilt when the raw files change.

    Raises:
        MissingDataError: the prepared copy is incomplete and downloading failed (the message
            names the folder, the missing files, each failed download and how to get the
            files), or ``require_source`` and only a cache or a download could serve.
    """
    name = canonical_name(name)
    source = _SOURCES[name]
    src, dst = data_dir / source.folder, cache_dir / source.folder
    for link in dst.rglob("*"):  # links left from a prepared copy that has since moved
        if link.is_symlink() and not link.exists():
            link.unlink()
    missing = _missing(src, source.required)
    if not missing:
        files = fingerprint(src, [src / rel for rel in source.required])
        reason = rebuild_reason(read_record(dst), src, files)
        _refresh_processed(name, dst, reason)
        _link_prepared(src, dst)
        graph = source.build(name, cache_dir)
        if reason:
            write_record(dst, src, files)
        log.info("%s: read the prepared copy %s (processed in the cache %s)", name, src, dst)
    elif not _missing(dst, source.required):
        files = fingerprint(dst, [dst / rel for rel in source.required])
        record = read_record(dst)
        linked = _linked_folder(dst, source.required[0])
        built_from = record.source if record else str(linked or f"{dst} (origin not recorded)")
        check_cache_source(name, data_dir, src, dst, built_from, require_source)
        reason = rebuild_reason(record, built_from, files)
        _refresh_processed(name, dst, reason)
        graph = source.build(name, cache_dir)
        if reason:
            write_record(dst, built_from, files)
    else:
        where = (
            f"Looked in {src}, which lacks {', '.join(missing)}. That folder is "
            f"<data_dir>/{source.folder}, and <data_dir> is set by the DATA_DIR environment "
            f"variable or the paths.data_dir config option (now {data_dir})."
        )
        if require_source:
            raise MissingDataError(
                f"{name}: no data. {where} datamodule.require_source=true rules out a "
                f"download. Fix: put the files there (from {source.how_to_get})."
            )
        log.info("%s: %s lacks %s; downloading into %s", name, src, ", ".join(missing), dst)
        try:
            graph = source.build(name, cache_dir)
        except Exception as err:
            if not _missing(dst, source.required):
                raise
            failures = [(source.download_url, err)]
        else:
            failures = []
        if failures:
            raise download_error(
                f"{name}: no usable data. {where} Fix: put the files there (from "
                f"{source.how_to_get}), or run once with network access so that they are "
                f"downloaded into the cache {dst}.",
                failures,
            ) from None
        write_record(dst, source.download_url, fingerprint(dst, [dst / r for r in source.required]))
        log.info("%s: downloaded from %s into the cache %s", name, source.download_url, dst)
    multilabel = source.task_type == "multilabel"
    y = graph.y.float() if multilabel else graph.y.view(-1).long()
    data = Data(
        x=graph.x.float(),
        y=y,
        edge_index=graph.edge_index,
        train_mask=graph.train_mask,
        val_mask=graph.val_mask,
        test_mask=graph.test_mask,
    )
    num_classes = y.size(1) if multilabel else int(y.max()) + 1
    return LoadedGraph(data, num_classes, source.task_type, source.metric)
