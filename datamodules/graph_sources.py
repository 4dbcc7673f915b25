"""Loaders that turn a dataset name or an edge-list file into one PyG node-classification graph.

Named datasets are read from a prepared copy under ``data_dir`` when it is complete, else
downloaded into ``cache_dir``; ``data_dir`` is only ever read. Prepared layouts (paths relative
to ``data_dir``; the same paths are used under ``cache_dir``):

- ``Planetoid/<Name>/raw/ind.<name>.{x,tx,allx,y,ty,ally,graph,test.index}`` for Cora,
  CiteSeer and PubMed (the kimiyoung/planetoid files)
- ``Reddit/raw/{reddit_data.npz,reddit_graph.npz}`` (the extracted data.dgl.ai ``reddit.zip``)
- ``Flickr/raw/`` and ``Yelp/raw/`` with ``{adj_full.npz,feats.npy,class_map.json,role.json}``
- ``ogbn_products/`` and ``ogbn_proteins/``: the folder ogb itself creates under its root (the
  official zip extracted and renamed), i.e. ``raw/*.csv.gz``, ``split/<split>/*.csv.gz`` and
  ``RELEASE_v1.txt``; a ``processed/`` folder there is ignored.

The files of a complete prepared copy are symlinked (copied where links fail) into ``cache_dir``
and processed there by PyG or ogb.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from ogb.utils import url as ogb_url
from torch_geometric.data import Data
from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
from torch_geometric.data.storage import GlobalStorage
from torch_geometric.utils import index_to_mask, scatter

from datamodules.errors import MissingDataError

log = logging.getLogger(__name__)

EDGE_LIST = "edgelist"

_CLASS_MEAN_STD = 0.25  # spread of generated class means against unit noise: learnable, not trivial
_EDGE_CACHE_VERSION = 1  # bump when parsing changes so old caches are ignored
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
    return _Source(task_type, metric, folder, required, how, _build_ogbn)


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
        _build_pyg,
    ),
    "Flickr": _saint("Flickr", "multiclass", "acc"),
    "Yelp": _saint("Yelp", "multilabel", "f1_micro"),
    "ogbn-products": _ogbn("ogbn-products", "multiclass", "acc", "sales_ranking", ("node-feat",)),
    "ogbn-proteins": _ogbn("ogbn-proteins", "multilabel", "rocauc", "species", ("edge-feat",)),
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


def load_named_graph(name: str, data_dir: Path, cache_dir: Path) -> LoadedGraph:
    """Load a named dataset (not ``edgelist``) with its standard split.

    Raises:
        MissingDataError: the prepared copy is incomplete and downloading failed; the message
            names the folder, the missing files and how to obtain them.
    """
    name = canonical_name(name)
    source = _SOURCES[name]
    src, dst = data_dir / source.folder, cache_dir / source.folder
    for link in dst.rglob("*"):  # links left from a prepared copy that has since moved
        if link.is_symlink() and not link.exists():
            link.unlink()
    missing = _missing(src, source.required)
    if not missing:
        log.info("%s: using the prepared copy in %s", name, src)
        _link_prepared(src, dst)
    elif _missing(dst, source.required):
        log.info("%s: %s lacks %s; downloading into %s", name, src, ", ".join(missing), dst)
    try:
        graph = source.build(name, cache_dir)
    except Exception as err:
        if not _missing(dst, source.required):
            raise
        raise MissingDataError(
            f"{name}: no usable data. Looked in {src}, which lacks {', '.join(missing)}; "
            f"the download into {dst} then failed ({type(err).__name__}: {err}). "
            f"That folder is <data_dir>/{source.folder}, and <data_dir> is set by the DATA_DIR "
            f"environment variable or the paths.data_dir config option (now {data_dir}). "
            f"Fix: put the files there (from {source.how_to_get}), or run once with network "
            f"access so that they are downloaded into the cache."
        ) from err
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


@dataclass(frozen=True)
class EdgeList:
    """Edges parsed from a file: ``edge_index`` (2, E) over nodes 0..num_nodes-1, as listed."""

    edge_index: torch.Tensor
    num_nodes: int


def read_edge_list_header(path: Path) -> dict[str, str]:
    """Return the ``# key: value`` lines at the top of an edge-list file, keys lower-cased."""
    header: dict[str, str] = {}
    with gzip.open(path, "rt") if path.suffix == ".gz" else open(path) as lines:
        for line in lines:
            if not line.startswith("#"):
                break
            key, colon, value = line[1:].partition(":")
            if colon:
                header[key.strip().lower()] = value.strip()
    return header


