"""Full-batch node classification: Planetoid, Reddit, Flickr, Yelp, ogbn-* or an edge list."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader
from torch_geometric.data import Data
from torch_geometric.transforms import NormalizeFeatures
from torch_geometric.utils import add_self_loops, coalesce, remove_self_loops, to_undirected

from datamodules.edge_lists import load_edge_list_graph
from datamodules.graph_sources import (
    EDGE_LIST,
    GRAPH_NAMES,
    LoadedGraph,
    canonical_name,
    load_named_graph,
)
from effml.checks import check_int, with_defaults
from effml.errors import ConfigError, MissingDataError

log = logging.getLogger(__name__)


def _whole_graph(graph: Data) -> Data:
    """Collate for a one-graph dataset: the batch is the graph itself."""
    return graph


def _check_split(split: Any) -> None:
    """``split`` is a ``[train, val]`` pair with train > 0, val > 0 and train + val < 1."""
    try:
        train, val = (float(f) for f in split)
        valid = train > 0 and val > 0 and train + val < 1
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ConfigError(
            "split",
            list(split) if isinstance(split, (list, tuple)) else split,
            "not a [train, val] pair of fractions with train > 0, val > 0 and "
            "train + val < 1 (the rest is test)",
            example=[0.6, 0.2],
        )


def _check_file(path: str | None, data_dir: Path, option: str) -> Path | None:
    """Resolve ``path`` (absolute, or relative to ``data_dir``) and check that it exists."""
    if path is None:
        return None
    resolved = data_dir / Path(path).expanduser()
    if not resolved.is_file():
        raise MissingDataError(
            f"{option}={path!r}: no such file {resolved}. Give an absolute path or one relative "
            f"to the data directory {data_dir} (set by the DATA_DIR environment variable or the "
            f"paths.data_dir config option)."
        )
    return resolved


class GraphDataModule(pl.LightningDataModule):
    """One graph, served whole as the only batch of every split (full-batch training).

    Args:
        name: ``Cora``, ``CiteSeer``, ``PubMed``, ``Reddit``, ``Flickr``, ``Yelp``,
            ``ogbn-products``, ``ogbn-proteins``, ``ogbn-arxiv`` or ``edgelist`` (case-insensitive).
        data_dir: read-only folder with prepared copies (layouts in ``graph_sources``);
            relative paths are resolved against the working directory now.
        cache_dir: writable folder for processed data and downloads.
        edge_file: ``edgelist`` only: the edge list, absolute or relative to ``data_dir``.
        self_loops: remove existing self loops, then add one per node.
        to_undirected: add the reverse of every edge.
        normalize_features: row-normalise ``x`` (PyG ``NormalizeFeatures``).
        num_features: ``edgelist`` only: width of the generated features.
        num_classes: ``edgelist`` only: number of generated classes.
        features_file: ``edgelist`` only: ``.npy`` (N, F) features instead of generated ones.
        labels_file: ``edgelist`` only: ``.npy`` (N,) integer labels instead of generated ones.
        split: ``edgelist`` only: train and val fractions of a random split; the rest is test.
        seed: ``edgelist`` only: seeds the generated labels, features and split.
        require_source: named datasets only: fail when ``data_dir`` lacks the dataset instead
            of reading a cache built from another folder (with a warning) or downloading.
    """

    def __init__(
        self,
        name: str,
        data_dir: str,
        cache_dir: str,
        edge_file: str | None = None,
        self_loops: bool = False,
        to_undirected: bool = True,
        normalize_features: bool = False,
        num_features: int = 64,
        num_classes: int = 8,
        features_file: str | None = None,
        labels_file: str | None = None,
        split: Sequence[float] = (0.6, 0.2),
        seed: int = 0,
        require_source: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.check_config(self.hparams)
        self.name = canonical_name(name)
        self.data_dir = Path(os.path.abspath(os.path.expanduser(data_dir)))
        self.cache_dir = Path(os.path.abspath(os.path.expanduser(cache_dir)))
        self.split = (float(split[0]), float(split[1]))
        self.self_loops, self.to_undirected = bool(self_loops), bool(to_undirected)
        self.normalize_features = bool(normalize_features)
        self.seed = int(seed)
        self.require_source = bool(require_source)
        self.edge_file = _check_file(edge_file, self.data_dir, "edge_file")
        self.features_file = _check_file(features_file, self.data_dir, "features_file")
        self.labels_file = _check_file(labels_file, self.data_dir, "labels_file")
        self._generated_width, self._generated_classes = int(num_features), int(num_classes)
        self._graph: LoadedGraph | None = None

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """The name, the split, the paths and the options that fit only edge lists."""
        cfg = with_defaults(cls, cfg)
        name = cfg.get("name")
        try:
            name = canonical_name(name)
        except ValueError:
            raise ConfigError(
                "name",
                name,
                f"unknown graph dataset; choose one of {', '.join(GRAPH_NAMES)} (case-insensitive)",
                example="Cora",
            ) from None
        for key in ("data_dir", "cache_dir"):
            if cfg.get(key) is None:
                raise ConfigError(
                    key,
                    None,
                    "must be a path",
                    fix="Set DATA_DIR (or paths.data_dir) and "
                    "paths.cache_dir (or EFFML_CACHE_DIR).",
                )
        _check_split(cfg["split"])
        check_int(cfg, "seed", minimum=0, example=0)
        if name == EDGE_LIST:
            if cfg.get("edge_file") is None:
                raise ConfigError(
                    "edge_file",
                    None,
                    "name=edgelist needs the edge list (*.edges.gz, SNAP .txt or .csv), "
                    "absolute or relative to data_dir",
                    example="graphs/wiki-squirrel.edges.gz",
                )
            check_int(cfg, "num_features", minimum=1, example=64)
            check_int(cfg, "num_classes", minimum=2, example=8)
            return
        for key in ("edge_file", "features_file", "labels_file"):
            if cfg.get(key):
                raise ConfigError(
                    key,
                    cfg[key],
                    f"only applies to name=edgelist, not name={name}",
                    fix=f"Remove {key} or set name=edgelist.",
                )

    def setup(self, stage: str | None = None) -> None:
        """Load the graph once and apply the structural options."""
        if self._graph is not None:
            return
        start = time.perf_counter()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        if self.name == EDGE_LIST:
            graph = load_edge_list_graph(
                self.edge_file,
                self.cache_dir,
                self._generated_width,
                self._generated_classes,
                self.split,
                self.seed,
                self.features_file,
                self.labels_file,
            )
        else:
            graph = load_named_graph(self.name, self.data_dir, self.cache_dir, self.require_source)
        data = graph.data
        n, edges_read = data.num_nodes, data.edge_index.size(1)
        edge_index = data.edge_index
        applied = []
        if self.self_loops:
            edge_index, _ = add_self_loops(remove_self_loops(edge_index)[0], num_nodes=n)
            applied.append("self loops replaced by one per node")
        if self.to_undirected:
            edge_index = to_undirected(edge_index, num_nodes=n)  # coalesces too
            applied.append("symmetrised")
        else:
            edge_index = coalesce(edge_index, num_nodes=n)
        data.edge_index = edge_index
        if self.normalize_features:
            data = NormalizeFeatures()(data)
            applied.append("features row-normalised")
        self._graph = LoadedGraph(data, graph.num_classes, graph.task_type, graph.metric)
        log.info(
            "%s: %s; N=%d, E=%d (read %d), %d features, %d classes, masks %d/%d/%d, %.2f s",
            self.name,
            ", ".join(applied) or "no options applied",
            n,
            data.edge_index.size(1),
            edges_read,
            data.num_features,
            graph.num_classes,
            int(data.train_mask.sum()),
            int(data.val_mask.sum()),
            int(data.test_mask.sum()),
            time.perf_counter() - start,
        )

    def _loaded(self) -> LoadedGraph:
        if self._graph is None:
            self.setup()
        return self._graph

    @property
    def data(self) -> Data:
        """The graph: ``x`` (N, F), ``y``, ``edge_index`` (2, E) coalesced, split masks (N,)."""
        return self._loaded().data

    @property
    def num_features(self) -> int:
        """Width of ``x``."""
        return self._loaded().data.num_features

    @property
    def num_classes(self) -> int:
        """Classes (multiclass) or labels (multilabel)."""
        return self._loaded().num_classes

    @property
    def task_type(self) -> str:
        """``"multiclass"`` or ``"multilabel"``."""
        return self._loaded().task_type

    @property
    def metric(self) -> str:
        """``"acc"``, ``"f1_micro"`` or ``"rocauc"``."""
        return self._loaded().metric

    def model_kwargs(self) -> dict:
        """What a node classifier needs to be built for this graph."""
        return {
            "in_channels": self.num_features,
            "num_classes": self.num_classes,
            "task_type": self.task_type,
            "metric": self.metric,
        }

    def _loader(self) -> DataLoader:
        return DataLoader([self.data], batch_size=None, collate_fn=_whole_graph, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        """One batch: the whole graph."""
        return self._loader()

    def val_dataloader(self) -> DataLoader:
        """One batch: the whole graph (use ``val_mask``)."""
        return self._loader()

    def test_dataloader(self) -> DataLoader:
        """One batch: the whole graph (use ``test_mask``)."""
        return self._loader()

    def predict_dataloader(self) -> DataLoader:
        """One batch: the whole graph."""
        return self._loader()
