"""Timing one case, the peaks and roofline fractions, the independent cross-check, and the
result files (``opbench.json`` rewritten atomically after every measurement,
``measurements.csv``).

Fractions of peak use the roofline: a case of intensity I (FLOPs per byte) in precision p can
reach at most ``min(P_p, I · B)``, P_p the compute ceiling of p and B the memory ceiling; the
fraction is the achieved FLOP/s over that bound (for a case without FLOPs, a copy, the
achieved bytes/s over B). The measured ceilings are the best GEMM per precision and the best
triad of the largest arrays (cold cache where measured); the theoretical ones come from
``tasks.opbench.peaks``.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import math
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from effml.errors import OutputDirError
from tasks.bench import CLOCKS, Timer
from tasks.opbench.cases import Case, CaseSkipped
from tasks.opbench.families import bandwidth_cases, gemm_cases
from tasks.opbench.stream_c import stream_triad

QUANTILES = {"min": 0.0, "p20": 0.2, "median": 0.5, "p80": 0.8, "max": 1.0}
CSV_COLUMNS = (
    "family", "op", "dtype", "params", "flops", "bytes", "intensity", "time_min_s",
    "time_p20_s", "time_median_s", "time_p80_s", "time_max_s", "repeats", "tflops", "gbs",
    "fraction_of_measured_peak", "fraction_of_theoretical_peak", "skipped",
)  # fmt: skip


def time_quantiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """min, p20, median, p80, max (seconds) of per-round times in ms (linear interpolation)."""
    values = np.asarray(samples_ms, dtype=np.float64) / 1e3
    return {name: float(np.quantile(values, q)) for name, q in QUANTILES.items()}


def row_of(case: Case, skipped: str | None = None) -> dict:
    """A measurement row with the case's counts; timing fields empty until measured."""
    return {
        "family": case.family,
        "op": case.op,
        "dtype": case.dtype,
        "params": dict(case.params),
        "flops": int(case.flops),
        "bytes": int(case.bytes),
        "intensity": case.intensity,
        "time_s": None,
        "repeats": 0,
        "tflops": None,
        "gbs": None,
        "fraction_of_measured_peak": None,
        "fraction_of_theoretical_peak": None,
        "skipped": skipped,
    }


def measure(case: Case, device: torch.device, timer: Timer) -> dict:
    """Build ``case`` on ``device`` and time it; a ``CaseSkipped`` becomes a skipped row."""
    try:
        fn = case.build(device)
    except CaseSkipped as err:
        return row_of(case, str(err))
    try:
        samples = timer.samples({case.name: fn})[case.name]
    finally:
        del fn
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    row = row_of(case)
    row["time_s"] = time_quantiles(samples)
    row["repeats"] = len(samples)
    median = row["time_s"]["median"]
    row["tflops"] = case.flops / median / 1e12
    row["gbs"] = case.bytes / median / 1e9
    return row


def family_skipped(family: str, reason: str) -> dict:
    """The row recorded when a family yields no cases (e.g. its graph files are absent)."""
    return {**row_of(Case(family, family, "-", {}, 0, 1), reason), "intensity": None}


