"""Benchmark FlashVideo's RetNet decoding against a same-size causal transformer (with and
without a KV cache) and a MaskGIT-style parallel decoder: time per token, whole-sequence
time and decoding-state memory against the sequence length L.

Usage:
    python scripts/bench_flashvideo.py [--lengths 256,512,...,8192] [--json OUT] [--plot OUT.png]
        [--d-model 64] [--heads 4] [--layers 2] [--vocab 1024] [--prompt 16]
        [--maskgit-iterations 8] [--nocache-max-total 1024] [--device cpu|cuda]
        [--backend cpu|triton] [--threads 1] [--rounds 3] [--min-run-time 0.6]
        [--total-rounds 1] [--clock cpu|wall]

Models (random weights, batch 1; timing does not depend on what was learned), per L:
- ``retnet_recurrent``: ``per_token_ms`` = one recurrent step at position L (state from a
  chunkwise prefill of L tokens); ``total_s`` = generating L tokens after the prompt.
- ``retnet_chunkwise``: the chunkwise form over L tokens (a long prompt, teacher forcing):
  ``total_s`` for the L tokens, ``per_token_ms`` = total / L.
- ``transformer_kvcache``: one cached step at position L; total = generating L tokens.
- ``transformer_nocache``: one step at position L re-runs the L-token prefix; total =
  generating L tokens, measured only up to ``--nocache-max-total`` (null above: it grows as L³
  in attention and L² overall, minutes per point on a CPU).
- ``maskgit``: ``--maskgit-iterations`` bidirectional passes over L masked tokens; total =
  generating L tokens, per token = total / L.
``state_mb``: what the decoder carries between steps after L tokens (RetNet state: S, z, c of
every layer, independent of L; KV cache: the filled keys and values; none for the others).
``peak_mem_mb``: on CUDA the peak allocated memory of the total run above the resting level;
null on the CPU (no allocator statistics there). Per-token times are medians of
``tasks.bench.Timer`` (interleaved rounds on the CPU, ``triton.testing.do_bench`` on CUDA);
totals are the median of ``--total-rounds`` runs (default one), after the per-token timing
has warmed the same code paths. On the CPU both read ``--clock`` (default: process CPU time
with one thread, robust against other processes on shared cores). ``ratios`` holds, per L,
each model's total_s and per_token_ms over retnet_recurrent's.

The JSON is ``{"device": manifest, "config": {...}, "results": [{"model", "L", "total_s",
"per_token_ms", "peak_mem_mb", "state_mb"}, ...], "ratios": [...]}``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lightning_modules.flashvideo import (
    RetNetDecoder,
    TransformerDecoder,
    generate_maskgit,
    generate_retnet,
    generate_transformer,
)
from tasks.bench import CLOCKS, Timer, cuda_sync, device_manifest, log, non_finite, save_result

MODELS = (
    "retnet_recurrent",
    "retnet_chunkwise",
    "transformer_nocache",
    "transformer_kvcache",
    "maskgit",
)
STYLES = {"retnet_recurrent": "o-", "retnet_chunkwise": "s-", "transformer_nocache": "x--",
          "transformer_kvcache": "d-", "maskgit": "^-"}  # fmt: skip


def build(args: argparse.Namespace, device: torch.device) -> dict[str, torch.nn.Module]:
    """The three networks at one size (seeded), in eval mode on ``device``."""
    size = dict(d_model=args.d_model, num_heads=args.heads, num_layers=args.layers,
                max_len=max(args.lengths) + args.prompt + 1)  # fmt: skip
    torch.manual_seed(0)
    nets = {
        "retnet": RetNetDecoder(args.vocab, **size),
        "transformer": TransformerDecoder(args.vocab, **size),
        "maskgit": TransformerDecoder(args.vocab + 1, causal=False, **size),
    }
    return {k: v.to(device).eval() for k, v in nets.items()}


def timed_total(fn: Callable[[], object], args: argparse.Namespace) -> float:
    """Median ms of ``args.total_rounds`` calls of fn on ``args.clock`` (CUDA: synchronised)."""
    clock = CLOCKS["wall"] if args.device == "cuda" else CLOCKS[args.clock]
    sync = cuda_sync(args.device)
    times = []
    for _ in range(args.total_rounds):
        sync()
        start = clock()
        fn()
        sync()
        times.append((clock() - start) * 1e3)
    return statistics.median(times)


def peak_memory(fn: Callable[[], object], device: torch.device) -> float | None:
    """Peak MiB allocated above the resting level during one call of fn (CUDA), else None."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


