"""Backend dispatch shared by every op: the backend names, their resolution, Triton's checks.

Each op in ``ops/`` takes ``backend="reference" | "cpu" | "triton"`` (None: "triton" on CUDA,
"cpu" elsewhere) and resolves it here, so the choices, the default and the error messages
are the same everywhere. Triton kernels run on CPU tensors only under Triton's interpreter
(``TRITON_INTERPRET=1``, read once at import, as Triton reads it when it decorates kernels).
Slower fallback paths (e.g. vectorised torch when a C++ compiler is missing) announce
themselves through ``warn_fallback``, once per op and reason.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Sequence

import torch

log = logging.getLogger(__name__)

BACKENDS = ("reference", "cpu", "triton")

# Triton decides at decoration time whether a kernel is interpreted (CPU tensors).
TRITON_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def check_backend(backend: str | None, *, op: str, allowed: Sequence[str] = BACKENDS) -> str | None:
    """``backend`` unchanged when it is None or one of ``allowed``, else ValueError.

    For constructors that store a backend before any tensor exists to resolve it against.
    """
    if backend is not None and backend not in allowed:
        raise ValueError(
            f"{op}: backend={backend!r}: choose one of {tuple(allowed)} or None (by device)"
        )
    return backend


def resolve_backend(
    backend: str | None, x: torch.Tensor, *, op: str, allowed: Sequence[str] = BACKENDS
) -> str:
    """The explicit backend, or the default for x's device ("triton" on CUDA, else "cpu").

    Args:
        backend: one of ``allowed``, or None to pick by device.
        x: a tensor the op runs on; only its device is read.
        op: the op's name, for the error message.
        allowed: the backends the op implements.

    Raises:
        ValueError: ``backend`` is not None and not one of ``allowed``.
    """
    if check_backend(backend, op=op, allowed=allowed) is None:
        return "triton" if x.is_cuda else "cpu"
    return backend


def check_triton_runnable(
    x: torch.Tensor, *, op: str, dtypes: Sequence[torch.dtype] | None = None
) -> None:
    """Raise unless the Triton kernels of ``op`` can run on x.

    Args:
        x: the tensor the kernels launch on.
        op: the op's name, for the error messages.
        dtypes: the dtypes the kernels take; None accepts any.

    Raises:
        RuntimeError: x is on the CPU and Triton's interpreter is off.
        TypeError: x's dtype is not in ``dtypes``, or x is bfloat16 on the CPU (the
            interpreter computes bfloat16 wrongly).
    """
    on_cpu = x.device.type == "cpu"
    if on_cpu and not TRITON_INTERPRET:
        raise RuntimeError(
            f"{op}: backend='triton' on a CPU tensor needs the Triton interpreter: set "
            "TRITON_INTERPRET=1 before ops is imported, or use backend='cpu'"
        )
    if dtypes is not None and x.dtype not in dtypes:
        names = " or ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise TypeError(f"{op}: the triton backend takes {names}, got {x.dtype}")
    if on_cpu and x.dtype == torch.bfloat16:
        raise TypeError(
            f"{op}: bfloat16 is wrong in the Triton interpreter: use a CUDA tensor, another "
            "dtype, or backend='cpu'"
        )


def device_guard(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Launch on x's GPU (Triton uses the current device); nothing to do on the CPU."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


@functools.cache
def warn_fallback(op: str, reason: str) -> None:
    """Log a warning that ``op`` runs a slower fallback path, once per (op, reason).

    ``warn_fallback.cache_clear()`` forgets what was logged (tests).
    """
    log.warning("%s: %s", op, reason)
