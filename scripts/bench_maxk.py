"""Benchmark MaxK-GNN's kernels (ops/maxk) against torch.sparse SpMM, and a SAGE epoch.

Usage:
    python scripts/bench_maxk.py --graph NAME_OR_EDGES_FILE [--dim 256] [--k 8,16,32,64]
        [--backend cpu|triton|reference] [--device cpu|cuda] [--json OUT] [--plot OUT.png]
        [--no-epoch] [--epoch-k 32] [--epoch-layers 3]

NAME resolves to $DATA_DIR/graphs/NAME.edges.gz (DATA_DIR defaults to ../shared/data next to
the repository); a path to any ``*.edges.gz`` (``# nodes: N`` / ``# directed:`` header, then
``src dst`` per line, 0-based) works too, and so do the Planetoid names cora, citeseer and
pubmed (``tasks.bench.graphs``). Undirected graphs get both edge directions; the adjacency is
SAGE's mean (1/d_i).

Per k, in one run and on the same features: the baseline SpMM ``torch.sparse_csr_tensor @
dense`` (MKL on the CPU, cuSPARSE on CUDA), MaxK top-k, SpGEMM (forward), SSpMM (backward)
and the dense backward it replaces ((A^T · dY) with a prebuilt A^T CSR, then the gather),
medians from ``tasks.bench.Timer`` (``torch.utils.benchmark`` in interleaved rounds on the CPU,
``triton.testing.do_bench`` on CUDA). Speedups:
``spgemm_speedup`` = SpMM / SpGEMM, ``sspmm_speedup`` = dense backward / SSpMM (and
``sspmm_speedup_vs_spmm``). Errors are against float64 (torch.sparse in float64 on the same
CBSR): max abs, and max relative = max |err| / max |ref|.

The epoch part times one full-batch training step (forward, cross entropy, backward, Adam) of
a self-contained SAGE-like net (lin_in → [σ → mean aggregation + root → LayerNorm]×L →
lin_out) with ReLU + torch.sparse aggregation against MaxK + ``maxk_aggregate``, on the same
graph with random features and labels, and reports the SpMM share of the ReLU epoch (the
``ops.sparse.spmm`` calls timed inside three profiled ReLU epochs) and the Amdahl limit
1 / ((1 − share) + share / s), s = (SpMM + SpMM^T) / (top-k + SpGEMM + SSpMM) measured at
``--epoch-k``.
On a GPU the same script measures the Triton kernels against cuSPARSE (the paper's table).
The JSON carries the device manifest (``tasks.bench.device_manifest``) under ``"manifest"``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from effml.errors import MissingDataError
from ops.maxk import cbsr_to_dense, decode_indices, maxk, maxk_aggregate, spgemm, sspmm
from ops.sparse import CsrAdjacency, spmm
from tasks.bench import (
    CLOCKS,
    Timer,
    cuda_sync,
    load_graph,
    log,
    max_errors,
    non_finite,
    save_result,
)

ROOT = Path(__file__).resolve().parents[1]

COLUMNS = ("k", "spmm_ms", "topk_ms", "spgemm_ms", "sspmm_ms", "dense_bwd_ms",
           "spgemm_speedup", "sspmm_speedup", "fwd_max_rel_err", "bwd_max_rel_err")  # fmt: skip


class SageNet(nn.Module):
    """lin_in → [σ → root(h) + neigh(mean_j h_j) → LayerNorm] × layers → lin_out."""

    def __init__(self, dim: int, classes: int, layers: int, k: int | None, backend: str) -> None:
        super().__init__()
        self.k, self.backend = k, backend
        self.lin_in = nn.Linear(dim, dim)
        self.roots = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.neighs = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.lin_out = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor, graph: dict) -> torch.Tensor:
        h = self.lin_in(x)  # (N, dim)
        for root, neigh, norm in zip(self.roots, self.neighs, self.norms, strict=True):
            if self.k is None:
                act = torch.relu(h)
                agg = spmm(graph["a"], graph["a_t"], act, graph.get("profile"))
            else:
                agg, act = maxk_aggregate(
                    graph["adj"], h, self.k, backend=self.backend, return_dense=True
                )
            h = norm(root(act) + neigh(agg))
        return self.lin_out(h)


def time_epochs(args, graph: dict, n: int, device, timer) -> dict:
    """Training-step times of the ReLU and MaxK SAGE nets, same init and data."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, args.dim, generator=gen).to(device)
    labels = torch.randint(0, args.classes, (n,), generator=gen).to(device)
    steps = {}
    for name, k in (("relu", None), ("maxk", args.epoch_k)):
        torch.manual_seed(0)
        model = SageNet(args.dim, args.classes, args.epoch_layers, k, args.backend).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(model=model, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x, graph), labels).backward()
            opt.step()

        steps[name] = step
    log("  epochs: relu, maxk")
    times = timer(steps)  # its warm-up builds the kernels and fills the caches
    clock = CLOCKS[args.clock] if device.type == "cpu" else time.perf_counter
    sync = cuda_sync(device)
    graph["profile"] = {"clock": clock, "sync": sync, "ms": 0.0}  # SpMM time in ReLU epochs
    sync()
    start = clock()
    for _ in range(3):
        steps["relu"]()
    sync()
    total_ms = (clock() - start) * 1e3
    times["spmm_share"] = graph.pop("profile")["ms"] / total_ms
    return times


