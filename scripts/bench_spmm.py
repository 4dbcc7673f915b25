"""Benchmark Accel-GCN's SpMM (ops/spmm) against torch.sparse (MKL/cuSPARSE) and PyG's scatter.

Usage:
    python scripts/bench_spmm.py [--graph NAME_OR_EDGE_FILE[,...]] [--dims 16,32,64,128,256]
        [--backends accel,torch_sparse,pyg] [--threads N] [--clock wall|cpu]
        [--device cpu|cuda] [--json OUT] [--plot OUT.png] [--dump-meta FILE]

Accel-GCN (Xie et al., ICCAD 2023, arXiv:2308.11825). Without ``--graph`` the suite is every
graph in $DATA_DIR/graphs plus Planetoid cora, citeseer and pubmed (DATA_DIR defaults to
../shared/data next to the repository); absent ones are skipped and listed. A NAME or edge
file resolves through ``tasks.bench.load_graph``. The adjacency is GCN's
D^-1/2 (A + I) D^-1/2 (``--norm``, ``--no-self-loops`` change it).

Per graph and width F, in one run on the same float32 features X (N, F) and upstream
gradient dY: the median time of the forward Y = A · X and of forward + backward
(dX = A^T · dY, through autograd) for every backend, measured in interleaved rounds by
``tasks.bench.Timer`` (``torch.utils.benchmark`` on the CPU with ``--clock`` wall or process
CPU time, ``triton.testing.do_bench`` on CUDA); the max relative error (max |err| / max |ref|)
of Y and of dX against float64 (``ops.sparse`` references), the larger of the two in
``max_rel_err``; and for ``accel`` the speedups over ``torch_sparse`` and ``pyg`` (time of the
baseline / time of accel). "accel" is the Triton kernel on CUDA and the C++ kernel on the CPU.
The summary holds their geometric means over the run. The partition's one-off cost is
reported per graph, apart from the kernel times: ``sort_ms`` (stable degree sort) and
``partition_ms`` (block metadata), medians of the same timer, and ``prepare_ms`` /
``prepare_t_ms``, the one timed build of A's and A^T's ``AccelGraph`` (sort, CSR permutation,
partition).

``--dump-meta FILE`` writes each graph's block metadata (A's, forward) as raw little-endian
int32, blocks × 4, the layout of the authors' ``.block4`` files; with several graphs FILE
must hold ``{graph}`` (e.g. ``meta/{graph}.block4``). The JSON is ``{"device": {...},
"manifest": {...}, "graphs": [...], "results": [{"graph", "dim", "backend", "fwd_ms",
"fwdbwd_ms", "max_rel_err", ...}, ...], "summary": {...}}``: "device" is what this run
measured on (type, name, threads, clock), "manifest" the machine (``tasks.bench``).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from effml.errors import MissingDataError
from ops.sparse import NORMS, spmm_reference, spmm_transposed_reference
from ops.spmm import (
    BACKENDS,
    accel_graph,
    accel_graph_t,
    block_partition,
    csr_from_edge_index,
    degree_sort,
    spmm,
    write_block4,
)
from tasks.bench import (
    Timer,
    available_graphs,
    cuda_sync,
    device_manifest,
    load_graph,
    log,
    max_errors,
    non_finite,
    save_result,
)

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ("torch_sparse", "pyg")
PHASES = ("fwd", "fwdbwd")
COLUMNS = ("dim", "backend", "fwd_ms", "fwdbwd_ms", "max_rel_err")


def speedup_key(phase: str, baseline: str) -> str:
    """The row/summary key of accel's speedup over ``baseline`` in ``phase``."""
    return f"speedup_{phase}_vs_{baseline}"


def timed_once(fn, sync) -> float:
    """Milliseconds of one call of ``fn`` (the device idle before and after)."""
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return (time.perf_counter() - start) * 1e3


def timed_calls(adj, x, x_grad, dy, backends: list[str]) -> dict:
    """``{"<backend>/fwd": Y = A · x, "<backend>/fwdbwd": Y, then dX by autograd}``."""
    calls = {}
    for backend in backends:
        calls[f"{backend}/fwd"] = lambda b=backend: spmm(adj, x, backend=b)
        calls[f"{backend}/fwdbwd"] = lambda b=backend: torch.autograd.grad(
            spmm(adj, x_grad, backend=b), x_grad, dy
        )
    return calls


