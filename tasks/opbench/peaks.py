"""A device's theoretical peaks: computed for CPUs, a vendor table for GPUs.

CPU (per precision, TFLOP/s) = cores × vector lanes of that precision × FMA units per core × 2
(an FMA is two FLOPs) × clock, each factor read from this machine and returned with where it
came from (``os.sched_getaffinity``, the ``/sys`` CPU topology, ``/proc/cpuinfo`` flags,
``/sys`` cpufreq or ``/proc/cpuinfo`` MHz) and what is uncertain about it. The FMA unit count
is not exposed by any interface: it comes from the vendor and CPU family, and is the factor
most worth overriding (``fma_units=``) when the datasheet says otherwise.

GPU: the vendor figures of ``conf/opbench/gpu_peaks.yaml`` (dense, boost clock), matched on
``torch.cuda.get_device_name``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from tasks.bench.manifest import _cpuinfo

GPU_PEAKS_FILE = Path(__file__).resolve().parents[2] / "conf" / "opbench" / "gpu_peaks.yaml"
SYS_CPU = Path("/sys/devices/system/cpu")
SVE_LENGTH = Path("/proc/sys/abi/sve_default_vector_length")
DTYPE_BITS = {"fp64": 64, "fp32": 32, "bf16": 16, "fp16": 16}
VM_NOTE = (
    "on a virtual machine the vCPUs may be hyperthreads sharing one core's FMA units, and the "
    "reported clock is the host's nominal one, not the all-core turbo"
)


def _factor(value: Any, source: str, uncertain: str | None = None) -> dict:
    return {"value": value, "source": source, "uncertain": uncertain}


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cores(cpus: Sequence[int]) -> dict:
    """Physical cores among the CPUs this process may use (SMT siblings counted once)."""
    cores = set()
    for cpu in cpus:
        topo = SYS_CPU / f"cpu{cpu}" / "topology"
        core, package = _read(topo / "core_id"), _read(topo / "physical_package_id")
        if core is None or package is None:
            return _factor(
                len(cpus),
                f"os.sched_getaffinity(0): {len(cpus)} CPUs (no /sys topology: SMT unknown)",
                "SMT siblings, if any, are counted as cores",
            )
        cores.add((package, core))
    return _factor(
        len(cores),
        f"os.sched_getaffinity(0): {len(cpus)} CPUs on {len(cores)} distinct "
        "(physical_package_id, core_id) in /sys/devices/system/cpu/cpu*/topology",
        None,
    )


def _vector_bits(flags: set[str]) -> dict:
    """The widest floating-point vector register the CPU executes, in bits."""
    if "avx512f" in flags:
        return _factor(512, "/proc/cpuinfo flag avx512f")
    if "avx2" in flags or "avx" in flags:
        return _factor(256, "/proc/cpuinfo flag " + ("avx2" if "avx2" in flags else "avx"))
    if "sve" in flags:
        length = _read(SVE_LENGTH)
        if length and length.isdigit():
            return _factor(8 * int(length), f"{SVE_LENGTH} ({length} bytes)")
        return _factor(128, "/proc/cpuinfo flag sve", f"{SVE_LENGTH} unreadable: SVE >= 128 bits")
    if flags & {"asimd", "neon", "sse2"}:
        return _factor(128, "/proc/cpuinfo flag " + sorted(flags & {"asimd", "neon", "sse2"})[0])
    return _factor(64, "no vector flag in /proc/cpuinfo", "scalar floating point assumed")


def _fma_units(info: Mapping[str, str], flags: set[str], bits: int) -> dict:
    """FMA pipes of the full vector width per core: from vendor and family (no interface)."""
    vendor, family = info.get("vendor_id", ""), info.get("cpu family", "")
    if "fma" not in flags and not flags & {"asimd", "neon", "sve"}:
        return _factor(1, "no fma flag: one multiply and one add per cycle counted as 1 FMA", None)
    if vendor == "AuthenticAMD" and family.isdigit():
        fam = int(family)
        if fam == 25 and bits == 512:  # Zen 4: AVX-512 on two 256-bit pipes
            return _factor(1, "AMD family 25 (Zen 4): 512-bit ops double-pumped on 2×256-bit")
        if fam >= 26:
            return _factor(
                2,
                f"AMD family {fam} (Zen 5): two 512-bit FMA pipes",
                "client Zen 5 parts (and some EPYC SKUs) run 512-bit ops on 256-bit pipes",
            )
        return _factor(2, f"AMD family {fam}: two FMA pipes", "Zen 1 pipes are 128 bits wide")
    if vendor == "GenuineIntel":
        return _factor(
            2,
            f"Intel ({bits}-bit vectors): two FMA ports",
            "Xeon Bronze/Silver and some Gold 5xxx have one 512-bit FMA unit",
        )
    return _factor(2, f"vendor {vendor or 'unknown'}: two FMA pipes assumed", "not in any table")


def _clock_ghz(info: Mapping[str, str]) -> dict:
    """The highest clock the kernel reports: cpufreq max, else /proc/cpuinfo's MHz."""
    max_khz = _read(SYS_CPU / "cpu0" / "cpufreq" / "cpuinfo_max_freq")
    if max_khz and max_khz.isdigit():
        return _factor(
            int(max_khz) / 1e6,
            "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq",
            "the single-core turbo: all cores under AVX load run lower",
        )
    mhz = info.get("cpu mhz")
    if mhz:
        return _factor(
            float(mhz) / 1e3,
            "/proc/cpuinfo 'cpu MHz' (no cpufreq)",
            "the current or nominal clock: turbo may be higher, AVX-512 clocks lower",
        )
    return _factor(None, "no cpufreq and no 'cpu MHz' in /proc/cpuinfo", "pass clock_ghz=")