def measured_peaks(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``gemm_<dtype>_tflops`` (best GEMM per dtype), ``triad_gbs`` and ``copy_gbs``: the best
    of the largest arrays measured, cold cache where measured (STREAM's rule: arrays far
    larger than the caches, so the figure is memory's, not a cache's)."""
    done = [r for r in rows if not r["skipped"] and r["time_s"]]
    peaks: dict[str, float] = {}
    for row in done:
        if row["family"] == "gemm":
            key = f"gemm_{row['dtype']}_tflops"
            peaks[key] = max(peaks.get(key, 0.0), row["tflops"])
    for op in ("triad", "copy"):
        mine = [r for r in done if r["family"] == "bandwidth" and r["op"] == op]
        mine = [r for r in mine if r["params"].get("cache") == "cold"] or mine
        if mine:
            largest = max(r["params"].get("n", 0) for r in mine)
            peaks[f"{op}_gbs"] = max(r["gbs"] for r in mine if r["params"].get("n", 0) == largest)
    return peaks


def roofline_fraction(
    row: Mapping[str, Any], tflops: Mapping[str, float | None], memory_gbs: float | None
) -> float | None:
    """Achieved over ``min(P_dtype, I · B)`` (bytes/s over B without FLOPs); None without a
    ceiling for it."""
    if row["skipped"] or not row["time_s"]:
        return None
    if row["flops"] == 0:
        return row["gbs"] / memory_gbs if memory_gbs else None
    bounds = [tflops.get(row["dtype"])]
    if memory_gbs:
        bounds.append(row["intensity"] * memory_gbs / 1e3)  # FLOP/byte · GB/s → TFLOP/s
    bounds = [b for b in bounds if b]
    return row["tflops"] / min(bounds) if bounds else None


def with_fractions(rows: Sequence[dict], measured: Mapping[str, float], theory: Mapping) -> None:
    """Fill both fractions of every measured row in place."""
    measured_tflops = {
        key[len("gemm_") : -len("_tflops")]: v
        for key, v in measured.items()
        if key.startswith("gemm_")
    }
    for row in rows:
        row["fraction_of_measured_peak"] = roofline_fraction(
            row, measured_tflops, measured.get("triad_gbs")
        )
        row["fraction_of_theoretical_peak"] = roofline_fraction(
            row, theory.get("tflops") or {}, theory.get("memory_gbs")
        )


def write_atomic(path: Path, text: str) -> None:
    """``text`` into ``path`` through a temporary file and a rename (a reader never sees half
    a file; a failed write leaves the previous file)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as err:
        raise OutputDirError(
            f"cannot write {path}: {err.strerror or err}. Point paths.output_dir (or "
            "hydra.run.dir) at a writable folder; the results written so far stay in "
            f"{path.name} if it exists"
        ) from None


def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """The measurement rows as CSV (params as JSON, time quantiles in columns)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = {k: row[k] for k in CSV_COLUMNS if k in row}
        flat["params"] = json.dumps(row["params"], sort_keys=True)
        for name, value in (row["time_s"] or {}).items():
            flat[f"time_{name}_s"] = value
        writer.writerow(flat)
    return out.getvalue()


def save(result: dict, out: Path) -> None:
    """``opbench.json`` and ``measurements.csv`` in ``out``, each atomically."""
    write_atomic(out / "opbench.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    write_atomic(out / "measurements.csv", csv_text(result["measurements"]))


def _plain_seconds(
    fn: Callable[[], object], target_s: float, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Seconds per call of ``fn``: calls in a loop for about ``target_s``, one clock read."""
    start = clock()
    fn()
    once = clock() - start
    calls = max(1, int(target_s / max(once, 1e-9)))
    start = clock()
    for _ in range(calls):
        fn()
    return (clock() - start) / calls


def _cuda_event_seconds(fn: Callable[[], object], target_s: float, clock=None) -> float:
    """Seconds per call of ``fn`` on the current CUDA stream, from CUDA events."""
    fn()
    torch.cuda.synchronize()
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    fn()
    end.record()
    end.synchronize()
    calls = max(1, int(target_s / max(begin.elapsed_time(end) / 1e3, 1e-9)))
    begin.record()
    for _ in range(calls):
        fn()
    end.record()
    end.synchronize()
    return begin.elapsed_time(end) / 1e3 / calls


def _numpy_triad(n: int, threads: int, blocks: int = 2**16) -> Callable[[], None]:
    """STREAM triad a = b + s·c in NumPy on ``threads`` threads (NumPy's ufuncs release the
    GIL), each over its contiguous share in cache-sized blocks (256 KiB of fp32), so that the
    second pass over each block of a stays in cache: memory traffic 3n, as STREAM counts
    (NumPy has no fused multiply-add ufunc, so each block is still passed over twice)."""
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(n, dtype=np.float32) for _ in range(3))
    scalar = np.float32(3.0)

    def share(bounds: tuple[int, int]) -> None:
        for i in range(*bounds, blocks):
            j = min(i + blocks, bounds[1])
            part = a[i:j]
            np.multiply(c[i:j], scalar, out=part)
            np.add(part, b[i:j], out=part)

    return _on_threads(share, n, threads)


def _numpy_add(n: int, threads: int) -> Callable[[], None]:
    """STREAM add a = b + c in NumPy on ``threads`` threads: one pass over the same three
    arrays as the triad (the same bytes moved, one FLOP fewer per element), so its GB/s says
    what the memory delivers to NumPy without the triad's second pass."""
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(n, dtype=np.float32) for _ in range(3))
    return _on_threads(lambda bounds: np.add(b[slice(*bounds)], c[slice(*bounds)],
                                             out=a[slice(*bounds)]), n, threads)  # fmt: skip


