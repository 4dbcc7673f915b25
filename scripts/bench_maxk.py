"""Benchmark MaxK-GNN's kernels (ops/maxk) against torch.sparse SpMM, and a SAGE epoch.

Usage:
    python scripts/bench_maxk.py --graph NAME_OR_EDGES_FILE [--dim 256] [--k 8,16,32,64]
        [--backend cpu|triton|reference] [--device cpu|cuda] [--json OUT] [--plot OUT.png]
        [--no-epoch] [--epoch-k 32] [--epoch-layers 3]

NAME resolves to $DATA_DIR/graphs/NAME.edges.gz (DATA_DIR defaults to ../shared/data next to
the repository); a path to any ``*.edges.gz`` (``# nodes: N`` / ``# directed:`` header, then
``src dst`` per line, 0-based) works too. Undirected graphs get both edge directions; the
adjacency is SAGE's mean (1/d_i).

Per k, in one run and on the same features: the baseline SpMM ``torch.sparse_csr_tensor @
dense`` (MKL on the CPU, cuSPARSE on CUDA), MaxK top-k, SpGEMM (forward), SSpMM (backward)
and the dense backward it replaces ((A^T · dY) with a prebuilt A^T CSR, then the gather),
medians from ``torch.utils.benchmark`` (CPU) or ``triton.testing.do_bench`` (CUDA). Speedups:
``spgemm_speedup`` = SpMM / SpGEMM, ``sspmm_speedup`` = dense backward / SSpMM (and
``sspmm_speedup_vs_spmm``). Errors are against float64 (torch.sparse in float64 on the same
CBSR): max abs, and max relative = max |err| / max |ref|.

The epoch part times one full-batch training step (forward, cross entropy, backward, Adam) of
a self-contained SAGE-like net (lin_in → [σ → mean aggregation + root → LayerNorm]×L →
lin_out) with ReLU + torch.sparse aggregation against MaxK + ``maxk_aggregate``, on the same
graph with random features and labels, and reports the SpMM share of the ReLU epoch (the
torch.sparse calls timed inside three profiled ReLU epochs) and the Amdahl limit
1 / ((1 − share) + share / s), s = (SpMM + SpMM^T) / (top-k + SpGEMM + SSpMM) measured at
``--epoch-k``.
On a GPU the same script measures the Triton kernels against cuSPARSE (the paper's table).
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn
from torch.utils import benchmark

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ops.maxk import (  # noqa: E402
    CsrAdjacency,
    cbsr_to_dense,
    decode_indices,
    maxk,
    maxk_aggregate,
    spgemm,
    sspmm,
)
from scripts.bench_common import log, non_finite, save_result  # noqa: E402

COLUMNS = ("k", "spmm_ms", "topk_ms", "spgemm_ms", "sspmm_ms", "dense_bwd_ms",
           "spgemm_speedup", "sspmm_speedup", "fwd_max_rel_err", "bwd_max_rel_err")  # fmt: skip


def resolve_graph(graph: str, data_dir: str | None) -> Path:
    """A path to an edge file, or NAME → DATA_DIR/graphs/NAME.edges.gz."""
    path = Path(graph)
    if path.is_file():
        return path
    root = Path(data_dir or os.environ.get("DATA_DIR") or ROOT.parent / "shared" / "data")
    named = root / "graphs" / f"{graph}.edges.gz"
    if not named.is_file():
        found = sorted(p.name.removesuffix(".edges.gz") for p in (root / "graphs").glob("*.gz"))
        raise SystemExit(f"no graph {graph!r}: not a file and not {named} (have: {found})")
    return named


def read_edge_file(path: Path) -> tuple[torch.Tensor, int]:
    """(2, E) edge_index (both directions unless the header says directed) and N."""
    header = {}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            key, _, value = line[1:].partition(":")
            header[key.strip().lower()] = value.strip()
    pairs = pd.read_csv(path, comment="#", sep=r"\s+", header=None, usecols=[0, 1], dtype="int64")
    edge_index = torch.from_numpy(pairs.to_numpy().T.copy())
    nodes = int(header["nodes"]) if "nodes" in header else int(edge_index.max()) + 1
    if header.get("directed", "false").lower() != "true":
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    return edge_index, nodes


def make_timer(device: torch.device, args: argparse.Namespace) -> Callable[[dict], dict]:
    """Median milliseconds of each fn in {name: fn}.

    CUDA: ``triton.testing.do_bench``. CPU: ``torch.utils.benchmark`` in ``args.rounds``
    interleaved rounds (every fn once per round, ``min_run_time / rounds`` seconds each), the
    median over rounds, so load from other processes hits the baseline and the kernels alike;
    ``--clock cpu`` counts process CPU time instead of wall time (robust on shared cores with
    ``--threads 1``).
    """
    if device.type == "cuda":
        import triton.testing

        def gpu_times(fns: dict) -> dict:
            out = {}
            for name, fn in fns.items():
                log(f"    {name} ...")
                out[name] = float(triton.testing.do_bench(fn, return_mode="median"))
            return out

        return gpu_times
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    rounds = max(1, args.rounds)

    def cpu_times(fns: dict) -> dict:
        samples = {name: [] for name in fns}
        for fn in fns.values():  # warm-up: first-call set-up (MKL, allocations) is not timed
            fn()
        for r in range(rounds):
            log(f"    round {r + 1}/{rounds}: {', '.join(fns)}")
            for name, fn in fns.items():
                timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, timer=clock)
                measured = timer.blocked_autorange(min_run_time=args.min_run_time / rounds)
                samples[name].append(measured.median * 1e3)
        return {name: statistics.median(values) for name, values in samples.items()}

    return cpu_times


def errors(got: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(max abs error, max abs error / max |ref|)."""
    err = (got.double() - ref).abs().max().item() if ref.numel() else 0.0
    scale = ref.abs().max().item() if ref.numel() else 0.0
    return err, err / scale if scale else err