def _lanes(flags: set[str], bits: int) -> dict[str, dict]:
    """FMA lanes per vector instruction, per precision (None: no native arithmetic)."""
    lanes = {
        "fp64": _factor(bits // 64 or 1, f"{bits} bits / 64"),
        "fp32": _factor(bits // 32 or 1, f"{bits} bits / 32"),
    }
    if "avx512_bf16" in flags or "bf16" in flags:
        lanes["bf16"] = _factor(
            bits // 16, f"{bits} bits / 16 (bf16 dot-product instructions)", None
        )
    else:
        lanes["bf16"] = _factor(None, "no avx512_bf16/bf16 flag: bf16 is computed in fp32")
    if "avx512_fp16" in flags or "fphp" in flags:
        lanes["fp16"] = _factor(bits // 16, f"{bits} bits / 16 (native fp16 FMA)")
    else:
        lanes["fp16"] = _factor(None, "no avx512_fp16/fphp flag: fp16 is computed in fp32")
    if "amx_bf16" in flags:
        lanes["bf16"]["uncertain"] = "AMX tiles are present and not counted: bf16 peak is higher"
    return lanes


def cpu_theoretical_peak(
    fma_units: int | None = None,
    clock_ghz: float | None = None,
    cpus: Sequence[int] | None = None,
    threads: int | None = None,
) -> dict:
    """This CPU's theoretical peak per precision, every factor with its source.

    Args:
        fma_units: override of the FMA units per core (the one factor no interface exposes).
        clock_ghz: override of the clock.
        cpus: the CPU ids counted (default ``os.sched_getaffinity(0)``).
        threads: the threads the benchmark runs (fewer than the cores: the peak of that many).

    Returns:
        ``{"tflops": {dtype: TFLOP/s or None}, "memory_gbs": None, "formula": str,
        "factors": {"cores", "vector_bits", "fma_units", "clock_ghz": {"value", "source",
        "uncertain"}}, "lanes": {dtype: factor}, "virtual_machine": bool, "uncertain": [str]}``.
    """
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("features") or "").split())
    if cpus is None:
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        cpus = cpus or list(range(os.cpu_count() or 1))
    bits = _vector_bits(flags)
    factors = {
        "cores": _cores(cpus),
        "vector_bits": bits,
        "fma_units": _fma_units(info, flags, bits["value"]),
        "clock_ghz": _clock_ghz(info),
    }
    cores = factors["cores"]
    if threads is not None and threads < cores["value"]:
        cores["source"] += f"; {threads} used (the benchmark's torch thread count)"
        cores["value"] = threads
    if fma_units is not None:
        factors["fma_units"] = _factor(fma_units, "config opbench.fma_units")
    if clock_ghz is not None:
        factors["clock_ghz"] = _factor(clock_ghz, "config opbench.clock_ghz")
    lanes = _lanes(flags, bits["value"])
    clock = factors["clock_ghz"]["value"]
    per_core = factors["fma_units"]["value"] * 2 * (clock or 0.0) / 1e3  # TFLOP/s per lane
    tflops = {
        dtype: (
            factors["cores"]["value"] * lane["value"] * per_core
            if lane["value"] and clock
            else None
        )
        for dtype, lane in lanes.items()
    }
    virtual = "hypervisor" in flags
    uncertain = [
        f"{k}: {f['uncertain']}" for k, f in {**factors, **lanes}.items() if f["uncertain"]
    ]
    if virtual:
        uncertain.append("virtual machine (hypervisor flag): " + VM_NOTE)
    return {
        "tflops": tflops,
        "memory_gbs": None,
        "memory_note": "no interface gives the DRAM bandwidth: the measured triad is the ceiling",
        "formula": "cores × lanes(dtype) × fma_units × 2 × clock_ghz / 1000",
        "cpu_model": info.get("model name"),
        "factors": factors,
        "lanes": lanes,
        "virtual_machine": virtual,
        "uncertain": uncertain,
    }


def load_gpu_peaks(path: Path = GPU_PEAKS_FILE) -> list[dict]:
    """The vendor table: a list of ``{"name", "match", "tflops", "memory_gbs", "source"}``."""
    return list(yaml.safe_load(path.read_text())["devices"])


GPU_PEAKS: list[dict] = load_gpu_peaks()


def gpu_entry(name: str, gpu_table: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The first entry whose ``match`` substrings all occur in ``name`` and none of whose
    ``exclude`` substrings do (case-insensitive)."""
    lowered = name.lower()
    for entry in gpu_table:
        found = all(part.lower() in lowered for part in entry["match"])
        if found and not any(part.lower() in lowered for part in entry.get("exclude") or ()):
            return entry
    return None


def device_peaks(
    device: torch.device | str,
    gpu_table: Sequence[Mapping[str, Any]] = GPU_PEAKS,
    fma_units: int | None = None,
    clock_ghz: float | None = None,
    threads: int | None = None,
) -> dict:
    """The theoretical peaks of ``device``: computed on a CPU, from ``gpu_table`` on a GPU.

    Returns:
        ``{"source", "tflops": {dtype: TFLOP/s or None}, "memory_gbs", ...}``; a GPU missing
        from the table gives empty figures and a ``reason`` that says how to add it.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return {
            "source": "computed from this CPU",
            **cpu_theoretical_peak(fma_units, clock_ghz, threads=threads),
        }
    name = torch.cuda.get_device_name(device)
    entry = gpu_entry(name, gpu_table)
    if entry is None:
        return {
            "source": None,
            "device_name": name,
            "tflops": {},
            "memory_gbs": None,
            "reason": f"{name!r} is not in conf/opbench/gpu_peaks.yaml: add an entry with its "
            "vendor figures (match: substrings of the device name)",
        }
    return {
        "source": entry["source"],
        "device_name": name,
        "table_entry": entry["name"],
        "tflops": {k: (None if v is None else float(v)) for k, v in entry["tflops"].items()},
        "memory_gbs": float(entry["memory_gbs"]),
    }