def _on_threads(share: Callable[[tuple[int, int]], object], n: int, threads: int):
    """``share`` over ``threads`` contiguous shares of range(n), on a thread pool."""
    from concurrent.futures import ThreadPoolExecutor

    shares = [(t * n // threads, (t + 1) * n // threads) for t in range(threads)]
    if threads == 1:
        return lambda: share(shares[0])
    pool = ThreadPoolExecutor(threads, thread_name_prefix="numpy-triad")
    triad = lambda: list(pool.map(share, shares))  # noqa: E731
    weakref.finalize(triad, pool.shutdown, wait=False)
    return triad


def _interleaved(
    suite: Mapping[str, Callable[[], object]],
    plain: Mapping[str, Callable[[], object]],
    timer: Timer,
    independent: Callable[..., float],
) -> dict[str, float]:
    """Median seconds per call of each ``suite`` closure timed by the suite's timer and of each
    ``plain`` closure timed by ``independent`` (a plain loop, or CUDA events), one round of
    each in turn, so that load from other processes hits them all alike."""
    one_round = Timer(timer.device, 1, timer.round_time, timer.clock, timer.num_threads)
    clock = CLOCKS[timer.clock]
    seconds: dict[str, list[float]] = {name: [] for name in (*suite, *plain)}
    for _ in range(timer.rounds):
        for name, fn in suite.items():
            seconds[name].append(one_round.samples({"op": fn})["op"][0] / 1e3)
        for name, fn in plain.items():
            seconds[name].append(independent(fn, timer.round_time, clock))
    return {name: float(np.median(values)) for name, values in seconds.items()}


def crosscheck(
    device: torch.device, timer: Timer, gemm_size: int, triad_size: int
) -> dict[str, dict]:
    """The suite's fp32 GEMM and triad against an independent measurement of the same
    operation in the same run (``ratio`` = the suite's figure over ``independent_*``; 1 means
    no hidden overhead).

    On a CPU the independent GEMM is NumPy's BLAS and the independent triad STREAM's own C
    loop (``stream_c``; a NumPy triad without a C compiler), each timed in a plain loop with the
    timer's clock on as many threads as torch uses. The suite's GEMM figure is its best over its
    libraries (torch's BLAS and NumPy's, as ``opbench/gemm_fp32_best_tflops``);
    ``library_ratio`` = torch's BLAS over NumPy's (MKL on an AMD CPU is the slower). Also
    reported: ``numpy_triad_ratio`` (NumPy has no fused multiply-add, so its triad passes over
    each block twice and is slower wherever a core, not the memory, is the bottleneck) and
    ``numpy_add_ratio`` (NumPy's one-pass STREAM add, the same bytes). On a GPU: the same torch
    call timed with CUDA events. ``timer_ratio`` = the same torch call in the plain loop over the
    suite's timer: the overhead of the timing alone.
    """
    import threadpoolctl

    threads = torch.get_num_threads()
    libraries = ["torch", "numpy"] if device.type == "cpu" else ["torch"]
    gemms = gemm_cases(
        {"dtypes": ["fp32"], "square": [gemm_size], "llm_tokens": [], "libraries": libraries}
    )
    (triad,) = bandwidth_cases(
        {"dtypes": ["fp32"], "sizes": [triad_size], "ops": ["triad"], "cache": ["warm"]}
    )
    result = {}
    with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
        for key, cases, unit in (("gemm_fp32", gemms, "tflops"), ("triad", [triad], "gbs")):
            suite = {c.params.get("library", "torch"): c.build(device) for c in cases}
            plain = {"torch_plain": suite["torch"]}
            if device.type == "cuda":
                independent, method = _cuda_event_seconds, "torch, CUDA events"
            elif key == "gemm_fp32":
                independent = _plain_seconds
                plain["numpy_plain"] = suite["numpy"]
                method = f"numpy.matmul (NumPy's BLAS), plain loop, {timer.clock} clock"
            else:
                independent = _plain_seconds
                plain["numpy_triad"] = _numpy_triad(triad_size, threads)
                plain["numpy_add"] = _numpy_add(triad_size, threads)
                stream = stream_triad(triad_size, threads)
                if stream is not None:
                    plain["stream_c"] = stream
                    method = f"STREAM's C triad (-O3 -march=native), {threads} threads, plain loop"
                else:
                    method = f"NumPy blocked triad (no C compiler), {threads} threads, plain loop"
                method += f", {timer.clock} clock"
            seconds = _interleaved(suite, plain, timer, independent)
            scale = 1e12 if unit == "tflops" else 1e9
            count = cases[0].flops if unit == "tflops" else cases[0].bytes
            rate = {name: count / s / scale for name, s in seconds.items()}
            effml = max(rate[name] for name in suite)
            reference = next(
                rate[name]
                for name in ("stream_c", "numpy_plain", "numpy_triad", "torch_plain")
                if name in rate
            )
            check = {
                f"effml_{unit}": effml,
                f"independent_{unit}": reference,
                "ratio": effml / reference,
                f"effml_torch_{unit}": rate["torch"],
                # the same torch call in the independent loop: the suite's timer overhead alone
                f"plain_loop_{unit}": rate["torch_plain"],
                "timer_ratio": seconds["torch_plain"] / seconds["torch"],
                "size": cases[0].params,
                "independent": method,
            }
            if "numpy" in suite:  # torch's BLAS against NumPy's
                check[f"effml_numpy_{unit}"] = rate["numpy"]
                check["library_ratio"] = rate["torch"] / rate["numpy_plain"]
            for name, label in (("numpy_plain", "numpy"), ("numpy_triad", "numpy_triad"),
                                ("numpy_add", "numpy_add"), ("stream_c", "stream_c")):  # fmt: skip
                if name in rate:
                    check[f"{label}_{unit}"] = rate[name]
                    check[f"{label}_ratio"] = effml / rate[name]
            result[key] = check
            del suite, plain
            gc.collect()
    return result


def finite_or_none(value: Any) -> Any:
    """NaN and infinities as None (the JSON stays strict)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return value