def parse_edge_list(path: Path) -> EdgeList:
    """Parse an edge-list file (the formats ``read_edge_list`` takes) without caching."""
    header = read_edge_list_header(path)
    is_csv = path.name.endswith((".csv", ".csv.gz"))
    has_column_names = False
    if is_csv:
        first = pd.read_csv(path, header=None, nrows=1, comment="#", dtype=str)
        has_column_names = not str(first.iloc[0, 0]).strip().lstrip("-").isdigit()
    try:
        frame = pd.read_csv(
            path,
            sep="," if is_csv else r"\s+",
            header=0 if has_column_names else None,
            comment="#",
            usecols=[0, 1],
            dtype=np.int64,
            engine="c",
        )
    except (ValueError, pd.errors.EmptyDataError) as err:
        raise ValueError(
            f"Cannot parse {path} as an edge list ('src dst' integer ids a line, "
            f"'#' comments{', comma-separated' if is_csv else ''}): {err}"
        ) from err
    if frame.empty:
        raise ValueError(f"{path} lists no edges.")
    ids = frame.to_numpy().T  # (2, E)
    declared = header.get("nodes", "")
    if declared.isdigit():  # the *.edges.gz header: 0-based ids, isolated nodes counted
        num_nodes = int(declared)
        if ids.min() < 0 or ids.max() >= num_nodes:
            raise ValueError(
                f"{path}: header says nodes: {num_nodes}, but ids run from "
                f"{ids.min()} to {ids.max()}; fix the header or the ids."
            )
    else:
        uniq, ids = np.unique(ids, return_inverse=True)
        ids = ids.reshape(2, -1)
        num_nodes = len(uniq)
        if uniq[0] != 0 or uniq[-1] != num_nodes - 1:
            log.info(
                "%s: relabelled %d node ids (%d..%d) to 0..%d",
                path.name,
                num_nodes,
                uniq[0],
                uniq[-1],
                num_nodes - 1,
            )
    return EdgeList(torch.from_numpy(np.ascontiguousarray(ids)), num_nodes)


def read_edge_list(path: Path, cache_dir: Path) -> EdgeList:
    """Parse an edge-list file, cached as ``.pt`` in ``cache_dir`` keyed by path and mtime.

    Formats: ``*.edges.gz`` (``# nodes: N`` header, 0-based ids), SNAP ``.txt``/``.txt.gz``
    (whitespace-separated, ``#`` comments) and ``.csv``/``.csv.gz`` (optional column-name row).
    Without a ``# nodes:`` header the ids are relabelled to 0..N-1 in sorted order.
    """
    path = path.resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_mtime_ns}|{stat.st_size}|{_EDGE_CACHE_VERSION}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    cache_file = cache_dir / "edge_lists" / f"{path.name.split('.')[0]}-{digest}.pt"
    if cache_file.is_file():
        cached = torch.load(cache_file, weights_only=True)
        log.info("%s: edges read from the cache %s", path.name, cache_file)
        return EdgeList(cached["edge_index"], cached["num_nodes"])
    edges = parse_edge_list(path)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    partial = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
    torch.save({"edge_index": edges.edge_index, "num_nodes": edges.num_nodes}, partial)
    os.replace(partial, cache_file)
    return edges


def _load_array(path: Path, what: str, shape: str, ndim: int, num_nodes: int) -> np.ndarray:
    array = np.load(path)
    if array.ndim != ndim or array.shape[0] != num_nodes:
        raise ValueError(
            f"{what} {path} has shape {array.shape}; expected {shape} with "
            f"N={num_nodes} nodes, one row per node id of the edge list."
        )
    return array


def load_edge_list_graph(
    path: Path,
    cache_dir: Path,
    num_features: int,
    num_classes: int,
    split: tuple[float, float],
    seed: int,
    features_file: Path | None = None,
    labels_file: Path | None = None,
) -> LoadedGraph:
    """Load an edge list with given or generated features, labels and a random split.

    Generated labels are uniform over ``num_classes``; generated features are unit Gaussian
    noise plus a per-class mean, float32. Labels, features and the split come from three
    independent streams of ``seed``, so the split depends only on ``seed``, N and ``split``.
    """
    edges = read_edge_list(path, cache_dir)
    n = edges.num_nodes
    label_rng, feature_rng, split_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    if labels_file is not None:
        labels = _load_array(labels_file, "labels_file", "(N,) integer labels", 1, n)
        if labels.dtype.kind not in "iu" or labels.min() < 0:
            raise ValueError(
                f"labels_file {labels_file} must hold integers >= 0 "
                f"(dtype {labels.dtype}, min {labels.min()})."
            )
        num_classes = int(labels.max()) + 1
    else:
        labels = label_rng.integers(num_classes, size=n)
    if features_file is not None:
        x = _load_array(features_file, "features_file", "(N, F) features", 2, n)
    else:
        means = _CLASS_MEAN_STD * feature_rng.standard_normal((num_classes, num_features))
        x = feature_rng.standard_normal((n, num_features)) + means[labels]
    order = torch.from_numpy(split_rng.permutation(n))
    n_train, n_val = round(split[0] * n), round(split[1] * n)
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    for mask, part in zip(
        masks,
        (order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]),
        strict=True,
    ):
        mask[part] = True
    data = Data(
        x=torch.from_numpy(np.asarray(x, dtype=np.float32)),
        y=torch.from_numpy(labels.astype(np.int64)),
        edge_index=edges.edge_index,
        train_mask=masks[0],
        val_mask=masks[1],
        test_mask=masks[2],
    )
    return LoadedGraph(data, num_classes, "multiclass", "acc")