def bench_graph(name: str, edge_index, num_nodes: int, args, timer: Timer) -> tuple[dict, list]:
    """The graph's partition costs and one result row per (width, backend)."""
    device, sync = torch.device(args.device), cuda_sync(args.device)
    adj = csr_from_edge_index(
        edge_index.to(device), num_nodes, norm=args.norm, add_self_loops=args.self_loops
    )
    degrees = adj.rowptr.diff()
    sorted_degrees = degrees[degree_sort(adj.rowptr)]
    graph = accel_graph(adj)  # built and timed once, cached for the kernels
    info = {
        "graph": name,
        "nodes": num_nodes,
        "edges": adj.nnz,
        "max_degree": int(degrees.max()) if num_nodes else 0,
        "blocks": graph.meta.shape[0],
        "blocks_t": accel_graph_t(adj).meta.shape[0],
        "prepare_ms": graph.partition_seconds * 1e3,
        "prepare_t_ms": accel_graph_t(adj).partition_seconds * 1e3,
    }
    info.update(
        timer(
            {
                "sort_ms": lambda: degree_sort(adj.rowptr),
                "partition_ms": lambda: block_partition(sorted_degrees),
            }
        )
    )
    if args.dump_meta:
        path = Path(str(args.dump_meta).format(graph=name))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_block4(graph.meta, path)
        log(f"  wrote {path} ({graph.meta.shape[0]} blocks)")
    gen = torch.Generator().manual_seed(0)
    rows = []
    for dim in args.dim_list:
        x = torch.randn(num_nodes, dim, generator=gen).to(device)
        dy = torch.randn(num_nodes, dim, generator=gen).to(device)
        x_grad = x.clone().requires_grad_()
        log(f"  {name}, F={dim}: {', '.join(args.backend_list)}")
        times = timer(timed_calls(adj, x, x_grad, dy, args.backend_list))
        ref_y = spmm_reference(adj, x.double())
        ref_grad = spmm_transposed_reference(adj, dy.double())
        for backend in args.backend_list:
            y = spmm(adj, x, backend=backend)
            (grad,) = torch.autograd.grad(spmm(adj, x_grad, backend=backend), x_grad, dy)
            fwd_err, bwd_err = max_errors(y, ref_y)[1], max_errors(grad, ref_grad)[1]
            rows.append(
                {
                    "graph": name,
                    "dim": dim,
                    "backend": backend,
                    "fwd_ms": times[f"{backend}/fwd"],
                    "fwdbwd_ms": times[f"{backend}/fwdbwd"],
                    "max_rel_err": max(fwd_err, bwd_err),
                    "fwd_max_rel_err": fwd_err,
                    "bwd_max_rel_err": bwd_err,
                }
            )
        by_backend = {row["backend"]: row for row in rows if row["dim"] == dim}
        if "accel" in by_backend:
            accel = by_backend["accel"]
            for baseline in BASELINES:
                for phase in PHASES if baseline in by_backend else ():
                    ms = f"{phase}_ms"
                    accel[speedup_key(phase, baseline)] = by_backend[baseline][ms] / accel[ms]
    sync()
    return info, rows


def summarise(rows: list[dict]) -> dict:
    """Geometric means of accel's speedups over all rows that have them."""
    summary = {}
    for baseline in BASELINES:
        for phase in PHASES:
            key = speedup_key(phase, baseline)
            values = [row[key] for row in rows if key in row]
            if values:
                summary[f"geomean_{key}"] = math.exp(sum(map(math.log, values)) / len(values))
                summary[f"count_{key}"] = len(values)
    return summary


def print_table(result: dict) -> None:
    """The result rows, the partition costs and the summary, as text tables on stdout."""
    speedups = [speedup_key(p, b) for b in BASELINES for p in PHASES]
    names = [k.removeprefix("speedup_") for k in speedups]
    for info in result["graphs"]:
        print(
            f"\n{info['graph']}: {info['nodes']} nodes, {info['edges']} edges, max degree "
            f"{info['max_degree']}, {info['blocks']} blocks; sort {info['sort_ms']:.3f} ms, "
            f"partition {info['partition_ms']:.3f} ms, AccelGraph A {info['prepare_ms']:.2f} ms, "
            f"A^T {info['prepare_t_ms']:.2f} ms"
        )
        print(" ".join(f"{c:>12}" for c in COLUMNS + tuple(names)))
        for row in (r for r in result["results"] if r["graph"] == info["graph"]):
            cells = [f"{row['dim']:>12d}", f"{row['backend']:>12}"]
            cells += [f"{row[c]:>12.4g}" for c in COLUMNS[2:]]
            cells += [f"{row[k]:>12.3f}" if k in row else f"{'':>12}" for k in speedups]
            print(" ".join(cells))
    if result["summary"]:
        print("\ngeometric means of accel's speedups:")
        for key, value in result["summary"].items():
            if key.startswith("geomean_"):
                count = result["summary"][key.replace("geomean_", "count_")]
                print(f"  {key.removeprefix('geomean_speedup_'):>24}: {value:.3f}× ({count} rows)")
    if result["skipped"]:
        print(f"\nskipped (absent): {', '.join(result['skipped'])}")


