"""Benchmark graphs: a name or a file resolved to an ``edge_index`` through the graph loaders.

Resolution, first match wins:

1. a path to an edge file (any format ``datamodules.edge_lists.parse_edge_list`` reads);
2. NAME → ``<data_dir>/graphs/NAME.edges.gz`` (``# nodes: N`` / ``# directed:`` header, then
   ``src dst`` per line, 0-based);
3. a Planetoid name (cora, citeseer, pubmed, any case) through ``load_named_graph``.

Edge files get both edge directions unless their header says ``# directed: true``;
Planetoid graphs come undirected already (PyG stores both directions).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from datamodules.edge_lists import parse_edge_list, read_edge_list_header
from datamodules.graph_sources import load_named_graph
from effml.errors import MissingDataError

PLANETOID_NAMES = ("cora", "citeseer", "pubmed")
EDGE_FILE_SUFFIX = ".edges.gz"


@dataclass(frozen=True)
class BenchGraph:
    """A graph to benchmark on.

    Args:
        name: the file name without its suffixes, or the Planetoid name in lower case.
        edge_index: (2, E) int64, row 0 sources, row 1 targets, as listed (duplicates kept).
        num_nodes: N; ids lie in [0, N).
    """

    name: str
    edge_index: torch.Tensor
    num_nodes: int


def graph_file(graph: str, data_dir: str | os.PathLike) -> Path | None:
    """The edge file ``graph`` names (an existing path or a file under ``data_dir/graphs``)."""
    path = Path(graph)
    if path.is_file():
        return path
    named = Path(data_dir) / "graphs" / f"{graph}{EDGE_FILE_SUFFIX}"
    return named if named.is_file() else None


def available_graphs(data_dir: str | os.PathLike) -> list[str]:
    """Names under ``data_dir/graphs`` and the Planetoid names, sorted."""
    folder = Path(data_dir) / "graphs"
    files = [p.name.removesuffix(EDGE_FILE_SUFFIX) for p in folder.glob(f"*{EDGE_FILE_SUFFIX}")]
    return sorted({*files, *PLANETOID_NAMES})


def load_graph(graph: str, data_dir: str | os.PathLike, cache_dir: str | os.PathLike) -> BenchGraph:
    """Resolve ``graph`` (see the module docstring) and read its edges.

    Args:
        graph: a path to an edge file, a name under ``data_dir/graphs``, or a Planetoid name.
        data_dir: the raw-data root (read only).
        cache_dir: where PyG processes Planetoid graphs (written).

    Raises:
        MissingDataError: ``graph`` resolves to nothing (the message lists what there is), or
            the Planetoid files are absent and could not be downloaded.
    """
    path = graph_file(graph, data_dir)
    if path is not None:
        return _read_edge_file(path)
    if graph.lower() in PLANETOID_NAMES:
        data = load_named_graph(graph, Path(data_dir), Path(cache_dir)).data
        return BenchGraph(graph.lower(), data.edge_index, int(data.num_nodes))
    named = Path(data_dir) / "graphs" / f"{graph}{EDGE_FILE_SUFFIX}"
    raise MissingDataError(
        f"no graph {graph!r}: not a file, not {named}, not a Planetoid name "
        f"(have: {available_graphs(data_dir)}). Fix: pass one of those names or a path to an "
        f"edge file, or point the data directory (DATA_DIR) at a folder with graphs/{graph}"
        f"{EDGE_FILE_SUFFIX}."
    )


def _read_edge_file(path: Path) -> BenchGraph:
    """Edges of ``path``, both directions unless the header says ``# directed: true``."""
    edges = parse_edge_list(path)
    edge_index = edges.edge_index
    if read_edge_list_header(path).get("directed", "false").lower() != "true":
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    name = path.name.removesuffix(".gz").removesuffix(".edges").removesuffix(".txt")
    return BenchGraph(name, edge_index, edges.num_nodes)
