"""The operator benchmark task (arXiv:2311.04417's study on this machine): GEMM, convolution,
SpMM, attention and memory bandwidth across precisions and sizes, against the roofline.

    python run.py experiment=opbench_quick                  # minutes on a laptop CPU
    python run.py experiment=opbench                        # the full suite
    python run.py experiment=opbench opbench.families=[gemm,bandwidth] opbench.device=cuda

No datamodule, model or trainer. The settings are the top-level ``opbench:`` block (families
and their sizes from ``conf/opbench/``). Every case of ``tasks.opbench.families.FAMILIES`` is
timed with ``tasks.bench.Timer`` (interleaved rounds on a CPU, ``triton.testing.do_bench`` on
a GPU); ``opbench.json`` (the schema of ``tasks/opbench/runner.py``) and ``measurements.csv``
are rewritten after every measurement, so a crash keeps what was measured; a case that does
not fit or whose dtype the device lacks is recorded with the reason and the run goes on.
The report of ``tasks/opbench/report.py`` (throughput and roofline PNGs, a Markdown table) is
drawn into the run folder at the end. ``metrics.json`` gets the headline figures
(``opbench/gemm_<dtype>_best_tflops``, ``opbench/triad_gbs``, ``opbench/copy_gbs``, the
cross-check ratios, the theoretical peaks).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import threadpoolctl
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from effml.checks import check_choice, check_int, check_range
from effml.errors import ConfigError, MissingDataError, OutputDirError
from tasks.bench import CLOCKS, Timer, device_manifest
from tasks.bench.timing import DEVICES
from tasks.core import optimized_value, update_metrics_json
from tasks.opbench import runner
from tasks.opbench.cases import DTYPES, Case
from tasks.opbench.families import FAMILIES
from tasks.opbench.peaks import GPU_PEAKS, device_peaks
from tasks.opbench.report import report
from tasks.opbench.results import load_results

log = logging.getLogger(__name__)


def check_opbench(cfg: DictConfig, spec: DictConfig | None = None) -> None:
    """The ``opbench`` block, before anything is measured: known families and dtypes (global
    and per family), device and clock choices, positive rounds, round time, threads and
    cross-check sizes, plausible CPU peak overrides."""
    block = cfg.get("opbench")
    if block is None:
        raise ConfigError("opbench", None, "is missing", fix="Use experiment=opbench_quick")
    try:
        check_settings(block)
    except ConfigError as err:
        raise err.with_prefix("opbench.") from None


def _check_names(key: str, values: Any, valid: Mapping, example: list) -> None:
    names = list(values or [])
    unknown = [v for v in names if v not in valid]
    if unknown or not names:
        problem = f"unknown {unknown}" if unknown else "is empty"
        raise ConfigError(key, names, f"{problem}; choose from {list(valid)}", example=example)


def check_settings(block: Mapping[str, Any]) -> None:
    """The ``opbench`` block's rules with bare keys (see :func:`check_opbench`)."""
    _check_names("families", block.get("families"), FAMILIES, ["gemm", "bandwidth"])
    if block.get("dtypes") is not None:
        _check_names("dtypes", block.get("dtypes"), DTYPES, ["fp32", "bf16"])
    for family in block.families:
        settings = block.get(family) or {}
        if settings.get("dtypes") is not None:
            _check_names(f"{family}.dtypes", settings.get("dtypes"), DTYPES, ["fp32"])
    check_choice(block, "device", ("auto", *DEVICES))
    check_choice(block, "clock", CLOCKS)
    check_int(block, "threads", minimum=1, example=1)
    check_int(block, "rounds", minimum=1, example=5)
    if block.get("clock") == "cpu" and block.get("device") != "cuda" and block.get("threads") != 1:
        raise ConfigError(
            "clock", "cpu", f"sums the CPU time of every thread, so with threads="
            f"{block.get('threads')} a figure would be per core-second, not per second",
            fix="Use opbench.threads=1 with opbench.clock=cpu, or opbench.clock=wall",
        )  # fmt: skip
    check_range(block, "round_time", 0.0, None, low_open=True, example=0.2)
    check_int(block, "fma_units", minimum=1, maximum=8, example=2)
    check_range(block, "clock_ghz", 0.0, 10.0, low_open=True, example=2.5)
    cross = block.get("crosscheck")
    if cross is not None:
        for key in ("gemm_size", "triad_size"):
            if cross.get(key) is None:
                raise ConfigError(f"crosscheck.{key}", None, "is missing", example=1024)
            check_int(cross, key, minimum=1, example=1024)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("opbench.device", name, "no CUDA/ROCm GPU is visible", example="auto")
    return torch.device(name)


def build_cases(block: DictConfig) -> tuple[list[Case], list[dict]]:
    """Every case of the chosen families (filtered by ``opbench.dtypes``), and a skipped row
    for each family whose data is absent."""
    keep = set(block.dtypes) if block.get("dtypes") is not None else set(DTYPES)
    cases, skipped = [], []
    for family in block.families:
        settings = OmegaConf.to_container(block.get(family) or {}, resolve=True)
        try:
            made = FAMILIES[family](settings)
        except MissingDataError as err:
            log.warning("skipping family %s: %s", family, err)
            skipped.append(runner.family_skipped(family, str(err)))
            continue
        cases += [case for case in made if case.dtype in keep]
    return cases, skipped


