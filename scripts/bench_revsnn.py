"""Benchmark the reversible LIF node (ops/revsnn) against SpikingJelly's LIFNode and against
standard reversible backpropagation: activation memory, training-step time, gradients.

Usage:
    python scripts/bench_revsnn.py [--T 4,8,16,32] [--widths 32,64] [--batch 8] [--size 16]
        [--backend cpu|triton] [--device cpu|cuda] [--json OUT] [--plot OUT.png]
        [--threads 1] [--rounds 5] [--min-run-time 2] [--clock wall|cpu]

Per configuration (T, width), on x_seq (T, batch, width, size, size) and on a spiking VGG
(stem width → node → [avg-pool, conv 2·width → node] → linear, direct encoding of a
(batch, 3, 2·size, 2·size) image):

- memory: bytes saved for backward, counted with ``torch.autograd.graph.saved_tensors_hooks``
  as distinct storages (by data pointer). Node: ``node_bytes`` leaves out the storage of the
  node's output (the next layer keeps it for its own backward whichever node runs; the
  reversible node saves it and reads it back), ``node_bytes_incl_output`` keeps it. Network:
  all activations (parameters and the input image left out), shared storages counted once.
  On CUDA also the peak allocated memory of a forward + backward above the resting level.
  Ratios: ``node_memory_ratio_vs_lif`` = LIF bytes / reversible bytes, likewise ``net_``.
- time: one training step of the node alone (forward + backward) and of the net (forward,
  cross entropy, backward, Adam) for reversible (one-sweep backward), reversible_autograd
  (reconstruct x_t, v_{t−1}, re-run the step under autograd) and lif; medians from
  ``tasks.bench.Timer`` (``torch.utils.benchmark`` in interleaved rounds on the CPU,
  ``triton.testing.do_bench`` on CUDA).
  ``step_time_ratio_vs_reversible_autograd`` = sweep / recompute for the node step (< 0.8 is
  the paper's claim of ≥ 20% faster), ``net_step_time_ratio_vs_reversible_autograd`` the same
  for the whole training step.
- accuracy: ``grad_max_rel_err`` = max over the sweep and recompute backwards of
  max |dx − dx_ref| / max |dx_ref|, the reference being autograd through
  ``reversible_lif_reference`` on the same input in the same dtype (the same forward
  spikes); ``grad_max_rel_err_vs_fp64_*`` against the float64 reference, whose spikes can
  differ where a firing potential lies within fp32 rounding of θ; ``inverse_max_abs_err`` and
  ``inverse_max_rel_err`` of x_seq rebuilt from (y_seq, v_T), and ``inverse_flipped`` the
  number of its elements off by more than 1e-3 (recomputed spikes that flipped).

The JSON carries the device manifest (``tasks.bench.device_manifest``) under ``"manifest"``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lightning_modules.snn.nets import SpikingVGG, make_node
from ops.revsnn import reversible_lif, reversible_lif_inverse, reversible_lif_reference
from tasks.bench import Timer, log, non_finite, save_result

KINDS = ("reversible", "reversible_autograd", "lif")
COLUMNS = ("T", "width", "node_memory_ratio_vs_lif", "net_memory_ratio_vs_lif",
           "step_time_ratio_vs_reversible_autograd", "net_step_time_ratio_vs_reversible_autograd",
           "grad_max_rel_err", "inverse_max_abs_err")  # fmt: skip


def saved_bytes(fn: Callable[[], torch.Tensor], exclude: Callable[[torch.Tensor], set]) -> dict:
    """Bytes of the distinct storages autograd saves while ``fn()`` runs.

    ``exclude(out)`` names data pointers not to count (e.g. the output, parameters).
    Returns {"bytes": counted, "bytes_all": every distinct storage, "out": fn's result}.
    """
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    skip = exclude(out)
    return {
        "bytes": sum(n for ptr, n in storages.items() if ptr not in skip),
        "bytes_all": sum(storages.values()),
        "out": out,
    }


def ptr(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def node_input(steps: int, args, width: int, device) -> torch.Tensor:
    """(T, batch, width, size, size) drive with spikes in every channel group."""
    gen = torch.Generator().manual_seed(steps * 1000 + width)
    x = torch.randn(steps, args.batch, width, args.size, args.size, generator=gen) * 1.5 + 0.5
    return x.to(device)


def node_kwargs(kind: str, args) -> dict:
    return {"node": kind, "backend": args.backend}


def peak_cuda_bytes(step: Callable[[], None], device) -> float:
    """Peak allocated bytes of one step above the allocation before it (CUDA only)."""
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return float(torch.cuda.max_memory_allocated(device) - base)


def bench_config(steps: int, width: int, args, device, timer) -> dict:
    """One row: memory, times, gradient and inverse errors at (T, width)."""
    row: dict = {"T": steps, "width": width}
    x = node_input(steps, args, width, device)
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(device)
    nodes = {kind: make_node(**node_kwargs(kind, args)) for kind in KINDS}

    # node memory
    for kind, node in nodes.items():
        leaf = x.clone().requires_grad_()
        counted = saved_bytes(lambda node=node, leaf=leaf: node(leaf), lambda out: {ptr(out)})
        row[f"node_bytes_{kind}"] = counted["bytes"]
        row[f"node_bytes_incl_output_{kind}"] = counted["bytes_all"]
        if device.type == "cuda":
            row[f"node_peak_bytes_{kind}"] = peak_cuda_bytes(
                lambda node=node, leaf=leaf: node(leaf).backward(grad), device
            )
    row["node_memory_ratio_vs_lif"] = row["node_bytes_lif"] / max(row["node_bytes_reversible"], 1)
    row["node_memory_ratio_incl_output_vs_lif"] = (
        row["node_bytes_incl_output_lif"] / row["node_bytes_incl_output_reversible"]
    )

    # gradients and inverse
    refs = {}
    for name, dtype in (("", x.dtype), ("_vs_fp64", torch.float64)):
        leaf = x.detach().to(dtype).clone().requires_grad_()
        reversible_lif_reference(leaf)[0].backward(grad.to(dtype))
        refs[name] = leaf.grad.double()
    errs = []
    for backward in ("sweep", "recompute"):
        leaf = x.clone().requires_grad_()
        reversible_lif(leaf, backend=args.backend, backward=backward).backward(grad)
        for name, ref in refs.items():
            err = (leaf.grad.double() - ref).abs().max().item() / ref.abs().max().item()
            row[f"grad_max_rel_err{name}_{backward}"] = err
        errs.append(row[f"grad_max_rel_err_{backward}"])
    row["grad_max_rel_err"] = max(errs)
    with torch.no_grad():
        y, v_final = reversible_lif(x, backend=args.backend, return_state=True)
        x_rec, v0 = reversible_lif_inverse(y, v_final)
    diff = (x_rec - x).abs()
    row["inverse_max_abs_err"] = diff.max().item()
    row["inverse_max_rel_err"] = row["inverse_max_abs_err"] / x.abs().max().item()
    row["inverse_flipped"] = int((diff > 1e-3).sum().item())
    row["inverse_v0_max_abs"] = v0.abs().max().item()

    # node step times
    def node_step(node):
        leaf = x.clone().requires_grad_()
        node(leaf).backward(grad)

    times = timer({kind: (lambda node=node: node_step(node)) for kind, node in nodes.items()})
    for kind in KINDS:
        row[f"node_step_ms_{kind}"] = times[kind]
    row["step_time_ratio_vs_reversible_autograd"] = (
        times["reversible"] / times["reversible_autograd"]
    )

    # whole net: memory and training-step time
    gen = torch.Generator().manual_seed(2)
    image = torch.randn(args.batch, 3, 2 * args.size, 2 * args.size, generator=gen).to(device)
    labels = torch.randint(0, 10, (args.batch,), generator=gen).to(device)
    steps_fn = {}
    for kind in KINDS:
        torch.manual_seed(0)
        net = SpikingVGG(
            3, 10, 2 * args.size, [width, "M", 2 * width], steps, node_kwargs(kind, args)
        ).to(device)
        params = {ptr(p) for p in net.parameters()} | {ptr(image)}
        counted = saved_bytes(lambda net=net: net(image), lambda out, params=params: params)
        row[f"net_bytes_{kind}"] = counted["bytes"]
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)

        def train_step(net=net, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(image), labels).backward()
            opt.step()

        train_step()
        if device.type == "cuda":
            row[f"net_peak_bytes_{kind}"] = peak_cuda_bytes(train_step, device)
        steps_fn[kind] = train_step
    row["net_memory_ratio_vs_lif"] = row["net_bytes_lif"] / row["net_bytes_reversible"]
    times = timer(steps_fn)
    for kind in KINDS:
        row[f"net_step_ms_{kind}"] = times[kind]
    row["net_step_time_ratio_vs_reversible_autograd"] = (
        times["reversible"] / times["reversible_autograd"]
    )
    return row


def print_table(result: dict) -> None:
    print(
        f"\nreversible LIF node vs SpikingJelly LIFNode: batch {result['batch']}, "
        f"{result['size']}×{result['size']}, {result['device']}, backend {result['backend']}"
    )
    print(" ".join(f"{c[:22]:>22}" for c in COLUMNS))
    for row in result["results"]:
        cells = (f"{row[c]:>22d}" if c in ("T", "width") else f"{row[c]:>22.4g}" for c in COLUMNS)
        print(" ".join(cells))


def plot(result: dict, path: Path) -> None:
    """Bytes saved for backward against T: the node alone and the whole net, per width."""
    fig = Figure(figsize=(10, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    widths = sorted({row["width"] for row in result["results"]})
    styles = {"lif": "o-", "reversible": "s-", "reversible_autograd": "x--"}
    for ax, scope in zip(axes, ("node", "net"), strict=True):
        for width in widths:
            rows = [r for r in result["results"] if r["width"] == width]
            ts = [r["T"] for r in rows]
            for kind in KINDS:
                values = [max(r[f"{scope}_bytes_{kind}"], 1) / 2**20 for r in rows]
                ax.plot(ts, values, styles[kind], label=f"{kind}, width {width}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("time steps T")
        ax.set_ylabel("MiB saved for backward")
        ax.set_title("node alone (output excluded)" if scope == "node" else "whole spiking VGG")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--T", default="4,8,16,32", help="comma-separated time-step counts")
    parser.add_argument("--widths", default="32,64", help="comma-separated channel counts")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=16, help="node input is size×size")
    parser.add_argument("--backend", choices=("cpu", "triton"), default=None)
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--min-run-time", type=float, default=2.0, help="CPU seconds per timing")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved CPU timing rounds")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="CPU timer")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    args.ts = [int(t) for t in args.T.split(",") if t.strip()]
    args.width_list = [int(w) for w in args.widths.split(",") if w.strip()]
    if not args.ts or min(args.ts) < 1:
        parser.error(f"--T {args.T}: need positive step counts")
    if not args.width_list or any(w < 2 or w % 2 for w in args.width_list):
        parser.error(f"--widths {args.widths}: the node needs even widths ≥ 2")
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
    rounds = args.rounds if device.type == "cpu" else 1  # do_bench does its own repeats
    timer = Timer(device.type, rounds, args.min_run_time / rounds, args.clock, progress=log)
    started = time.perf_counter()
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "backend": args.backend,
        "batch": args.batch,
        "size": args.size,
        "threads": torch.get_num_threads(),
        "clock": args.clock if device.type == "cpu" else "cuda",
        "torch": torch.__version__,
        "results": [],
    }
    configs = [(t, w) for w in args.width_list for t in args.ts]
    for i, (steps, width) in enumerate(configs, 1):
        log(f"[{i}/{len(configs)}] T={steps} width={width}")
        result["results"].append(bench_config(steps, width, args, device, timer))
    result["seconds"] = time.perf_counter() - started
    print_table(result)
    bad = non_finite(result["results"], lambda row, k: (row["T"], row["width"], k))
    if bad:
        raise SystemExit(f"non-finite results: {bad}")
    save_result(result, args.json, args.plot, plot)
    return result


if __name__ == "__main__":
    main()