def plot(result: dict, path: Path) -> None:
    """Left: geometric-mean times per backend and width; right: accel's speedups."""
    fig = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(fig)
    times_ax, speed_ax = fig.subplots(1, 2)
    rows, dims = result["results"], sorted({r["dim"] for r in result["results"]})

    def geomean(values: list[float]) -> float:
        return math.exp(sum(map(math.log, values)) / len(values)) if values else math.nan

    styles = (("fwd", "-"), ("fwdbwd", "--"))
    for color, backend in enumerate(dict.fromkeys(r["backend"] for r in rows)):
        mine = [r for r in rows if r["backend"] == backend]
        for phase, style in styles:
            ys = [geomean([r[f"{phase}_ms"] for r in mine if r["dim"] == d]) for d in dims]
            times_ax.plot(
                dims, ys, style, color=f"C{color}", marker="o", label=f"{backend} {phase}"
            )
    for color, baseline in enumerate(BASELINES):
        for phase, style in styles:
            key = speedup_key(phase, baseline)
            ys = [geomean([r[key] for r in rows if key in r and r["dim"] == d]) for d in dims]
            if not all(math.isnan(y) for y in ys):
                speed_ax.plot(
                    dims, ys, style, color=f"C{color}", marker="o", label=f"vs {baseline} {phase}"
                )
    speed_ax.axhline(1.0, color="grey", linewidth=0.8)
    times_ax.set_ylabel("median ms (geometric mean over graphs)")
    speed_ax.set_ylabel("accel speedup (geometric mean over graphs)")
    for ax in (times_ax, speed_ax):
        ax.set(xscale="log", yscale="log", xlabel="width F")
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.minorticks_off()
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    device = result["device"]
    fig.suptitle(
        f"Accel-GCN SpMM, {len(result['graphs'])} graph(s), {device['name']}, "
        f"{device['threads']} thread(s), {device['clock']} clock"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--graph", default=None, help="comma-separated names or edge files")
    parser.add_argument("--data-dir", default=None, help="default $DATA_DIR or ../shared/data")
    parser.add_argument("--dims", default="16,32,64,128,256", help="comma-separated widths")
    parser.add_argument("--backends", default="accel,torch_sparse,pyg", help=f"of {BACKENDS}")
    parser.add_argument("--norm", choices=NORMS, default="gcn")
    parser.add_argument("--self-loops", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="CPU timer")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved CPU timing rounds")
    parser.add_argument("--min-run-time", type=float, default=0.3, help="CPU s per timing")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--dump-meta", default=None, help="FILE, or a path with {graph}")
    args = parser.parse_args(argv)
    try:
        args.dim_list = [int(d) for d in args.dims.split(",") if d.strip()]
    except ValueError:
        parser.error(f"--dims {args.dims}: pass comma-separated integers, e.g. 16,32,64")
    if not args.dim_list or any(d < 1 for d in args.dim_list):
        parser.error(f"--dims {args.dims}: every width must be ≥ 1")
    args.backend_list = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in args.backend_list if b not in BACKENDS]
    if unknown or not args.backend_list:
        parser.error(f"--backends {args.backends}: choose from {BACKENDS}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads {args.threads}: pass a positive thread count")
    if args.rounds < 1 or args.min_run_time <= 0:
        parser.error("--rounds must be ≥ 1 and --min-run-time > 0")
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.data_dir = args.data_dir or os.environ.get("DATA_DIR") or ROOT.parent / "shared" / "data"
    args.graph_list = args.graph.split(",") if args.graph else available_graphs(args.data_dir)
    if args.dump_meta and len(args.graph_list) > 1 and "{graph}" not in args.dump_meta:
        parser.error(
            f"--dump-meta {args.dump_meta} with {len(args.graph_list)} graphs: put {{graph}} "
            "in the path (e.g. meta/{graph}.block4), or pass one --graph"
        )
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    cache_dir = os.environ.get("EFFML_CACHE_DIR") or ROOT / "cache"
    on_cpu = args.device == "cpu"
    timer = Timer(
        args.device,
        args.rounds if on_cpu else 1,  # do_bench repeats on its own
        args.min_run_time / args.rounds,
        args.clock,
        num_threads=threads,
        progress=None,
    )
    started = time.perf_counter()
    result = {
        "device": {
            "type": args.device,
            "name": "cpu" if on_cpu else torch.cuda.get_device_name(args.device),
            "threads": threads,
            "clock": args.clock if on_cpu else "cuda",
        },
        "manifest": device_manifest(threads),
        "norm": args.norm,
        "self_loops": args.self_loops,
        "graphs": [],
        "results": [],
        "skipped": [],
    }
    for i, graph in enumerate(args.graph_list, 1):
        log(f"[{i}/{len(args.graph_list)}] {graph}")
        try:
            loaded = load_graph(graph, args.data_dir, cache_dir)
        except MissingDataError as err:
            if args.graph:  # asked for by name: an error
                raise SystemExit(str(err)) from err
            log(f"  skipped: {err}")
            result["skipped"].append(graph)
            continue
        info, rows = bench_graph(loaded.name, loaded.edge_index, loaded.num_nodes, args, timer)
        result["graphs"].append(info)
        result["results"] += rows
    result["summary"] = summarise(result["results"])
    result["seconds"] = time.perf_counter() - started
    print_table(result)
    bad = non_finite(result["results"] + result["graphs"], lambda row, k: (row["graph"], k))
    if bad:
        raise SystemExit(f"non-finite results: {bad}")
    save_result(result, args.json, args.plot, plot)
    return result


if __name__ == "__main__":
    main()