def bench_k(k: int, args, adj, a, a_t, a64, a_t64, h, dy, timer) -> dict:
    """One row of the table: times, speedups and errors at this k."""
    values, indices = maxk(h, k, backend=args.backend)
    idx = decode_indices(indices)
    log(f"  k={k}: spmm, topk, spgemm, sspmm, dense_bwd, spmm_t")
    row = {"k": k}
    row.update(
        timer(
            {
                "spmm_ms": lambda: a @ h,
                "topk_ms": lambda: maxk(h, k, backend=args.backend),
                "spgemm_ms": lambda: spgemm(adj, values, indices, args.dim, backend=args.backend),
                "sspmm_ms": lambda: sspmm(adj, dy, indices, backend=args.backend),
                "dense_bwd_ms": lambda: (a_t @ dy).gather(1, idx),
                "spmm_t_ms": lambda: a_t @ dy,
            }
        )
    )
    row["spgemm_speedup"] = row["spmm_ms"] / row["spgemm_ms"]
    row["maxk_fwd_speedup"] = row["spmm_ms"] / (row["topk_ms"] + row["spgemm_ms"])
    row["sspmm_speedup"] = row["dense_bwd_ms"] / row["sspmm_ms"]
    row["sspmm_speedup_vs_spmm"] = row["spmm_ms"] / row["sspmm_ms"]
    y = spgemm(adj, values, indices, args.dim, backend=args.backend)
    g = sspmm(adj, dy, indices, backend=args.backend)
    ref_y = a64 @ cbsr_to_dense(values.double(), indices, args.dim)
    ref_g = (a_t64 @ dy.double()).gather(1, idx)
    row["fwd_max_abs_err"], row["fwd_max_rel_err"] = max_errors(y, ref_y)
    row["bwd_max_abs_err"], row["bwd_max_rel_err"] = max_errors(g, ref_g)
    return row


def print_table(result: dict) -> None:
    print(
        f"\n{result['graph']}: {result['nodes']} nodes, {result['edges']} edges, "
        f"dim {result['dim']}, {result['device']}, backend {result['backend']}"
    )
    print(" ".join(f"{c:>15}" for c in COLUMNS))
    for row in result["results"]:
        cells = (f"{row[c]:>15d}" if c == "k" else f"{row[c]:>15.4g}" for c in COLUMNS)
        print(" ".join(cells))
    if "epoch_relu_ms" in result:
        print(
            f"SAGE epoch ({result['epoch_layers']} layers, k={result['epoch_k']}): ReLU "
            f"{result['epoch_relu_ms']:.2f} ms, MaxK {result['epoch_maxk_ms']:.2f} ms, speedup "
            f"{result['epoch_speedup']:.2f}×; SpMM share of the ReLU epoch "
            f"{result['spmm_share']:.1%}, kernel speedup {result['kernel_speedup']:.2f}×, "
            f"Amdahl limit {result['amdahl_limit']:.2f}×"
        )


