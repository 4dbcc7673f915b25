"""Benchmark the gated activation y = g·F(x) + (1 − g)·G(x): forward + backward per backend.

Usage:
    python scripts/bench_polyact.py [--device cpu|cuda] [--json OUT] [--min-run-time S]

Baseline: the reference (``ops/polyact/reference.py``) under eager autograd, measured in the
same run as the others. CPU (``torch.utils.benchmark``): the fast CPU path eager, and both the
reference and the CPU path under ``torch.compile`` (inductor). CUDA
(``triton.testing.do_bench``, median): the Triton kernels, the CPU path's torch code on the GPU
and the compiled reference. Times come from ``tasks.bench.Timer``. Writes the table, a JSON file
with the device manifest (``"manifest"``) and a PNG bar plot of the speedups (OUT with .png)
and checks every variant against the reference before timing it.
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ops.polyact import poly_act, poly_act_reference
from tasks.bench import Timer, save_result

BASELINE = "reference"


@dataclass(frozen=True)
class Case:
    """One activation site: x shape, gate and coefficient shapes, F/G, which leaves train."""

    name: str
    x: tuple[int, ...]
    gate: tuple[int, ...]
    coef: tuple[int, ...] | None
    keep: str
    drop: str
    scale: float
    trained: tuple[str, ...]


ALL = ("x", "gate", "w2", "w1", "w0")
POLY3 = ("x", "w2", "w1")  # LinGCN stage 3: gates frozen, b frozen
CASES = (
    # LinGCN STGCN-3-256 block-2 activation, batch 16 × 2 persons, 64 frames: stages 2 and 3
    Case("lingcn_linearize", (32, 256, 64, 25), (1, 1, 25), None, "relu", "identity", 1.0, ALL[:2]),
    Case("lingcn_poly", (32, 256, 64, 25), (1, 1, 25), (1, 1, 25), "poly", "identity", 0.01, POLY3),
    # AutoReP ResNet-18 on CIFAR (conv1 and layer4 activations): element mask, channel poly
    Case("autorep_conv1", (128, 64, 32, 32), (64, 32, 32), (64, 1, 1), "relu", "poly", 1.0, ALL),
    Case("autorep_layer4", (128, 512, 4, 4), (512, 4, 4), (512, 1, 1), "relu", "poly", 1.0, ALL),
)


def make_leaves(case: Case, device: str) -> tuple[list[torch.Tensor | None], torch.Tensor]:
    """(x, gate, w2, w1, w0) with requires_grad as in training, and an upstream gradient."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(case.x, generator=gen)
    gate = (torch.rand(case.gate, generator=gen) > 0.5).float()
    coefs = [None, None, None]
    if case.coef is not None:
        coefs = [
            torch.rand(case.coef, generator=gen) * s + o
            for s, o in ((1e-2, 0), (0.1, 1), (1e-2, 0))
        ]
    leaves = [
        None if t is None else t.to(device).requires_grad_(name in case.trained)
        for name, t in zip(("x", "gate", "w2", "w1", "w0"), [x, gate, *coefs], strict=True)
    ]
    return leaves, torch.randn(case.x, generator=gen).to(device)


def variants(case: Case, device: str, compile_: bool) -> dict[str, Callable]:
    """name → f(x, gate, w2, w1, w0) -> y."""
    kw = dict(keep=case.keep, drop=case.drop, scale=case.scale)
    out = {BASELINE: lambda *t: poly_act_reference(*t, **kw)}
    fast = "triton" if device == "cuda" else "cpu"
    out[fast] = lambda *t: poly_act(*t, backend=fast, **kw)
    if device == "cuda":
        out["cpu_path_on_gpu"] = lambda *t: poly_act(*t, backend="cpu", **kw)
    if compile_:
        out["reference+compile"] = torch.compile(lambda *t: poly_act_reference(*t, **kw))
        if device == "cpu":
            out["cpu+compile"] = torch.compile(lambda *t: poly_act(*t, backend="cpu", **kw))
    return out