def _stamp(profile: dict | None) -> float:
    """The profile's clock after the device is idle (0 without a profile)."""
    if not profile:
        return 0.0
    profile["sync"]()
    return profile["clock"]()


class SparseMean(torch.autograd.Function):
    """Baseline aggregation A · h with torch.sparse CSR both ways (A^T prebuilt).

    ``profile`` = {"clock": fn, "sync": fn, "ms": float} adds the SpMM time of forward and
    backward (``sync`` waits for the GPU, so the clock sees the kernels).
    """

    @staticmethod
    def forward(ctx, h, a, a_t, profile):
        ctx.a_t, ctx.profile = a_t, profile
        start = _stamp(profile)
        y = a @ h
        if profile:
            profile["ms"] += (_stamp(profile) - start) * 1e3
        return y

    @staticmethod
    def backward(ctx, grad):
        profile = ctx.profile
        start = _stamp(profile)
        grad_h = ctx.a_t @ grad
        if profile:
            profile["ms"] += (_stamp(profile) - start) * 1e3
        return grad_h, None, None, None


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
                agg = SparseMean.apply(act, graph["a"], graph["a_t"], graph.get("profile"))
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

        step()  # warm-up: kernels built, caches filled
        steps[name] = step
    log("  epochs: relu, maxk")
    times = timer(steps)
    clock = time.process_time if args.clock == "cpu" and device.type == "cpu" else time.perf_counter
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
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
    row["fwd_max_abs_err"], row["fwd_max_rel_err"] = errors(y, ref_y)
    row["bwd_max_abs_err"], row["bwd_max_rel_err"] = errors(g, ref_g)
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
    parser.add_argument("--graph", required=True, help="NAME under DATA_DIR/graphs or a file")
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
    path = resolve_graph(args.graph, args.data_dir)
    name = path.name.removesuffix(".gz").removesuffix(".edges").removesuffix(".txt")
    log(f"loading {path} ...")
    started = time.perf_counter()
    edge_index, n = read_edge_file(path)
    adj = CsrAdjacency.from_edge_index(edge_index, n, norm="mean").to(device)
    a, a_t = adj.to_torch_sparse(), adj.transpose().to_torch_sparse()
    a64, a_t64 = adj.to_torch_sparse(torch.float64), adj.transpose().to_torch_sparse(torch.float64)
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(n, args.dim, generator=gen).to(device)
    dy = torch.randn(n, args.dim, generator=gen).to(device)
    timer = make_timer(device, args)
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
        "host": platform.node(),
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
