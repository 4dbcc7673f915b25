"""Tests for GraphDataModule: shared real graphs (DATA_DIR) and tiny files written on the spot."""

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from torch_geometric.datasets import Planetoid

from datamodules.graph_sources import GRAPH_NAMES
from datamodules.graphs import GraphDataModule


def shared_data(*parts: str) -> Path:
    """Return ``$DATA_DIR/<parts>``, or skip the test saying what is missing."""
    root = os.environ.get("DATA_DIR")
    if not root:
        pytest.skip("DATA_DIR is unset; point it at the shared data folder (e.g. ../shared/data)")
    path = Path(root, *parts)
    if not path.exists():
        pytest.skip(f"{path} is absent under DATA_DIR={root}")
    return path


def smallest_edge_file() -> Path:
    """The smallest ``graphs/*.edges.gz`` of the shared data (by size on disk)."""
    files = sorted(shared_data("graphs").glob("*.edges.gz"), key=lambda p: p.stat().st_size)
    if not files:
        pytest.skip("no graphs/*.edges.gz under DATA_DIR")
    return files[0]


def edge_set(data) -> set[tuple[int, int]]:
    return set(map(tuple, data.edge_index.t().tolist()))


def listing(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*"))


def assert_canonical(data) -> None:
    """x float32, masks bool (N,), edge_index long, sorted by (row, col) with no duplicates."""
    n = data.num_nodes
    assert data.x.dtype == torch.float32 and data.x.size(0) == n
    assert data.edge_index.dtype == torch.long
    key = data.edge_index[0] * n + data.edge_index[1]
    assert bool((key[1:] > key[:-1]).all())
    for mask in (data.train_mask, data.val_mask, data.test_mask):
        assert mask.dtype == torch.bool and mask.shape == (n,)


@pytest.fixture
def tiny_txt(tmp_path: Path) -> Path:
    """SNAP-style file: comments, non-contiguous ids 10, 20, 35, one self loop, a weight column."""
    path = tmp_path / "tiny.txt"
    path.write_text(
        "# Directed graph: tiny.txt\n# Nodes: 3 Edges: 3\n"
        "# FromNodeId\tToNodeId\n10\t20\t0.5\n20\t35\t1.0\n35\t35\t2.0\n"
    )
    return path


# ---- shared data -------------------------------------------------------------------------


@pytest.mark.requires_data
def test_cora_public_split(tmp_path: Path) -> None:
    shared_data("Planetoid", "Cora", "raw")
    dm = GraphDataModule("cora", os.environ["DATA_DIR"], str(tmp_path))
    dm.setup()
    data = dm.data
    assert dm.name == "Cora"
    assert (data.num_nodes, dm.num_features, dm.num_classes) == (2708, 1433, 7)
    assert [int(m.sum()) for m in (data.train_mask, data.val_mask, data.test_mask)] == [
        140,
        500,
        1000,
    ]
    assert data.edge_index.size(1) == 10556
    assert_canonical(data)
    assert dm.model_kwargs() == {
        "in_channels": 1433,
        "num_classes": 7,
        "task_type": "multiclass",
        "metric": "acc",
    }
    assert (tmp_path / "Planetoid" / "Cora" / "processed").is_dir()


@pytest.mark.requires_data
def test_citeseer_loads(tmp_path: Path) -> None:
    shared_data("Planetoid", "CiteSeer", "raw")
    dm = GraphDataModule("CiteSeer", os.environ["DATA_DIR"], str(tmp_path), normalize_features=True)
    assert (dm.data.num_nodes, dm.num_features, dm.num_classes) == (3327, 3703, 6)
    assert int(dm.data.train_mask.sum()) == 120
    assert_canonical(dm.data)


@pytest.mark.requires_data
def test_pubmed_without_allx_names_the_missing_file(tmp_path: Path, monkeypatch) -> None:
    raw = shared_data("Planetoid", "PubMed", "raw")
    if (raw / "ind.pubmed.allx").exists():
        pytest.skip("the shared PubMed copy is complete here")

    def offline(self) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(Planetoid, "download", offline)
    with pytest.raises(FileNotFoundError, match="ind.pubmed.allx") as info:
        GraphDataModule("PubMed", os.environ["DATA_DIR"], str(tmp_path)).setup()
    assert str(raw.parent) in str(info.value)


@pytest.mark.requires_data
def test_smallest_edge_list_header_count_and_seeds(tmp_path: Path) -> None:
    path = smallest_edge_file()
    with gzip.open(path, "rt") as lines:
        header = dict(line[1:].strip().split(": ", 1) for line in lines if line.startswith("# "))
    make = lambda seed: GraphDataModule(
        "edgelist", os.environ["DATA_DIR"], str(tmp_path), edge_file=str(path), seed=seed
    )
    first, again, other = make(0), make(0), make(1)
    assert first.data.num_nodes == int(header["nodes"])
    assert_canonical(first.data)
    assert list((tmp_path / "edge_lists").glob("*.pt"))
    for key in ("x", "y", "edge_index", "train_mask", "val_mask", "test_mask"):
        assert torch.equal(first.data[key], again.data[key])
    assert not torch.equal(first.data.x, other.data.x)
    assert not torch.equal(first.data.train_mask, other.data.train_mask)
    assert (first.num_features, first.num_classes) == (64, 8)


@pytest.mark.requires_data
def test_smallest_edge_list_option_edge_counts(tmp_path: Path) -> None:
    path = smallest_edge_file()
    pairs = pd.read_csv(path, sep=r"\s+", comment="#", header=None).to_numpy()
    listed = set(map(tuple, pairs.tolist()))
    symmetric = listed | {(v, u) for u, v in listed}
    n = GraphDataModule(
        "edgelist", os.environ["DATA_DIR"], str(tmp_path), edge_file=str(path)
    ).data.num_nodes
    loops = {(v, v) for v in range(n)}

    def edges(**options) -> set[tuple[int, int]]:
        dm = GraphDataModule(
            "edgelist", os.environ["DATA_DIR"], str(tmp_path), edge_file=str(path), **options
        )
        assert dm.data.edge_index.size(1) == len(edge_set(dm.data))
        return edge_set(dm.data)

    assert edges(to_undirected=False) == listed
    assert edges() == symmetric
    assert edges(self_loops=True) == {e for e in symmetric if e[0] != e[1]} | loops
    assert (
        edges(self_loops=True, to_undirected=False) == {e for e in listed if e[0] != e[1]} | loops
    )


# ---- edge-list files written here ----------------------------------------------------------


def test_snap_txt_relabels_non_contiguous_ids(tiny_txt: Path, tmp_path: Path) -> None:
    dm = GraphDataModule(
        "edgelist",
        str(tmp_path),
        str(tmp_path / "cache"),
        edge_file=tiny_txt.name,
        to_undirected=False,
    )
    assert dm.data.num_nodes == 3
    assert edge_set(dm.data) == {(0, 1), (1, 2), (2, 2)}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, {(0, 1), (1, 0), (1, 2), (2, 1), (2, 2)}),
        ({"to_undirected": False}, {(0, 1), (1, 2), (2, 2)}),
        ({"self_loops": True}, {(0, 1), (1, 0), (1, 2), (2, 1), (0, 0), (1, 1), (2, 2)}),
        ({"self_loops": True, "to_undirected": False}, {(0, 1), (1, 2), (0, 0), (1, 1), (2, 2)}),
    ],
)
def test_structural_options(tiny_txt: Path, tmp_path: Path, options: dict, expected: set) -> None:
    dm = GraphDataModule(
        "edgelist", str(tmp_path), str(tmp_path / "cache"), edge_file=str(tiny_txt), **options
    )
    assert edge_set(dm.data) == expected
    assert dm.data.edge_index.size(1) == len(expected)
    assert_canonical(dm.data)