@torch.no_grad()
def bench_length(length, nets, args, device, timer) -> list[dict]:
    """The five rows of one L."""
    gen = torch.Generator().manual_seed(length)
    seq = torch.randint(0, args.vocab, (1, length + 1), generator=gen).to(device)
    prompt = seq[:, : args.prompt]
    tok = seq[:, length]
    retnet, tf, mg = nets["retnet"], nets["transformer"], nets["maskgit"]
    _, states = retnet.prefill(seq[:, :length], backend=args.backend)
    cache = tf.new_cache(1)
    tf(seq[:, :length], cache)

    def kv_step():
        cache.length = length
        return tf(tok[:, None], cache)

    steps = {
        "retnet_recurrent": lambda: retnet.step(tok, states, length),
        "retnet_chunkwise": lambda: retnet.prefill(seq[:, :length], backend=args.backend),
        "transformer_kvcache": kv_step,
        "transformer_nocache": lambda: tf(seq[:, : length + 1]),
    }
    log(f"L={length}: per-token timing")
    ms = timer(steps)
    totals = {
        "retnet_recurrent": lambda: generate_retnet(retnet, prompt, length, backend=args.backend),
        "retnet_chunkwise": steps["retnet_chunkwise"],
        "transformer_kvcache": lambda: generate_transformer(tf, prompt, length, use_cache=True),
        "maskgit": lambda: generate_maskgit(
            mg, prompt, length, args.vocab, iterations=args.maskgit_iterations
        ),
    }
    if length <= args.nocache_max_total:
        totals["transformer_nocache"] = lambda: generate_transformer(
            tf, prompt, length, use_cache=False
        )
    log(f"L={length}: whole-sequence timing")
    total_ms = {k: timed_total(fn, args) for k, fn in totals.items() if k != "retnet_chunkwise"}
    total_ms["retnet_chunkwise"] = ms["retnet_chunkwise"]
    cache.length = length
    rows = []
    for model in MODELS:
        total = total_ms[model] / 1e3 if model in total_ms else None
        peak = peak_memory(totals[model], device) if model in totals else None
        per_token = ms[model] if model in ms else total_ms[model] / length
        if model == "retnet_chunkwise":
            per_token = ms[model] / length
        state = {"retnet_recurrent": RetNetDecoder.state_bytes(states) / 2**20,
                 "transformer_kvcache": cache.nbytes() / 2**20}.get(model)  # fmt: skip
        rows.append({"model": model, "L": length, "total_s": total, "per_token_ms": per_token,
                     "peak_mem_mb": peak, "state_mb": state})  # fmt: skip
    return rows


def ratios(results: list[dict]) -> list[dict]:
    """Per L and model: total_s and per_token_ms divided by retnet_recurrent's."""
    base = {r["L"]: r for r in results if r["model"] == "retnet_recurrent"}
    out = []
    for r in results:
        b = base[r["L"]]
        row = {"model": r["model"], "L": r["L"]}
        for key in ("total_s", "per_token_ms"):
            ok = r[key] is not None and b[key]
            row[f"{key}_vs_retnet_recurrent"] = r[key] / b[key] if ok else None
        out.append(row)
    return out


