"""tasks/opbench/peaks.py: the CPU peak's factors with their sources, the vendor GPU table
and its lookup by device name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tasks.opbench import peaks
from tasks.opbench.peaks import GPU_PEAKS, cpu_theoretical_peak, device_peaks, gpu_entry

FACTORS = ("cores", "vector_bits", "fma_units", "clock_ghz")
DTYPES = ("fp64", "fp32", "tf32", "fp16", "bf16")


def fake_cpu(monkeypatch, tmp_path: Path, flags: str, vendor: str, family: str, mhz: str) -> None:
    """A CPU whose /proc/cpuinfo says ``flags`` and ``mhz``: two cores, no cpufreq."""
    info = {"flags": flags, "vendor_id": vendor, "cpu family": family, "cpu mhz": mhz}
    monkeypatch.setattr(peaks, "_cpuinfo", lambda: info)
    for cpu in (0, 1):
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "core_id").write_text(f"{cpu}\n")
        (topo / "physical_package_id").write_text("0\n")
    monkeypatch.setattr(peaks, "SYS_CPU", tmp_path)


def test_this_cpu_has_every_factor_with_its_source() -> None:
    peak = cpu_theoretical_peak()
    for name in FACTORS:
        factor = peak["factors"][name]
        assert set(factor) == {"value", "source", "uncertain"}
        assert factor["source"], name
    assert peak["factors"]["cores"]["value"] >= 1
    assert peak["factors"]["vector_bits"]["value"] in (64, 128, 256, 512, 1024, 2048)
    assert set(peak["tflops"]) == {"fp64", "fp32", "bf16", "fp16"}
    if peak["tflops"]["fp32"] is not None:
        assert peak["tflops"]["fp64"] == pytest.approx(peak["tflops"]["fp32"] / 2)
    assert peak["virtual_machine"] == any("hypervisor" in u for u in peak["uncertain"])


def test_avx2_cpu_peak_is_the_product_of_its_factors(monkeypatch, tmp_path: Path) -> None:
    fake_cpu(monkeypatch, tmp_path, "sse2 avx avx2 fma", "GenuineIntel", "6", "3000.0")
    peak = cpu_theoretical_peak(cpus=[0, 1])
    values = {k: v["value"] for k, v in peak["factors"].items()}
    assert values == {"cores": 2, "vector_bits": 256, "fma_units": 2, "clock_ghz": 3.0}
    # 2 cores × 8 fp32 lanes × 2 FMA units × 2 FLOPs × 3 GHz = 192 GFLOP/s
    assert peak["tflops"]["fp32"] == pytest.approx(0.192)
    assert peak["tflops"]["fp64"] == pytest.approx(0.096)
    assert peak["tflops"]["bf16"] is None and peak["tflops"]["fp16"] is None
    assert "cpu MHz" in peak["factors"]["clock_ghz"]["source"]
    assert peak["factors"]["fma_units"]["uncertain"]  # no interface exposes it
    assert not peak["virtual_machine"]


def test_zen4_avx512_counts_one_full_width_fma(monkeypatch, tmp_path: Path) -> None:
    flags = "avx2 fma avx512f avx512_bf16 hypervisor"
    fake_cpu(monkeypatch, tmp_path, flags, "AuthenticAMD", "25", "2500")
    peak = cpu_theoretical_peak(cpus=[0, 1])
    assert peak["factors"]["fma_units"]["value"] == 1
    # 2 × 16 × 1 × 2 × 2.5 GHz = 160 GFLOP/s fp32, bf16 twice that
    assert peak["tflops"]["fp32"] == pytest.approx(0.16)
    assert peak["tflops"]["bf16"] == pytest.approx(0.32)
    assert peak["virtual_machine"] and any("virtual machine" in u for u in peak["uncertain"])


def test_overrides_and_thread_limit(monkeypatch, tmp_path: Path) -> None:
    fake_cpu(monkeypatch, tmp_path, "avx2 fma", "GenuineIntel", "6", "3000.0")
    peak = cpu_theoretical_peak(fma_units=1, clock_ghz=2.0, cpus=[0, 1], threads=1)
    assert peak["factors"]["fma_units"] == {
        "value": 1,
        "source": "config opbench.fma_units",
        "uncertain": None,
    }
    assert peak["factors"]["cores"]["value"] == 1
    assert "1 used" in peak["factors"]["cores"]["source"]
    assert peak["tflops"]["fp32"] == pytest.approx(1 * 8 * 1 * 2 * 2.0 / 1e3)


def test_gpu_table_is_complete() -> None:
    names = {entry["name"] for entry in GPU_PEAKS}
    for wanted in ("A100", "H100", "H200", "L40S", "RTX 3090", "RTX 4090", "MI250", "MI300"):
        assert any(wanted in name for name in names), wanted
    for entry in GPU_PEAKS:
        assert set(entry["tflops"]) == set(DTYPES), entry["name"]
        assert entry["memory_gbs"] > 0 and entry["source"] and entry["match"]


@pytest.mark.parametrize(
    ("device_name", "entry"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM5"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA A100-SXM4-80GB", "A100 SXM4 80GB"),
        ("NVIDIA A100 80GB PCIe", "A100 80GB PCIe"),
        ("NVIDIA A100-SXM4-40GB", "A100 40GB"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090"),
        ("AMD Instinct MI250X", "Instinct MI250X"),
        ("AMD Instinct MI300X", "Instinct MI300X"),
        ("NVIDIA GeForce RTX 3090 Ti", None),
        ("Tesla T4", None),
    ],
)
def test_gpu_lookup_by_device_name(device_name: str, entry: str | None) -> None:
    found = gpu_entry(device_name, GPU_PEAKS)
    assert (found["name"] if found else None) == entry


def test_h100_figures_and_unknown_gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    h100 = device_peaks("cuda")
    assert h100["tflops"]["bf16"] == 989.4 and h100["memory_gbs"] == 3350
    assert h100["source"].startswith("NVIDIA H100 datasheet")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    unknown = device_peaks("cuda")
    assert unknown["tflops"] == {} and "gpu_peaks.yaml" in unknown["reason"]


def test_cpu_device_peaks_are_computed() -> None:
    result = device_peaks("cpu")
    assert result["source"] == "computed from this CPU" and result["memory_gbs"] is None
