"""What machine a benchmark ran on: CPU, vector ISA, GPU, library versions (no host name)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

# The vector extensions that decide which kernels a CPU runs (x86 and Arm), in /proc/cpuinfo
# spelling; the manifest lists the ones present, in this order.
VECTOR_ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "neon",
    "asimd",
    "sve",
    "sve2",
)
CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo() -> dict[str, str]:
    """The first processor's ``key: value`` lines of /proc/cpuinfo (empty off Linux)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if info:
                break
            continue
        key, _, value = line.partition(":")
        info.setdefault(key.strip().lower(), value.strip())
    return info


def _version(module: str) -> str | None:
    """``module.__version__``, or None when it is not installed."""
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def device_manifest(threads: int | None = None) -> dict:
    """The device manifest every result JSON carries.

    Args:
        threads: the torch thread count the benchmark ran with (default: the current one).

    Returns:
        ``cpu_model``, ``cpu_cores`` (usable by this process), ``vector_isa`` (flags present),
        ``gpu`` (CUDA device name or None), ``cuda``, ``torch``, ``triton``, ``python``,
        ``torch_threads``, ``os``, ``machine``.
    """
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("features") or "").split())
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count()
    return {
        "cpu_model": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_cores": cores,
        "vector_isa": [flag for flag in VECTOR_ISA_FLAGS if flag in flags],
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "triton": _version("triton"),
        "python": platform.python_version(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "os": platform.system(),
        "machine": platform.machine(),
    }