def _gpu_table(block: DictConfig) -> list:
    table = block.get("gpu_peaks")
    if table is None:
        return GPU_PEAKS
    return list(OmegaConf.to_container(table, resolve=True)["devices"])


def _metrics(result: dict) -> dict[str, float]:
    measured = result["peaks"]["measured"]
    theory = result["peaks"]["theoretical"].get("tflops") or {}
    metrics: dict[str, float] = {}
    for key, value in measured.items():
        name = key.replace("_tflops", "_best_tflops") if key.startswith("gemm_") else key
        metrics[f"opbench/{name}"] = value
        dtype = key[len("gemm_") : -len("_tflops")] if key.startswith("gemm_") else None
        if dtype and theory.get(dtype):
            metrics[f"opbench/gemm_{dtype}_fraction_of_theoretical"] = value / theory[dtype]
    for dtype, value in theory.items():
        if value:
            metrics[f"opbench/theoretical_{dtype}_tflops"] = value
    memory = result["peaks"]["theoretical"].get("memory_gbs")
    if memory and "triad_gbs" in measured:
        metrics["opbench/triad_fraction_of_theoretical"] = measured["triad_gbs"] / memory
    for key, check in result["crosscheck"].items():
        metrics[f"opbench/crosscheck_{key}_ratio"] = check["ratio"]
        for extra in ("timer_ratio", "library_ratio", "numpy_triad_ratio", "numpy_add_ratio"):
            if check.get(extra) is not None:
                metrics[f"opbench/crosscheck_{key}_{extra}"] = check[extra]
    rows = result["measurements"]
    metrics["opbench/measured"] = float(sum(1 for r in rows if not r["skipped"]))
    metrics["opbench/skipped"] = float(sum(1 for r in rows if r["skipped"]))
    return metrics


def opbench(cfg: DictConfig) -> float | None:
    """Run the suite of ``cfg.opbench``; opbench.json, measurements.csv and metrics.json."""
    block = cfg.opbench
    device = _device(block.device)
    if block.threads:
        torch.set_num_threads(block.threads)
    threads = torch.get_num_threads()
    timer = Timer(device.type, block.rounds, block.round_time, block.clock, threads)
    out = Path(cfg.paths.output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputDirError(
            f"cannot create the run folder {out}: {err.strerror or err}. Point "
            "paths.output_dir (or hydra.run.dir) at a writable folder"
        ) from None
    try:  # a bad family setting fails before anything is written or measured
        cases, rows = build_cases(block)
    except ConfigError as err:
        raise err.with_prefix("opbench.") from None
    theory = device_peaks(
        device, _gpu_table(block), block.get("fma_units"), block.get("clock_ghz"), threads
    )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else theory["cpu_model"]
    result: dict[str, Any] = {
        "manifest": device_manifest(threads),
        "device": {"type": device.type, "name": name, "threads": threads},
        "peaks": {"theoretical": theory, "measured": {}},
        "crosscheck": {},
        "settings": OmegaConf.to_container(block, resolve=True),
        "measurements": [],
    }
    result["settings"].pop("gpu_peaks", None)
    runner.save(result, out)  # an unwritable folder fails here, before any measurement
    log.info("theoretical peaks (%s): %s", theory["source"], theory["tflops"])
    if block.get("crosscheck") is not None:
        result["crosscheck"] = runner.crosscheck(
            device, timer, block.crosscheck.gemm_size, block.crosscheck.triad_size
        )
        for key, check in result["crosscheck"].items():
            log.info("crosscheck %s: %s", key, {k: v for k, v in check.items() if k != "size"})
        runner.save(result, out)
    result["measurements"] = rows
    # NumPy's BLAS (the gemm family's numpy library) on as many threads as torch
    with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
        bar = tqdm(cases, desc="opbench", unit="case", file=sys.stderr, dynamic_ncols=True)
        for case in bar:
            bar.set_postfix_str(case.name[:60])
            rows.append(runner.measure(case, device, timer))
            result["peaks"]["measured"] = runner.measured_peaks(rows)
            runner.with_fractions(rows, result["peaks"]["measured"], theory)
            runner.save(runner.finite_or_none(result), out)
        bar.close()
    for row in rows:
        if row["skipped"]:
            log.info("skipped %s %s %s: %s", row["op"], row["dtype"], row["params"], row["skipped"])
    written = report(load_results([out / "opbench.json"]), out)
    log.info("Report: %s", ", ".join(path.name for path in written))
    metrics = _metrics(result)
    update_metrics_json(out, metrics)
    for key, value in sorted(metrics.items()):
        log.info("%s = %.4g", key, value)
    return optimized_value(metrics, cfg.get("optimized_metric"))


opbench.check_config = check_opbench