def print_table(result: dict) -> None:
    print(f"{'model':>20} {'L':>6} {'total_s':>10} {'per_token_ms':>13} {'state_mb':>9} "
          f"{'x total vs retnet':>18}")  # fmt: skip
    ratio = {(r["model"], r["L"]): r["total_s_vs_retnet_recurrent"] for r in result["ratios"]}

    def fmt(v, spec):
        return format(v, spec) if v is not None else format("-", f">{spec.split('.')[0]}")

    for r in result["results"]:
        print(f"{r['model']:>20} {r['L']:>6} {fmt(r['total_s'], '10.3f')} "
              f"{fmt(r['per_token_ms'], '13.4f')} {fmt(r['state_mb'], '9.3f')} "
              f"{fmt(ratio[(r['model'], r['L'])], '18.2f')}")  # fmt: skip


def plot(result: dict, path: Path) -> None:
    """Log–log: per-token time, whole-sequence time and decoding state against L."""
    fig = Figure(figsize=(15, 4.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    keys = (("per_token_ms", "ms per token"), ("total_s", "seconds for L tokens"),
            ("state_mb", "decoding state (MiB)"))  # fmt: skip
    for ax, (key, label) in zip(axes, keys, strict=True):
        for model in MODELS:
            pts = [(r["L"], r[key]) for r in result["results"] if r["model"] == model]
            pts = [(x, y) for x, y in pts if y is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), STYLES[model], label=model)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L (tokens)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    cfg = result["config"]
    fig.suptitle(f"d_model {cfg['d_model']}, {cfg['layers']} layers, {cfg['heads']} heads, "
                 f"{result['device'].get('gpu') or result['device']['cpu_model']}")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", default="256,512,1024,2048,4096,8192")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--prompt", type=int, default=16, help="caption tokens before the clip")
    parser.add_argument("--maskgit-iterations", type=int, default=8)
    parser.add_argument("--nocache-max-total", type=int, default=1024)
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--backend", choices=("reference", "cpu", "triton", "fla"), default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved CPU timing rounds")
    parser.add_argument("--total-rounds", type=int, default=1, help="runs per whole sequence")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="cpu",
        help="CPU timer: wall or process CPU time (robust on shared cores)",
    )
    parser.add_argument("--min-run-time", type=float, default=0.6, help="CPU seconds per timing")
    args = parser.parse_args(argv)
    try:
        args.lengths = sorted({int(x) for x in args.lengths.split(",") if x.strip()})
    except ValueError:
        parser.error(f"--lengths {args.lengths}: pass comma-separated integers, e.g. 256,512")
    if not args.lengths or args.lengths[0] < 2:
        parser.error(f"--lengths {args.lengths}: need lengths ≥ 2")
    if args.prompt < 1 or args.prompt > args.lengths[0]:
        parser.error(f"--prompt {args.prompt}: need 1 ≤ prompt ≤ the shortest length")
    if args.rounds < 1 or args.total_rounds < 1:
        parser.error(f"--rounds {args.rounds}, --total-rounds {args.total_rounds}: need ≥ 1")
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rounds = args.rounds if device.type == "cpu" else 1
    timer = Timer(device.type, rounds, args.min_run_time / rounds, args.clock,
                  num_threads=args.threads, progress=log)  # fmt: skip
    nets = build(args, device)
    manifest = device_manifest(args.threads)
    started = time.perf_counter()
    results = []
    for length in args.lengths:
        results.extend(bench_length(length, nets, args, device, timer))
    result = {
        "device": manifest,
        "manifest": manifest,
        "config": {k: getattr(args, k) for k in ("d_model", "heads", "layers", "vocab", "prompt",
                   "maskgit_iterations", "nocache_max_total", "backend", "threads", "rounds",
                   "total_rounds", "clock")},
        "results": results,
        "ratios": ratios(results),
    }  # fmt: skip
    result["seconds"] = time.perf_counter() - started
    print_table(result)
    bad = non_finite(results, lambda row, k: (row["model"], row["L"], k))
    if bad:
        raise SystemExit(f"non-finite results: {bad}")
    save_result(result, args.json, args.plot, plot)
    return result


if __name__ == "__main__":
    main()
