"""A benchmark case of the operator suite (arXiv:2311.04417): what to time, its FLOPs and the
minimum bytes it moves (``counts.py``), and the closure that runs it on a device, skipped
with the reason when the device lacks the dtype or the memory. The families that generate
cases are in ``families.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import torch

DTYPES: dict[str, torch.dtype] = {
    "fp64": torch.float64,
    "fp32": torch.float32,
    "tf32": torch.float32,  # fp32 tensors, TF32 tensor-core math (CUDA only)
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
FIT_FRACTION = 0.8  # a case may take this share of the device's free memory
DEFAULT_FLUSH_BYTES = 256 * 2**20  # cold-cache span when the cache size cannot be read
ATTENTION_BACKENDS = ("default", "math", "flash", "efficient", "cudnn")
CONV_DIRECTIONS = ("forward", "backward")
BANDWIDTH_OPS = ("copy", "triad")
GEMM_LIBRARIES = ("torch", "numpy")
CACHE_STATES = ("warm", "cold")
TRIAD_SCALAR = 3.0


class CaseSkipped(Exception):
    """A case that cannot run here; ``reason`` says why (recorded in the results)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def free_memory(device: torch.device) -> int:
    """Bytes free for new tensors: ``torch.cuda.mem_get_info`` on CUDA, else psutil's
    available system memory."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return int(psutil.virtual_memory().available)


def last_level_cache_bytes(device: torch.device) -> int | None:
    """The GPU's L2, or the largest CPU cache sysfs lists; None where neither can be read."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).L2_cache_size) or None
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip().upper()
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes, default=None)


def check_dtype(dtype: str, device: torch.device) -> None:
    """Raise ``CaseSkipped`` where ``device`` cannot compute in ``dtype``."""
    if device.type != "cuda":
        if dtype == "tf32":
            raise CaseSkipped(
                f"tf32 on {device.type}: TF32 is a CUDA tensor-core mode "
                "(torch.backends.cuda.matmul.allow_tf32); run it on an NVIDIA GPU"
            )
        return
    major, minor = torch.cuda.get_device_capability(device)
    if dtype == "tf32" and (torch.version.hip is not None or major < 8):
        raise CaseSkipped(
            f"tf32 on {torch.cuda.get_device_name(device)} (compute capability {major}.{minor}): "
            "TF32 needs an NVIDIA GPU of compute capability 8.0 or newer"
        )
    if dtype == "bf16" and not torch.cuda.is_bf16_supported():
        raise CaseSkipped(f"bf16 on {torch.cuda.get_device_name(device)}: not supported")


@contextlib.contextmanager
def _cuda_precision(tf32: bool):
    """TF32 math in matmul and cuDNN on or off (fp32 cases measure true fp32), then restored."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


UNSUPPORTED = (
    "not implemented",
    "not supported",
    "no available kernel",
    "no viable backend",
    "unsupported",
)

Maker = Callable[[torch.device, torch.dtype], Callable[[], object]]


@dataclass
class Case:
    """One measurement: an operator at one shape and dtype.

    Args:
        family: "gemm", "conv", "spmm", "attention" or "bandwidth".
        op: the operator within the family ("gemm_square", "conv_forward", "triad", ...).
        dtype: a key of ``DTYPES``.
        params: the shape and settings, JSON-ready.
        flops: floating-point operations of one call.
        bytes: minimum bytes one call moves.
        footprint: bytes the inputs, outputs and workspace allocate (None: ``bytes``).
        make: (device, torch dtype) → the closure to time.
        probe: run the closure once in ``build`` to turn an unsupported kernel into
            ``CaseSkipped`` (for dtypes and backends whose support varies by build).
    """

    family: str
    op: str
    dtype: str
    params: dict
    flops: int
    bytes: int
    footprint: int | None = None
    make: Maker | None = field(default=None, repr=False, compare=False)
    probe: bool = False

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOPs per byte moved."""
        return self.flops / self.bytes

    @property
    def name(self) -> str:
        """A readable label: op, dtype and parameters."""
        params = " ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.op} {self.dtype} {params}"

    def build(self, device: torch.device) -> Callable[[], object]:
        """Allocate the inputs on ``device`` and return the closure to time.

        Raises:
            CaseSkipped: the dtype is unsupported on ``device``, the footprint exceeds
                ``FIT_FRACTION`` of its free memory, or (probed cases) the kernel is missing.
        """
        device = torch.device(device)
        check_dtype(self.dtype, device)
        need = self.bytes if self.footprint is None else self.footprint
        free = free_memory(device)
        if need > FIT_FRACTION * free:
            raise CaseSkipped(
                f"needs {need / 2**30:.2f} GiB but {device} has {free / 2**30:.2f} GiB free "
                f"(limit {FIT_FRACTION:.0%} of free memory): a smaller size fits"
            )
        try:
            fn = self.make(device, DTYPES[self.dtype])
            if device.type == "cuda":
                fn = _with_precision(fn, self.dtype == "tf32")
            if self.probe:
                fn()
        except torch.OutOfMemoryError as err:
            raise CaseSkipped(f"out of memory on {device}: {err}") from None
        except (RuntimeError, TypeError, NotImplementedError) as err:
            # a device or backend without this op or dtype is a skip; any other error is a bug
            if not isinstance(err, NotImplementedError) and not any(
                word in str(err).lower() for word in UNSUPPORTED
            ):
                raise
            raise CaseSkipped(f"{self.op} {self.dtype} on {device}: {err}") from None
        return fn


def _with_precision(fn: Callable[[], object], tf32: bool) -> Callable[[], object]:
    def call() -> object:
        with _cuda_precision(tf32):
            return fn()

    return call
