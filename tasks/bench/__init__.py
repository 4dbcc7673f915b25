"""The one benchmark library: timer, device manifest, result files, benchmark graphs.

``scripts/bench_*.py`` and the benchmark tasks (``tasks.spmm_bench``) import it; it imports
nothing from ``scripts/``.
"""

from tasks.bench.graphs import BenchGraph, available_graphs, graph_file, load_graph
from tasks.bench.manifest import device_manifest
from tasks.bench.results import MANIFEST_KEY, log, max_errors, non_finite, save_result
from tasks.bench.timing import CLOCKS, Timer, cuda_sync

__all__ = [
    "CLOCKS",
    "MANIFEST_KEY",
    "BenchGraph",
    "Timer",
    "available_graphs",
    "cuda_sync",
    "device_manifest",
    "graph_file",
    "load_graph",
    "log",
    "max_errors",
    "non_finite",
    "save_result",
]
