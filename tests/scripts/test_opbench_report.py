"""scripts/opbench_report.py on two hand-written results: a 2-thread CPU and an H100-like GPU."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.opbench_report import main
from tasks.opbench.results import ceilings

REPO_ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def row(family, op, dtype, params, flops, nbytes, median, frac_measured, frac_theory):
    """A measurement with its throughput computed from the counts and the median time."""
    return {
        "family": family,
        "op": op,
        "dtype": dtype,
        "params": params,
        "flops": flops,
        "bytes": nbytes,
        "intensity": flops / nbytes,
        "time_s": {
            "min": median * 0.9,
            "p20": median * 0.95,
            "median": median,
            "p80": median * 1.05,
            "max": median * 1.2,
        },
        "repeats": 5,
        "tflops": flops / median / 1e12 if flops else None,
        "gbs": nbytes / median / 1e9,
        "fraction_of_measured_peak": frac_measured,
        "fraction_of_theoretical_peak": frac_theory,
        "skipped": None,
    }


def skipped(family, op, dtype, params, reason):
    return {"family": family, "op": op, "dtype": dtype, "params": params, "flops": 1,
            "bytes": 1, "skipped": reason}  # fmt: skip


def gemm(dtype, n, itemsize, median, frac_measured, frac_theory):
    flops, nbytes = 2 * n**3, 3 * n * n * itemsize
    return row("gemm", "square", dtype, {"n": n}, flops, nbytes, median, frac_measured, frac_theory)


def stream(op, n, median, frac):
    flops, nbytes = (0, 2 * n * 4) if op == "copy" else (2 * n, 3 * n * 4)
    return row(
        "bandwidth", op, "fp32", {"n": n, "cache": "cold"}, flops, nbytes, median, frac, None
    )


def cpu_result() -> dict:
    return {
        "manifest": {"cpu_model": "AMD EPYC 7B13", "cpu_cores": 2, "torch": "2.x"},
        "device": {"type": "cpu", "name": "cpu", "threads": 2},
        "peaks": {
            "theoretical": {  # the shape of tasks.opbench.peaks.cpu_theoretical_peak
                "source": "computed from this CPU",
                "tflops": {"fp64": 0.1, "fp32": 0.2, "bf16": None, "fp16": None},
                "memory_gbs": None,
                "formula": "cores × lanes(dtype) × fma_units × 2 × clock_ghz / 1000",
                "factors": {
                    "cores": {"value": 2, "source": "sched_getaffinity", "uncertain": None},
                    "clock_ghz": {"value": 3.1, "source": "cpufreq", "uncertain": "turbo"},
                },
                "lanes": {"fp32": {"value": 16, "source": "512 bits / 32", "uncertain": None}},
                "uncertain": ["clock_ghz: a VM may hide turbo"],
            },
            "measured": {"gemm_fp32_tflops": 0.1, "gemm_fp64_tflops": 0.05, "triad_gbs": 10.0},
        },
        "crosscheck": {
            "gemm_fp32": {"effml_tflops": 0.1, "numpy_tflops": 0.098, "ratio": 1.02},
            "triad": {"effml_gbs": 10.0, "numpy_gbs": 10.5, "ratio": 0.952},
        },
        "measurements": [
            gemm("fp32", 256, 4, 2 * 256**3 / 0.05e12, 0.5, 0.25),
            gemm("fp32", 512, 4, 2 * 512**3 / 0.1e12, 1.0, 0.5),
            gemm("fp64", 512, 8, 2 * 512**3 / 0.05e12, 1.0, 0.5),
            skipped("gemm", "square", "fp16", {"n": 512}, "fp16 GEMM unsupported on cpu"),
            stream("triad", 2**20, 3 * 2**20 * 4 / 10e9, 1.0),
            stream("copy", 2**20, 2 * 2**20 * 4 / 12e9, 1.2),
        ],
    }


def gpu_result() -> dict:
    return {
        "manifest": {"cpu_model": "Intel Xeon", "gpu": "NVIDIA H100 80GB HBM3"},
        "device": {"type": "cuda", "name": "NVIDIA H100 80GB HBM3", "threads": 16},
        "peaks": {
            "theoretical": {  # the shape of tasks.opbench.peaks.device_peaks on a GPU
                "source": "NVIDIA H100 datasheet (SXM, dense)",
                "device_name": "NVIDIA H100 80GB HBM3",
                "tflops": {"fp64": 67.0, "fp32": 67.0, "tf32": 494.7, "fp16": 989.4},
                "memory_gbs": 3350.0,
            },
            "measured": {"gemm_fp16_tflops": 700.0, "gemm_fp32_tflops": 50.0, "triad_gbs": 3000.0},
        },
        "crosscheck": {},
        "measurements": [
            gemm("fp32", 512, 4, 2 * 512**3 / 25e12, 0.5, 25 / 67),
            gemm("fp16", 512, 2, 2 * 512**3 / 700e12, 1.0, 700 / 989.4),
            stream("triad", 2**20, 3 * 2**20 * 4 / 3000e9, 1.0),
            stream("copy", 2**20, 2 * 2**20 * 4 / 2800e9, 2800 / 3000),
        ],
    }


def write_results(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "h100").mkdir()
    cpu, gpu = tmp_path / "cpu" / "opbench.json", tmp_path / "h100" / "opbench.json"
    cpu.write_text(json.dumps(cpu_result()))
    gpu.write_text(json.dumps(gpu_result()))
    return cpu, gpu


def md_rows(text: str, first_cells: str) -> list[list[str]]:
    """The cells of every Markdown table row that starts with ``first_cells``."""
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith(f"| {first_cells} |")
    ]


def test_two_machines_give_pngs_and_a_side_by_side_table(tmp_path):
    cpu, gpu = write_results(tmp_path)
    out = tmp_path / "report"
    written = main([str(cpu), str(gpu), "--out", str(out)])
    names = sorted(p.name for p in written)
    assert names == sorted([
        "throughput_gemm.png", "throughput_bandwidth.png", "comparison.png",
        "roofline_amd_epyc_7b13_2_threads.png", "roofline_nvidia_h100_80gb_hbm3.png",
        "opbench_report.md",
    ])  # fmt: skip
    for path in written:
        assert path.parent == out and path.stat().st_size > 0
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_MAGIC
    text = (out / "opbench_report.md").read_text()

    cpu_label, gpu_label = "AMD EPYC 7B13, 2 threads", "NVIDIA H100 80GB HBM3"
    (cpu_machine,) = md_rows(text, cpu_label)
    assert cpu_machine[4] == "fp64 0.1, fp32 0.2"  # factors (lanes, clock) are not peaks
    assert cpu_machine[6] == "fp64 0.05, fp32 0.1" and cpu_machine[7] == "10"
    assert cpu_machine[8] == "gemm_fp32 ×1.02, triad ×0.952"
    assert "- cores = 2 (sched_getaffinity)" in text
    assert "- uncertain: clock_ghz: a VM may hide turbo" in text
    (gpu_machine,) = md_rows(text, gpu_label)
    assert gpu_machine[4] == "fp64 67, fp32 67, tf32 495, fp16 989" and gpu_machine[5] == "3.35e+03"

    # per machine: median, throughput and both fractions of peak; the skipped case with reason
    fp32_rows = md_rows(text, "gemm | square | fp32 | n=512")
    cpu_row, gpu_row, side_row = fp32_rows  # CPU's table, the GPU's, then side by side
    assert side_row[4:] == ["0.1 TFLOP/s (50.0%)", "25 TFLOP/s (37.3%)"]
    assert cpu_row[4] == "2.68" and cpu_row[6] == "0.1" and cpu_row[9:] == ["100.0%", "50.0%"]
    assert gpu_row[6] == "25" and gpu_row[9:] == ["50.0%", "37.3%"]
    small, _ = md_rows(text, "gemm | square | fp32 | n=256")
    assert small[6] == "0.05" and small[9:] == ["50.0%", "25.0%"]
    (skip,) = md_rows(text, "gemm | square | fp16 | n=512 | fp16 GEMM unsupported on cpu")
    (copy,) = md_rows(text, "bandwidth | copy | fp32 | n=1048576 cache=cold")[:1]
    assert copy[6] == "–" and copy[7] == "12" and copy[9] == "120.0%"

    # side by side: headline peaks and every case, one column per machine
    assert f"| figure | {cpu_label} | {gpu_label} |" in text
    assert md_rows(text, "measured gemm_fp32_tflops") == [
        ["measured gemm_fp32_tflops", "0.1", "50"]
    ]
    assert md_rows(text, "measured gemm_fp16_tflops") == [["measured gemm_fp16_tflops", "–", "700"]]
    assert md_rows(text, "theoretical fp16 TFLOP/s") == [["theoretical fp16 TFLOP/s", "–", "989"]]
    assert ["theoretical GB/s", "–", "3.35e+03"] in md_rows(text, "theoretical GB/s")
    side = md_rows(text, "gemm | square | fp16 | n=512")
    assert ["gemm", "square", "fp16", "n=512", "skipped", "700 TFLOP/s (70.7%)"] in side
    (triad,) = [r for r in md_rows(text, "bandwidth | triad | fp32 | n=1048576 cache=cold")
                if len(r) == 6]  # fmt: skip
    assert triad[4:] == ["10 GB/s (–)", "3e+03 GB/s (–)"]


def test_single_result_as_a_subprocess_defaults_to_its_folder(tmp_path):
    cpu, _ = write_results(tmp_path)
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "opbench_report.py"), str(cpu)],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    folder = cpu.parent
    assert (folder / "opbench_report.md").is_file() and not (folder / "comparison.png").exists()
    assert (folder / "roofline_amd_epyc_7b13_2_threads.png").read_bytes()[:8] == PNG_MAGIC
    assert "Machines side by side" not in (folder / "opbench_report.md").read_text()


def test_same_device_twice_gets_the_run_folder_in_its_label(tmp_path):
    first, _ = write_results(tmp_path)
    (tmp_path / "again").mkdir()
    second = tmp_path / "again" / "opbench.json"
    second.write_text(first.read_text())
    main([str(first), str(second), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "opbench_report.md").read_text()
    assert "| figure | AMD EPYC 7B13, 2 threads [cpu] | AMD EPYC 7B13, 2 threads [again] |" in text


@pytest.mark.parametrize(
    "content,match",
    [
        (None, "no such file"),
        ("{not json", "not readable as JSON"),
        ("[1, 2]", "top level is a list"),
        ('{"device": {}}', "no 'measurements' key"),
        ('{"device": {}, "measurements": [{"family": "gemm", "op": "square"}]}',
         r"measurement 0 \(square\) lacks \['dtype', 'params', 'flops', 'bytes', 'time_s'\]"),
    ],
)  # fmt: skip
def test_bad_file_exits_naming_it(tmp_path, content, match):
    cpu, _ = write_results(tmp_path)
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    with pytest.raises(SystemExit) as info:
        main([str(cpu), str(bad), "--out", str(tmp_path / "out")])
    message = str(info.value.code)
    assert str(bad) in message and "experiment=opbench" in message
    assert re.search(match, message)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_ceilings_read_flat_and_nested_peak_tables():
    assert ceilings({"fp32": 1.0, "memory": {"bandwidth_gbs": 900}}) == ({"fp32": 1.0}, 900.0)
    assert ceilings({"tflops": {"bf16": 312, "fp64": 19.5}, "memory_tbs": 2.0}) == (
        {"bf16": 312.0, "fp64": 19.5},
        2000.0,
    )
    assert ceilings({"fp16": {"tflops": 165.2}, "lanes": {"fp32": 16}}) == ({"fp16": 165.2}, None)
    assert ceilings(None) == ({}, None)
