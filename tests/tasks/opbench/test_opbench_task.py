"""tasks/opbench/task.py through the composed config: opbench.json with the schema,
measurements.csv and metrics.json; bad families and dtypes fail before any measurement; a
skipped case is recorded and the run goes on; a crash keeps what was measured; the CUDA code
paths where a GPU is present."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import compose_cfg

from effml.errors import ConfigError, OutputDirError
from tasks.core import run_task
from tasks.opbench import families as families_module
from tasks.opbench.cases import Case, CaseSkipped
from tasks.opbench.families import gemm_cases
from tasks.opbench.runner import CSV_COLUMNS, QUANTILES

EXPERIMENT = "opbench_quick"
ROW_KEYS = {
    "family", "op", "dtype", "params", "flops", "bytes", "intensity", "time_s", "repeats",
    "tflops", "gbs", "fraction_of_measured_peak", "fraction_of_theoretical_peak", "skipped",
}  # fmt: skip
requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU: the CUDA paths run only there"
)


def opbench_cfg(tmp_path: Path, cache_dir: Path, *overrides: str):
    """The quick experiment at its smoke setting, the run folder in tmp_path."""
    chosen = compose_cfg([f"experiment={EXPERIMENT}"])
    return compose_cfg(
        [
            f"experiment={EXPERIMENT}",
            *chosen.smoke_overrides,
            "logger=csv",
            f"paths.output_dir={tmp_path}",
            f"paths.cache_dir={cache_dir}",
            *overrides,
        ]
    )


def result_of(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "opbench.json").read_text())


def tiny_gemm(n: int = 16) -> Case:
    (case,) = [c for c in gemm_cases({"dtypes": ["fp32"], "square": [n], "llm_tokens": [1]})
               if c.op == "gemm_square"]  # fmt: skip
    return case


def test_smoke_run_writes_json_csv_and_metrics(tmp_path: Path, cache_dir: Path) -> None:
    cfg = opbench_cfg(tmp_path, cache_dir)
    assert not {"datamodule", "model", "trainer", "callbacks"} & set(cfg)
    value = run_task(cfg)
    result = result_of(tmp_path)
    assert set(result) >= {"manifest", "device", "peaks", "crosscheck", "measurements"}
    assert result["device"] == {
        "type": "cpu",
        "name": result["peaks"]["theoretical"]["cpu_model"],
        "threads": 1,
    }
    assert result["manifest"]["torch_threads"] == 1
    theory = result["peaks"]["theoretical"]
    assert set(theory["factors"]) == {"cores", "vector_bits", "fma_units", "clock_ghz"}
    measured = result["peaks"]["measured"]
    assert set(measured) == {"gemm_fp32_tflops", "triad_gbs", "copy_gbs"}
    for key, unit in (("gemm_fp32", "tflops"), ("triad", "gbs")):
        check = result["crosscheck"][key]
        assert check["ratio"] == pytest.approx(
            check[f"effml_{unit}"] / check[f"independent_{unit}"]
        )
        assert check["timer_ratio"] == pytest.approx(
            check[f"effml_torch_{unit}"] / check[f"plain_loop_{unit}"]
        )
    gemm, triad = result["crosscheck"]["gemm_fp32"], result["crosscheck"]["triad"]
    # the suite's GEMM figure is the better of its two BLAS libraries
    assert gemm["effml_tflops"] == max(gemm["effml_torch_tflops"], gemm["effml_numpy_tflops"])
    assert gemm["library_ratio"] == pytest.approx(gemm["effml_torch_tflops"] / gemm["numpy_tflops"])
    assert gemm["independent_tflops"] == gemm["numpy_tflops"]
    # the triad's reference is STREAM's C loop (a C compiler is part of the set-up)
    assert triad["independent_gbs"] == triad["stream_c_gbs"] and "STREAM" in triad["independent"]
    assert triad["numpy_add_ratio"] == pytest.approx(triad["effml_gbs"] / triad["numpy_add_gbs"])
    rows = result["measurements"]
    # (1 square GEMM + 3 LLM projections at 1 token) × (torch, numpy), copy and triad
    assert len(rows) == 10 and all(set(row) == ROW_KEYS for row in rows)
    libraries = [row["params"]["library"] for row in rows if row["family"] == "gemm"]
    assert libraries == ["torch", "numpy"] * 4
    for row in rows:
        assert row["skipped"] is None and row["repeats"] == 1
        assert set(row["time_s"]) == set(QUANTILES)
        assert row["tflops"] == pytest.approx(row["flops"] / row["time_s"]["median"] / 1e12)
        assert row["gbs"] == pytest.approx(row["bytes"] / row["time_s"]["median"] / 1e9)
        assert row["intensity"] == pytest.approx(row["flops"] / row["bytes"])
        assert row["fraction_of_measured_peak"] > 0
    triad = next(r for r in rows if r["op"] == "triad")
    assert triad["gbs"] == measured["triad_gbs"]
    assert triad["fraction_of_measured_peak"] == pytest.approx(1.0)
    with (tmp_path / "measurements.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 10 and tuple(table[0]) == CSV_COLUMNS
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert value == metrics["opbench/gemm_fp32_best_tflops"] == measured["gemm_fp32_tflops"]
    assert metrics["opbench/triad_gbs"] == measured["triad_gbs"]
    assert {"opbench/copy_gbs", "opbench/crosscheck_gemm_fp32_ratio",
            "opbench/crosscheck_triad_ratio", "opbench/crosscheck_triad_timer_ratio",
            "opbench/crosscheck_gemm_fp32_library_ratio",
            "opbench/crosscheck_triad_numpy_add_ratio",
            "opbench/measured"} <= set(metrics)  # fmt: skip


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("opbench.families=[gemm,fft]", "opbench.families=[gemm, fft]: unknown ['fft']; choose"),
        ("opbench.dtypes=[fp8]", "opbench.dtypes=[fp8]: unknown ['fp8']; choose from"),
        ("opbench.gemm.dtypes=[fp32,int4]", "opbench.gemm.dtypes=[fp32, int4]: unknown"),
        ("opbench.rounds=0", "opbench.rounds=0: must be >= 1"),
        ("opbench.device=tpu", "opbench.device=tpu: choose one of"),
        ("opbench.threads=2", "opbench.clock=cpu: sums the CPU time of every thread"),
        ("opbench.gemm.libraries=[torch,cublas]", "opbench.gemm.libraries=[torch, cublas]: choose"),
    ],
)
def test_bad_settings_fail_before_measuring(
    tmp_path: Path, cache_dir: Path, override: str, message: str
) -> None:
    cfg = opbench_cfg(tmp_path, cache_dir, override)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as err:
        run_task(cfg)
    if "families" in override:
        assert "'gemm', 'conv', 'spmm', 'attention', 'bandwidth'" in str(err.value)
    if "dtypes" in override:
        assert "'fp64', 'fp32', 'tf32', 'fp16', 'bf16'" in str(err.value)
    assert not (tmp_path / "opbench.json").exists()


def test_skipped_case_is_recorded_and_the_run_goes_on(
    tmp_path: Path, cache_dir: Path, monkeypatch
) -> None:
    def too_big(device, dtype):
        raise CaseSkipped("needs 9.00 GiB but cpu has 1.00 GiB free: a smaller size fits")

    big = Case("gemm", "gemm_square", "fp32", {"m": 9}, 1, 1, make=too_big)
    monkeypatch.setitem(families_module.FAMILIES, "gemm", lambda cfg: [big, tiny_gemm()])
    cfg = opbench_cfg(tmp_path, cache_dir, "opbench.gemm.dtypes=[tf32,fp32]")
    run_task(cfg)
    rows = result_of(tmp_path)["measurements"]
    assert rows[0]["skipped"].startswith("needs 9.00 GiB") and rows[0]["time_s"] is None
    assert rows[0]["tflops"] is None and rows[1]["skipped"] is None and rows[1]["tflops"] > 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["opbench/skipped"] == 1.0


def test_tf32_on_cpu_is_skipped_with_the_reason(tmp_path: Path, cache_dir: Path) -> None:
    cfg = opbench_cfg(
        tmp_path, cache_dir, "opbench.dtypes=[tf32,fp32]", "opbench.gemm.dtypes=[tf32,fp32]"
    )
    run_task(cfg)
    rows = result_of(tmp_path)["measurements"]
    tf32 = [r for r in rows if r["dtype"] == "tf32"]
    assert tf32 and all("TF32 is a CUDA tensor-core mode" in r["skipped"] for r in tf32)


def test_a_crash_keeps_the_measurements_made(tmp_path: Path, cache_dir: Path, monkeypatch) -> None:
    def crash(device, dtype):
        def call():
            raise RuntimeError("kernel fault in case 2")

        return call

    broken = Case("gemm", "gemm_square", "fp32", {"m": 2}, 1, 1, make=crash)
    monkeypatch.setitem(families_module.FAMILIES, "gemm", lambda cfg: [tiny_gemm(), broken])
    cfg = opbench_cfg(tmp_path, cache_dir)
    with pytest.raises(RuntimeError, match="kernel fault in case 2"):
        run_task(cfg)
    rows = result_of(tmp_path)["measurements"]
    assert len(rows) == 1 and rows[0]["params"] == {"m": 16, "n": 16, "k": 16, "library": "torch"}
    assert rows[0]["tflops"] > 0 and result_of(tmp_path)["crosscheck"]["triad"]["ratio"] > 0


def test_unwritable_result_file_is_a_clear_error(tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "opbench.json").mkdir()  # a folder where the file goes: no write succeeds
    cfg = opbench_cfg(tmp_path, cache_dir)
    with pytest.raises(OutputDirError, match="cannot write .*opbench.json.*writable folder"):
        run_task(cfg)


@requires_cuda
def test_cuda_paths(tmp_path: Path, cache_dir: Path) -> None:
    cfg = opbench_cfg(
        tmp_path,
        cache_dir,
        "opbench.device=cuda",
        "opbench.dtypes=[fp32,tf32,bf16]",
        "opbench.gemm.dtypes=[fp32,tf32,bf16]",
        "opbench.families=[gemm,attention,bandwidth]",
        "opbench.attention.dtypes=[bf16]",
        "opbench.attention.seq_lens=[128]",
        "opbench.attention.heads=2",
        "opbench.attention.head_dims=[64]",
        "opbench.attention.causal=[false,true]",
        "opbench.attention.backends=[default,math]",
    )
    run_task(cfg)
    result = result_of(tmp_path)
    assert result["device"]["type"] == "cuda"
    assert result["device"]["name"] == torch.cuda.get_device_name()
    theory = result["peaks"]["theoretical"]
    assert theory["tflops"] or "gpu_peaks.yaml" in theory["reason"]
    assert result["crosscheck"]["gemm_fp32"]["independent"] == "torch, CUDA events"
    rows = result["measurements"]
    done = {r["dtype"] for r in rows if r["family"] == "gemm" and not r["skipped"]}
    major, _ = torch.cuda.get_device_capability()
    if major >= 8 and torch.version.hip is None:
        assert {"fp32", "tf32", "bf16"} <= done
    measured = result["peaks"]["measured"]
    assert all(f"gemm_{d}_tflops" in measured for d in done)
    assert any(r["family"] == "attention" and not r["skipped"] for r in rows)
    assert not torch.backends.cuda.matmul.allow_tf32  # restored after the tf32 cases
