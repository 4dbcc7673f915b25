"""Edge-list graphs: parse ``*.edges.gz``, SNAP ``.txt`` and ``.csv`` edge files (cached as
``.pt`` with a source record), and turn one into a node-classification graph with given or
generated features and labels and a random split."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Data

from datamodules.graph_sources import LoadedGraph
from datamodules.provenance import fingerprint, read_record, rebuild_reason, write_record

log = logging.getLogger(__name__)

_CLASS_MEAN_STD = 0.25  # spread of generated class means against unit noise: learnable, not trivial
_EDGE_CACHE_VERSION = 1  # bump when parsing changes so old caches are ignored


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
    """Parse an edge-list file, cached as ``.pt`` in ``cache_dir/edge_lists`` (one per path).

    Formats: ``*.edges.gz`` (``# nodes: N`` header, 0-based ids), SNAP ``.txt``/``.txt.gz``
    (whitespace-separated, ``#`` comments) and ``.csv``/``.csv.gz`` (optional column-name row).
    Without a ``# nodes:`` header the ids are relabelled to 0..N-1 in sorted order. The cache's
    source record holds the file's size and mtime: an edited file is parsed again.
    """
    path = path.resolve()
    key = f"{path}|{_EDGE_CACHE_VERSION}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    cache_file = cache_dir / "edge_lists" / f"{path.name.split('.')[0]}-{digest}.pt"
    files = fingerprint(path.parent, [path])
    reason = rebuild_reason(read_record(cache_file), path, files)
    if cache_file.is_file() and reason is None:
        cached = torch.load(cache_file, weights_only=True)
        log.info("%s: edges read from the cache %s, built from %s", path.name, cache_file, path)
        return EdgeList(cached["edge_index"], cached["num_nodes"])
    if cache_file.is_file():
        log.info("%s: rebuilding the cache %s: %s", path.name, cache_file, reason)
    edges = parse_edge_list(path)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    partial = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
    torch.save({"edge_index": edges.edge_index, "num_nodes": edges.num_nodes}, partial)
    os.replace(partial, cache_file)
    write_record(cache_file, path, files)
    log.info("%s: edges parsed from %s, cached in %s", path.name, path, cache_file)
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
    given = {"features": features_file, "labels": labels_file}
    if any(given.values()):
        log.info(
            "%s: %s",
            path.name,
            ", ".join(f"{what} read from {file}" for what, file in given.items() if file),
        )
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
