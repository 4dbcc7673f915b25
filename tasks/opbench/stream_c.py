"""STREAM's triad as STREAM writes it: a plain C loop ``a[j] = b[j] + scalar * c[j]`` compiled
with the system C compiler (``-O3 -march=native``, OpenMP over as many threads as torch uses),
loaded with ctypes. The independent reference for the suite's triad: the same operation, the
same bytes, one pass, no Python or torch in the loop (McCalpin's STREAM benchmark, the
definition the suite's bandwidth family follows).

Compiling takes a fraction of a second; without a C compiler ``stream_triad`` returns None and
the cross-check says so.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

SOURCE = r"""
#include <stddef.h>
/* STREAM triad, a[j] = b[j] + scalar * c[j], over n floats on `threads` OpenMP threads */
void stream_triad(float *restrict a, const float *restrict b, const float *restrict c,
                  float scalar, long n, int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long j = 0; j < n; j++) a[j] = b[j] + scalar * c[j];
}
"""


def compile_triad(folder: Path) -> ctypes.CDLL | None:
    """The compiled triad library in ``folder``, or None without a working C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        return None
    source, library = folder / "stream_triad.c", folder / "stream_triad.so"
    source.write_text(SOURCE)
    for flags in (["-fopenmp"], []):  # a compiler without OpenMP runs the loop on one thread
        cmd = [compiler, "-O3", "-march=native", "-shared", "-fPIC", *flags, str(source),
               "-o", str(library)]  # fmt: skip
        if subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0:
            lib = ctypes.CDLL(str(library))
            lib.stream_triad.restype = None
            lib.stream_triad.argtypes = [ctypes.c_void_p] * 3 + [
                ctypes.c_float, ctypes.c_long, ctypes.c_int,
            ]  # fmt: skip
            return lib
    return None


def stream_triad(n: int, threads: int, scalar: float = 3.0) -> Callable[[], None] | None:
    """A closure running STREAM's C triad once over fresh fp32 arrays of ``n`` elements, or
    None when no C compiler works here."""
    with tempfile.TemporaryDirectory(prefix="effml_stream_") as tmp:
        lib = compile_triad(Path(tmp))  # the loaded library outlives its file
    if lib is None:
        return None
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(n, dtype=np.float32) for _ in range(3))
    pointers = [x.ctypes.data for x in (a, b, c)]

    def triad() -> None:
        lib.stream_triad(*pointers, scalar, n, threads)

    triad.arrays = (a, b, c)  # keep the buffers alive as long as the closure
    return triad