@pytest.mark.parametrize("header", ["id_1,id_2\n", ""])
def test_csv_with_and_without_column_names(tmp_path: Path, header: str) -> None:
    path = tmp_path / "edges.csv"
    path.write_text(header + "0,1\n1,2\n2,3\n3,0\n4,5\n")
    dm = GraphDataModule(
        "edgelist", str(tmp_path), str(tmp_path / "cache"), edge_file="edges.csv", split=[0.5, 0.25]
    )
    assert dm.data.num_nodes == 6
    assert dm.data.edge_index.size(1) == 10
    assert [int(m.sum()) for m in (dm.data.train_mask, dm.data.val_mask, dm.data.test_mask)] == [
        3,
        2,
        1,
    ]


def test_edge_cache_follows_file_changes(tiny_txt: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    make = lambda: GraphDataModule(
        "edgelist", str(tmp_path), str(cache), edge_file=str(tiny_txt), to_undirected=False
    )
    assert make().data.num_nodes == 3
    tiny_txt.write_text("1 2\n2 3\n3 4\n4 5\n")
    stat = tiny_txt.stat()
    os.utime(tiny_txt, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert make().data.num_nodes == 5
    assert len(list((cache / "edge_lists").glob("*.pt"))) == 1  # rebuilt in place


def test_features_and_labels_files(tiny_txt: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(6, dtype=np.float64).reshape(3, 2))
    np.save(tmp_path / "y.npy", np.array([0, 4, 1]))
    dm = GraphDataModule(
        "edgelist",
        str(tmp_path),
        str(tmp_path / "cache"),
        edge_file=str(tiny_txt),
        features_file="x.npy",
        labels_file="y.npy",
    )
    assert dm.data.x.dtype == torch.float32 and dm.num_features == 2
    assert dm.data.y.tolist() == [0, 4, 1] and dm.num_classes == 5
    np.save(tmp_path / "bad.npy", np.zeros((4, 2)))
    bad = GraphDataModule(
        "edgelist",
        str(tmp_path),
        str(tmp_path / "cache"),
        edge_file=str(tiny_txt),
        features_file="bad.npy",
    )
    with pytest.raises(ValueError, match=r"shape \(4, 2\).*N=3"):
        bad.setup()


def test_generated_features_are_learnable_and_float32(tiny_txt: Path, tmp_path: Path) -> None:
    dm = GraphDataModule(
        "edgelist",
        str(tmp_path),
        str(tmp_path / "cache"),
        edge_file=str(tiny_txt),
        num_features=5,
        num_classes=3,
        normalize_features=True,
    )
    assert dm.data.x.shape == (3, 5) and dm.data.x.dtype == torch.float32
    assert torch.allclose(dm.data.x.sum(1), torch.ones(3))
    assert dm.model_kwargs()["num_classes"] == 3


# ---- named datasets from prepared copies written here ---------------------------------------


def write_yelp_like(folder: Path) -> None:
    """A 6-node GraphSAINT-format graph with 3 labels per node."""
    raw = folder / "Yelp" / "raw"
    raw.mkdir(parents=True)
    adj = sp.csr_matrix((np.ones(4), ([0, 1, 2, 4], [1, 2, 3, 5])), shape=(6, 6))
    np.savez(
        raw / "adj_full.npz", data=adj.data, indices=adj.indices, indptr=adj.indptr, shape=adj.shape
    )
    np.save(raw / "feats.npy", np.random.default_rng(0).standard_normal((6, 4)))
    (raw / "class_map.json").write_text(json.dumps({str(i): [i % 2, 1, 0] for i in range(6)}))
    (raw / "role.json").write_text(json.dumps({"tr": [0, 1, 2], "va": [3], "te": [4, 5]}))


def test_prepared_yelp_is_multilabel_and_data_dir_untouched(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    write_yelp_like(data_dir)
    before = listing(data_dir)
    dm = GraphDataModule("yelp", str(data_dir), str(tmp_path / "cache"))
    assert (dm.task_type, dm.metric, dm.num_classes) == ("multilabel", "f1_micro", 3)
    assert dm.data.y.dtype == torch.float32 and dm.data.y.shape == (6, 3)
    assert dm.data.edge_index.size(1) == 8
    assert dm.data.test_mask.tolist() == [False] * 4 + [True] * 2
    assert_canonical(dm.data)
    assert listing(data_dir) == before


def write_proteins_like(folder: Path) -> np.ndarray:
    """A 4-node ogbn-proteins layout; returns the expected mean incoming edge features."""
    root = folder / "ogbn_proteins"
    edges = np.array([[0, 1], [1, 2], [0, 2]])
    feats = np.arange(24, dtype=np.float64).reshape(3, 8) / 24
    tables = {
        "raw/edge": edges,
        "raw/edge-feat": feats,
        "raw/node-label": np.eye(4, 112, dtype=np.int64),
        "raw/node_species": np.array([[3702]] * 4),
        "raw/num-node-list": np.array([[4]]),
        "raw/num-edge-list": np.array([[3]]),
        "split/species/train": np.array([[0], [1]]),
        "split/species/valid": np.array([[2]]),
        "split/species/test": np.array([[3]]),
    }
    for name, table in tables.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(table).to_csv(root / f"{name}.csv.gz", header=False, index=False)
    (root / "RELEASE_v1.txt").write_text("ogbn-proteins v1\n")
    incoming = np.zeros((4, 8))
    counts = np.zeros(4)
    for (u, v), f in zip(edges, feats, strict=True):  # ogb adds the reverse of every edge
        incoming[[v, u]] += f
        counts[[v, u]] += 1
    return incoming / np.maximum(counts, 1)[:, None]


def test_prepared_ogbn_proteins_features_and_split(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    expected_x = write_proteins_like(data_dir)
    before = listing(data_dir)
    dm = GraphDataModule("OGBN-Proteins", str(data_dir), str(tmp_path / "cache"))
    assert dm.name == "ogbn-proteins"
    assert dm.model_kwargs() == {
        "in_channels": 8,
        "num_classes": 112,
        "task_type": "multilabel",
        "metric": "rocauc",
    }
    assert torch.allclose(dm.data.x, torch.from_numpy(expected_x).float())
    assert dm.data.y.dtype == torch.float32 and dm.data.y.shape == (4, 112)
    assert dm.data.train_mask.tolist() == [True, True, False, False]
    assert dm.data.val_mask.tolist() == [False, False, True, False]
    assert_canonical(dm.data)
    assert listing(data_dir) == before


# ---- errors ---------------------------------------------------------------------------------


def test_missing_planetoid_error_explains_the_fix(tmp_path: Path, monkeypatch) -> None:
    def offline(self) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(Planetoid, "download", offline)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        GraphDataModule("Cora", str(empty), str(tmp_path / "cache")).setup()
    message = str(info.value)
    for needle in (
        str(empty / "Planetoid" / "Cora"),
        "DATA_DIR",
        "paths.data_dir",
        "ind.cora.allx",
        "ind.cora.graph",
        "github.com/kimiyoung/planetoid",
        "network unreachable",
        "network access",
    ):
        assert needle in message


def test_missing_ogbn_error_when_download_fails(tmp_path: Path, monkeypatch) -> None:
    def offline(url: str, folder: str, log: bool = True) -> str:
        raise OSError(f"cannot reach {url}")

    monkeypatch.setattr("ogb.utils.url.download_url", offline)
    with pytest.raises(FileNotFoundError) as info:
        GraphDataModule("ogbn-products", str(tmp_path), str(tmp_path / "cache")).setup()
    message = str(info.value)
    for needle in (
        str(tmp_path / "ogbn_products"),
        "raw/node-feat.csv.gz",
        "DATA_DIR",
        "products.zip",
        "renamed to ogbn_products",
    ):
        assert needle in message


@pytest.mark.parametrize("split", [(0.9, 0.2), (0.0, 0.2), (0.6, -0.1), (0.6,), (0.5, 0.5)])
def test_bad_split_is_rejected(tiny_txt: Path, tmp_path: Path, split: tuple) -> None:
    with pytest.raises(ValueError, match=r"split=.*train \+ val < 1.*split=\[0.6, 0.2\]"):
        GraphDataModule(
            "edgelist", str(tmp_path), str(tmp_path), edge_file=str(tiny_txt), split=split
        )


def test_unknown_name_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="name=Corra: unknown graph dataset") as info:
        GraphDataModule("Corra", str(tmp_path), str(tmp_path))
    assert all(name in str(info.value) for name in GRAPH_NAMES)


def test_edge_file_errors(tiny_txt: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="edge_file=null: name=edgelist needs"):
        GraphDataModule("edgelist", str(tmp_path), str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"nope\.edges\.gz.*DATA_DIR"):
        GraphDataModule("edgelist", str(tmp_path), str(tmp_path), edge_file="nope.edges.gz")
    with pytest.raises(ValueError, match="edge_file=.*only applies to name=edgelist"):
        GraphDataModule("Cora", str(tmp_path), str(tmp_path), edge_file=str(tiny_txt))
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("a b\nc d\n")
    with pytest.raises(ValueError, match="Cannot parse"):
        GraphDataModule("edgelist", str(tmp_path), str(tmp_path), edge_file=str(garbage)).setup()


def test_relative_data_dir_resolved_at_construction(
    tiny_txt: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    dm = GraphDataModule("edgelist", ".", "cache", edge_file=tiny_txt.name)
    monkeypatch.chdir("/")
    assert dm.data.num_nodes == 3
    assert (tmp_path / "cache" / "edge_lists").is_dir()


def test_dataloaders_yield_the_graph(tiny_txt: Path, tmp_path: Path) -> None:
    dm = GraphDataModule(
        "edgelist", str(tmp_path), str(tmp_path / "cache"), edge_file=str(tiny_txt)
    )
    for loader in (
        dm.train_dataloader(),
        dm.val_dataloader(),
        dm.test_dataloader(),
        dm.predict_dataloader(),
    ):
        batches = list(loader)
        assert len(batches) == 1 and batches[0] is dm.data
