"""SpMM benchmark task: the torch.sparse SpMM baseline against other products Y = A · X.

    python run.py experiment=spmm_bench_cora
    python run.py experiment=spmm_bench_cora bench.graph=twitch-de bench.widths=[16,64,256]

No datamodule, model or trainer: on one graph (``tasks.bench.load_graph``: a Planetoid name,
a name under ``<data_dir>/graphs`` or an edge file) with A the normalised adjacency, for each
feature width C it times every op of ``bench.ops`` on the same random X (N, C) with
``tasks.bench.Timer``, checks each output against the float64 reference
(``ops.sparse.spmm_reference``), and writes ``metrics.json`` (``bench/<op>_ms_d<C>``,
``bench/<op>_max_rel_err_d<C>``, ``bench/<op>_speedup_d<C>`` = baseline time / op time),
``spmm_bench.json`` (the rows and the device manifest) and ``spmm_bench.png`` (time against
width) in the run folder. New ops join ``OPS``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from effml.checks import check_choice, check_int, check_range
from effml.errors import ConfigError
from ops.sparse import NORMS, CsrAdjacency, spmm, spmm_reference
from tasks.bench import (
    CLOCKS,
    Timer,
    device_manifest,
    load_graph,
    max_errors,
    non_finite,
    save_result,
)
from tasks.bench.timing import DEVICES
from tasks.core import optimized_value, update_metrics_json

log = logging.getLogger(__name__)

RESULT_NAME = "spmm_bench"


@dataclass(frozen=True)
class Operands:
    """A in every form the ops read, built once per graph.

    Args:
        adj: the CSR adjacency (``ops.sparse.CsrAdjacency``).
        a, a_t: A and A^T as torch.sparse CSR (the ``spmm`` baseline's operands).
        dense: (N, N) dense A, or None where it exceeds ``bench.dense_max_bytes``.
    """

    adj: CsrAdjacency
    a: torch.Tensor
    a_t: torch.Tensor
    dense: torch.Tensor | None


# name → (operands, x) → a call computing A · x
OPS: dict[str, Callable[[Operands, torch.Tensor], Callable[[], torch.Tensor]]] = {
    "spmm": lambda o, x: lambda: spmm(o.a, o.a_t, x),
    "dense": lambda o, x: lambda: o.dense @ x,
    "reference": lambda o, x: lambda: spmm_reference(o.adj, x),
}


def check_spmm_bench(cfg: DictConfig, spec: DictConfig | None = None) -> None:
    """The ``bench`` block, before any data is read: known ops with the baseline among them,
    positive widths, norm, device and clock choices, positive rounds, round time and
    tolerance, a thread count >= 1 or null, a dense size limit >= 0."""
    bench = cfg.get("bench")
    if bench is None:
        raise ConfigError("bench", None, "is missing", fix="Use experiment=spmm_bench_cora")
    try:
        check_bench_settings(bench)
    except ConfigError as err:
        raise err.with_prefix("bench.") from None


def check_bench_settings(bench: Mapping[str, Any]) -> None:
    """The ``bench`` block's rules with bare keys (see :func:`check_spmm_bench`)."""
    ops = list(bench.get("ops") or [])
    unknown = [op for op in ops if op not in OPS]
    if unknown or not ops:
        raise ConfigError("ops", ops, f"choose from {sorted(OPS)}", example=["spmm", "dense"])
    if bench.get("baseline") not in ops:
        raise ConfigError("baseline", bench.get("baseline"), f"must be one of ops={ops}", ops[0])
    widths = list(bench.get("widths") or [])
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ConfigError("widths", widths, "must be a list of positive integers", [64, 256])
    check_choice(bench, "norm", NORMS)
    check_choice(bench, "device", ("auto", *DEVICES))
    check_choice(bench, "clock", CLOCKS)
    check_int(bench, "threads", minimum=1, example=1)
    check_int(bench, "rounds", minimum=1, example=5)
    check_range(bench, "round_time", 0.0, None, low_open=True, example=0.2)
    check_range(bench, "tolerance", 0.0, None, low_open=True, example=1e-5)
    check_int(bench, "dense_max_bytes", minimum=0, example=2**30)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("bench.device", name, "no CUDA GPU is visible", example="auto")
    return torch.device(name)


def _operands(adj: CsrAdjacency, ops: list[str], dense_max_bytes: int) -> tuple[Operands, dict]:
    """The operands, and {op: why it is skipped} for ops whose operand does not fit."""
    dense_bytes = adj.num_rows * adj.num_cols * adj.weight.element_size()
    skipped = {}
    dense = None
    if "dense" in ops:
        if dense_bytes <= dense_max_bytes:
            dense = adj.to_dense()
        else:
            skipped["dense"] = f"dense A needs {dense_bytes} bytes > {dense_max_bytes}"
    a, a_t = adj.to_torch_sparse(), adj.transpose().to_torch_sparse()
    return Operands(adj, a, a_t, dense), skipped


def _bench_width(
    width: int, ops: list[str], operands: Operands, bench: DictConfig, timer: Timer, seed: int
) -> dict:
    """One row: each op's median ms, its errors against float64 and the speedup."""
    gen = torch.Generator().manual_seed(seed + width)
    x = torch.randn(operands.adj.num_cols, width, generator=gen).to(operands.a.device)
    calls = {op: OPS[op](operands, x) for op in ops}
    times = timer(calls)
    ref = spmm_reference(operands.adj, x.double())  # (N, C) float64
    row: dict = {"width": width}
    for op, call in calls.items():
        row[f"{op}_ms"] = times[op]
        row[f"{op}_max_abs_err"], row[f"{op}_max_rel_err"] = max_errors(call(), ref)
        if row[f"{op}_max_rel_err"] > bench.tolerance:
            raise ValueError(
                f"{op} at width {width}: max relative error {row[f'{op}_max_rel_err']:.3g} "
                f"against float64 exceeds bench.tolerance={bench.tolerance}"
            )
        if op != bench.baseline:
            row[f"{op}_speedup"] = times[bench.baseline] / times[op]
    return row


def plot(result: dict, path: Path) -> None:
    """Median time against feature width, one line per op (log-log)."""
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    widths = [row["width"] for row in result["results"]]
    for op in result["ops"]:
        ax.plot(widths, [row[f"{op}_ms"] for row in result["results"]], "o-", label=op)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("feature width C")
    ax.set_ylabel("median time (ms)")
    ax.set_title(
        f"Y = A · X on {result['graph']} ({result['nodes']} nodes, {result['edges']} edges, "
        f"{result['device']})",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def spmm_bench(cfg: DictConfig) -> float | None:
    """Benchmark the ops of ``cfg.bench`` on its graph; metrics.json, JSON and plot in the run."""
    bench = cfg.bench
    device = _device(bench.device)
    if bench.threads:
        torch.set_num_threads(bench.threads)
    rounds = bench.rounds if device.type == "cpu" else 1  # do_bench does its own repeats
    timer = Timer(
        device.type, rounds, bench.round_time, bench.clock, torch.get_num_threads(), log.info
    )
    graph = load_graph(bench.graph, cfg.paths.data_dir, cfg.paths.cache_dir)
    adj = CsrAdjacency.from_edge_index(graph.edge_index, graph.num_nodes, norm=bench.norm)
    operands, skipped = _operands(adj.to(device), list(bench.ops), bench.dense_max_bytes)
    if bench.baseline in skipped:
        raise ConfigError(
            "bench.baseline",
            bench.baseline,
            f"is skipped ({skipped[bench.baseline]})",
            fix="Raise bench.dense_max_bytes or choose another baseline",
        )
    for op, why in skipped.items():
        log.warning("skipping %s: %s", op, why)
    ops = [op for op in bench.ops if op not in skipped]
    log.info("%s: %d nodes, %d edges; ops %s", graph.name, graph.num_nodes, adj.nnz, ops)
    seed = cfg.get("seed") or 0
    rows = [_bench_width(w, ops, operands, bench, timer, seed) for w in bench.widths]
    bad = non_finite(rows, lambda row, k: (row["width"], k))
    if bad:
        raise ValueError(f"non-finite results (width, key): {bad}")
    result = {
        "graph": graph.name,
        "nodes": graph.num_nodes,
        "edges": adj.nnz,
        "norm": bench.norm,
        "device": device.type,
        "clock": bench.clock if device.type == "cpu" else "cuda",
        "ops": ops,
        "baseline": bench.baseline,
        "skipped": skipped,
        "settings": OmegaConf.to_container(bench, resolve=True),
        "results": rows,
        "manifest": device_manifest(),
    }
    out = Path(cfg.paths.output_dir)
    save_result(
        result, out / f"{RESULT_NAME}.json", out / f"{RESULT_NAME}.png", plot, progress=log.info
    )
    metrics = {
        f"bench/{key}_d{row['width']}": value
        for row in rows
        for key, value in row.items()
        if key != "width" and not key.endswith("_max_abs_err")
    }
    update_metrics_json(out, metrics)
    for name, value in sorted(metrics.items()):
        log.info("%s = %.4g", name, value)
    return optimized_value(metrics, cfg.get("optimized_metric"))


spmm_bench.check_config = check_spmm_bench