def plot(result: dict, path: Path) -> None:
    """Grouped bars of the kernel times per k, speedups written over the SpGEMM/SSpMM bars."""
    fig = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    series = [("spmm_ms", "SpMM (torch.sparse)"), ("dense_bwd_ms", "dense backward"),
              ("topk_ms", "top-k"), ("spgemm_ms", "SpGEMM"), ("sspmm_ms", "SSpMM")]  # fmt: skip
    rows = result["results"]
    width = 0.8 / len(series)
    for s, (key, label) in enumerate(series):
        xs = [i + (s - (len(series) - 1) / 2) * width for i in range(len(rows))]
        bars = ax.bar(xs, [r[key] for r in rows], width, label=label)
        speedup = {"spgemm_ms": "spgemm_speedup", "sspmm_ms": "sspmm_speedup"}.get(key)
        if speedup:
            ax.bar_label(bars, [f"{r[speedup]:.1f}×" for r in rows], fontsize=7)
    ax.set_xticks(range(len(rows)), [f"k={r['k']}" for r in rows])
    ax.set_ylabel("median time (ms)")
    ax.set_title(
        f"MaxK kernels on {result['graph']} (dim {result['dim']}, {result['device']}, "
        f"{result['backend']})"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--graph", required=True, help="NAME under DATA_DIR/graphs, a Planetoid name, or a file"
    )
    parser.add_argument("--data-dir", default=None, help="default $DATA_DIR or ../shared/data")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--k", default="8,16,32,64", help="comma-separated k values")
    parser.add_argument("--backend", choices=("cpu", "triton", "reference"), default=None)
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--min-run-time", type=float, default=2.0, help="CPU seconds per timing")
    parser.add_argument("--epoch", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--epoch-k", type=int, default=32)
    parser.add_argument("--epoch-layers", type=int, default=3)
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved CPU timing rounds")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="CPU timer")
    args = parser.parse_args(argv)
    args.ks = [int(k) for k in args.k.split(",") if k.strip()]
    if not args.ks or any(k < 1 or k > args.dim for k in args.ks):
        parser.error(f"--k {args.k}: each k must lie in [1, {args.dim}]")
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: need at least one round")
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.backend is None:
        args.backend = "triton" if args.device == "cuda" else "cpu"
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data_dir = args.data_dir or os.environ.get("DATA_DIR") or ROOT.parent / "shared" / "data"
    cache_dir = os.environ.get("EFFML_CACHE_DIR") or ROOT / "cache"
    log(f"loading {args.graph} ...")
    started = time.perf_counter()
    try:
        loaded = load_graph(args.graph, data_dir, cache_dir)
    except MissingDataError as err:
        raise SystemExit(str(err)) from err
    name, n = loaded.name, loaded.num_nodes
    adj = CsrAdjacency.from_edge_index(loaded.edge_index, n, norm="mean").to(device)
    a, a_t = adj.to_torch_sparse(), adj.transpose().to_torch_sparse()
    a64, a_t64 = adj.to_torch_sparse(torch.float64), adj.transpose().to_torch_sparse(torch.float64)
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(n, args.dim, generator=gen).to(device)
    dy = torch.randn(n, args.dim, generator=gen).to(device)
    rounds = args.rounds if device.type == "cpu" else 1  # do_bench does its own repeats
    timer = Timer(device.type, rounds, args.min_run_time / rounds, args.clock, progress=log)
    result = {
        "graph": name,
        "nodes": n,
        "edges": adj.nnz,
        "mean_degree": adj.nnz / max(n, 1),
        "dim": args.dim,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "backend": args.backend,
        "threads": torch.get_num_threads(),
        "clock": args.clock if device.type == "cpu" else "cuda",
        "torch": torch.__version__,
        "results": [],
    }
    log(f"{name}: {n} nodes, {adj.nnz} edges (mean degree {result['mean_degree']:.1f})")
    spgemm(adj, *maxk(h, 1), args.dim, backend=args.backend)  # builds/loads the kernels
    for i, k in enumerate(args.ks, 1):
        log(f"[{i}/{len(args.ks)}] k={k}")
        result["results"].append(bench_k(k, args, adj, a, a_t, a64, a_t64, h, dy, timer))
    if args.epoch:
        log(f"[epoch] SAGE, {args.epoch_layers} layers, ReLU vs MaxK k={args.epoch_k}")
        rows = {r["k"]: r for r in result["results"]}
        at_k = rows.get(args.epoch_k) or bench_k(
            args.epoch_k, args, adj, a, a_t, a64, a_t64, h, dy, timer
        )
        graph = {"adj": adj, "a": a, "a_t": a_t}
        epochs = time_epochs(args, graph, n, device, timer)
        spmm_layer = at_k["spmm_ms"] + at_k["spmm_t_ms"]
        share = min(1.0, epochs["spmm_share"])
        kernel = spmm_layer / (at_k["topk_ms"] + at_k["spgemm_ms"] + at_k["sspmm_ms"])
        if args.epoch_k not in rows:
            result["epoch_kernels"] = at_k
        result.update(
            epoch_k=args.epoch_k,
            epoch_layers=args.epoch_layers,
            epoch_relu_ms=epochs["relu"],
            epoch_maxk_ms=epochs["maxk"],
            epoch_speedup=epochs["relu"] / epochs["maxk"],
            spmm_share=share,
            kernel_speedup=kernel,
            amdahl_limit=1.0 / ((1.0 - share) + share / kernel),
        )
    result["seconds"] = time.perf_counter() - started
    print_table(result)
    bad = non_finite([result], lambda row, k: k)
    if bad:
        raise SystemExit(f"non-finite results: {bad}")
    save_result(result, args.json, args.plot, plot)
    return result


if __name__ == "__main__":
    main()