def outputs(fn: Callable, leaves: list, dy: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """y and the gradients of the trained leaves."""
    y = fn(*leaves)
    return (
        y,
        *torch.autograd.grad(y, [t for t in leaves if t is not None and t.requires_grad], dy),
    )


def check(fn: Callable, ref: Callable, leaves: list, dy: torch.Tensor, name: str) -> None:
    """Outputs and gradients of one variant against the reference (fp32 tolerances)."""
    for g, w in zip(outputs(fn, leaves, dy), outputs(ref, leaves, dy), strict=True):
        scale = max(1.0, w.abs().max().item())
        if not torch.allclose(g, w, rtol=1e-4, atol=1e-4 * scale):
            raise AssertionError(f"{name}: max |Δ| {(g - w).abs().max().item():.3g} vs reference")


def step_once(fn: Callable, leaves: list, dy: torch.Tensor) -> Callable[[], None]:
    wrt = [t for t in leaves if t is not None and t.requires_grad]

    def step() -> None:
        torch.autograd.grad(fn(*leaves), wrt, dy)

    return step


def run(device: str, min_run_time: float, compile_: bool, rounds: int) -> list[dict]:
    """Per case: check every variant, then time them in ``rounds`` interleaved rounds.

    Each variant's time is the best of its per-round medians: on a shared machine another
    process's load only ever adds time, and interleaving exposes all variants to it alike.
    """
    timer = Timer(device, rounds, min_run_time, num_threads=torch.get_num_threads())
    rows = []
    for case in CASES:
        leaves, dy = make_leaves(case, device)
        fns = variants(case, device, compile_)
        steps = {}
        for name, fn in fns.items():
            if name != BASELINE:
                check(fn, fns[BASELINE], leaves, dy, f"{case.name}/{name}")
            steps[name] = step_once(fn, leaves, dy)
        rounds_ms = timer.samples(steps)  # warms every step up first (and compiles)
        times = {name: min(ms) for name, ms in rounds_ms.items()}
        rows.append(
            {
                "case": case.name,
                "x": list(case.x),
                "gate": list(case.gate),
                "coef": None if case.coef is None else list(case.coef),
                "keep": case.keep,
                "drop": case.drop,
                "trained": list(case.trained),
                "ms": times,
                "ms_rounds": rounds_ms,
                "speedup": {k: times[BASELINE] / v for k, v in times.items() if k != BASELINE},
            }
        )
        summary = ", ".join(f"{k} {v:.2f} ms" for k, v in times.items())
        print(f"  {case.name}: {summary}", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    names = list(rows[0]["ms"])
    cols = [f"{n} ms" for n in names] + [f"x {n}" for n in names if n != BASELINE]
    width = max(12, *(len(c) + 2 for c in cols))
    head = f"{'case':<18}{'x':<16}" + "".join(f"{c:>{width}}" for c in cols)
    lines = [head, "-" * len(head)]
    for r in rows:
        values = [r["ms"][n] for n in names] + [r["speedup"][n] for n in names if n != BASELINE]
        line = f"{r['case']:<18}{'x'.join(map(str, r['x'])):<16}"
        lines.append(line + "".join(f"{v:>{width}.2f}" for v in values))
    return "\n".join(lines) + "\n(x NAME: eager reference time / NAME time, same run)"


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Grouped bars: speedup over the eager reference per case and variant."""
    names = [n for n in rows[0]["ms"] if n != BASELINE]
    fig = Figure(figsize=(1.8 + 1.6 * len(rows), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(rows))]
        bars = ax.bar(xs, [r["speedup"][name] for r in rows], width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xticks(range(len(rows)), [r["case"] for r in rows], fontsize=8)
    ax.set_ylabel(f"speedup over eager {BASELINE} (fwd+bwd)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--json", type=Path, default=None, help="default outputs/bench/polyact_<device>.json"
    )
    parser.add_argument(
        "--min-run-time", type=float, default=1.0, help="seconds per CPU measurement"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible")
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: need at least one round")
    out = args.json or Path("outputs/bench") / f"polyact_{args.device}.json"

    device_name = (
        torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"polyact fwd+bwd on {device_name}, torch {torch.__version__}, {threads} threads")
    rows = run(args.device, args.min_run_time, not args.no_compile, args.rounds)
    text = table(rows)
    print(text)
    meta = {
        "device": args.device,
        "device_name": device_name,
        "threads": threads,
        "torch": torch.__version__,
        "baseline": BASELINE,
        "timer": ("triton.testing.do_bench" if args.device == "cuda" else "torch.utils.benchmark")
        + f" median per round, best of {args.rounds} interleaved rounds",
    }
    title = f"polyact fwd+bwd, {device_name}, {threads} threads, torch {torch.__version__}"
    save_result(
        {**meta, "results": rows},
        out,
        out.with_suffix(".png"),
        lambda result, path: plot(result["results"], path, title),
        progress=print,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
