"""Build an op's C++/OpenMP CPU kernels on first use (``torch.utils.cpp_extension``) and cache
the build.

Flags ``-O3 -march=native -fopenmp``; the build lands in ``$TORCH_EXTENSIONS_DIR`` or
``~/.cache/effml/torch_extensions``, named by a hash of the source, the flags, the torch version
and the CPU's feature flags, so a stale or foreign build is never loaded. When the kernels
cannot be built (no compiler, no source, or the op's switch ``EFFML_<OP>_NO_CPP=1``) the caller
gets None and one warning, and runs its vectorised-torch path.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
from pathlib import Path
from types import ModuleType

import torch

from ops.dispatch import warn_fallback

CFLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=fast"]


def build_root() -> Path:
    """Where builds are cached."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    return Path(root) if root else Path.home() / ".cache" / "effml" / "torch_extensions"


def cpu_signature() -> str:
    """The CPU's feature flags (``-march=native`` builds are only valid on matching CPUs)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_cpp_kernels(op: str, cpp_file: Path, functions: list[str]) -> ModuleType | None:
    """The compiled module of ``cpp_file`` exposing ``functions``, or None with a warning.

    Args:
        op: the op's name (``maxk``, ``spmm``): names the build, the warning and the switch
            ``EFFML_<OP>_NO_CPP=1`` that forces the torch path.
        cpp_file: the kernels' source; its text is part of the build's name.
        functions: the functions the source defines for Python.
    """
    switch = f"EFFML_{op.upper()}_NO_CPP"
    if os.environ.get(switch) == "1":
        warn_fallback(op, f"{switch}=1: the CPU kernels use vectorised torch")
        return None
    from torch.utils.cpp_extension import load_inline

    scripts = str(Path(sys.executable).parent)  # pip's ninja lives beside the interpreter
    path = os.environ.get("PATH", "")
    if shutil.which("ninja") is None and scripts not in path.split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + path
    try:
        source = cpp_file.read_text()
    except OSError as err:
        warn_fallback(op, f"cannot read {cpp_file} ({err}); the CPU kernels use vectorised torch")
        return None
    tag = "|".join([source, *CFLAGS, torch.__version__, cpu_signature()])
    name = f"effml_{op}_cpu_" + hashlib.sha256(tag.encode()).hexdigest()[:12]
    build_dir = build_root() / name
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
        return load_inline(
            name=name,
            cpp_sources=[source],
            functions=functions,
            extra_cflags=CFLAGS,
            extra_ldflags=["-fopenmp"],
            build_directory=str(build_dir),
            verbose=False,
        )
    except (RuntimeError, OSError, ImportError, ValueError) as err:
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        warn_fallback(
            op,
            f"the C++ CPU kernels could not be compiled ({first_line}); using the slower "
            "vectorised-torch path. Install a C++ compiler (g++) and ninja to get the fast path.",
        )
        return None
