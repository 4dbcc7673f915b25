"""FLOP and byte counts of the suite's operators (arXiv:2311.04417).

Counts are of the operation, not of a kernel: FLOPs count a multiply-add as 2, bytes are the
minimum traffic (every input read once, every output written once), so ``flops / bytes``
places an operator on a roofline.
"""

from __future__ import annotations

from tasks.opbench.shapes import ConvShape

INDEX_ITEMSIZE = 8  # int64 CSR row pointers and column ids


def gemm_flops(m: int, n: int, k: int) -> int:
    """C (m×n) = A (m×k) · B (k×n): ``2·m·n·k`` (one multiply and one add per term)."""
    return 2 * m * n * k


def gemm_bytes(m: int, n: int, k: int, itemsize: int) -> int:
    """Read A and B, write C: ``(m·k + k·n + m·n)·itemsize``."""
    return (m * k + k * n + m * n) * itemsize


def conv2d_out(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output extent of a convolution: ``⌊(size + 2·pad − kernel) / stride⌋ + 1``."""
    return (size + 2 * pad - kernel) // stride + 1


def conv2d_flops(batch: int, shape: ConvShape, direction: str = "forward") -> int:
    """Forward ``2·N·K·P·Q·C·R·S`` (P×Q the output); backward twice that (dgrad + wgrad)."""
    p, q = (
        conv2d_out(shape.h, shape.r, shape.stride, shape.pad),
        conv2d_out(shape.w, shape.s, shape.stride, shape.pad),
    )
    forward = 2 * batch * shape.k * p * q * shape.c * shape.r * shape.s
    return forward * (2 if direction == "backward" else 1)


def conv2d_bytes(batch: int, shape: ConvShape, itemsize: int, direction: str = "forward") -> int:
    """Forward: read x (N·C·H·W) and w (K·C·R·S), write y (N·K·P·Q): ``(x + w + y)·itemsize``.
    Backward: read dy, x and w, write dx and dw: ``(2x + 2w + y)·itemsize``."""
    p, q = (
        conv2d_out(shape.h, shape.r, shape.stride, shape.pad),
        conv2d_out(shape.w, shape.s, shape.stride, shape.pad),
    )
    x = batch * shape.c * shape.h * shape.w
    w = shape.k * shape.c * shape.r * shape.s
    y = batch * shape.k * p * q
    return (2 * x + 2 * w + y if direction == "backward" else x + w + y) * itemsize


def attention_flops(b: int, h: int, l: int, d: int, causal: bool) -> int:  # noqa: E741
    """softmax(Q·Kᵀ/√d)·V: ``4·b·h·l²·d`` (Q·Kᵀ and P·V, 2·l²·d each), half when causal
    (the masked upper triangle is not computed); the softmax itself is not counted."""
    flops = 4 * b * h * l * l * d
    return flops // 2 if causal else flops


def attention_bytes(b: int, h: int, l: int, d: int, itemsize: int) -> int:  # noqa: E741
    """Read Q, K, V and write O, each b·h·l·d: ``4·b·h·l·d·itemsize`` (no l×l matrix)."""
    return 4 * b * h * l * d * itemsize


def spmm_flops(nnz: int, f: int) -> int:
    """Y = A·X with A sparse: ``2·nnz·f`` (a multiply-add per nonzero per column of X)."""
    return 2 * nnz * f


def spmm_bytes(
    nnz: int, n_rows: int, n_cols: int, f: int, itemsize: int, index_itemsize: int = 8
) -> int:
    """Read the CSR (``(n_rows + 1 + nnz)·index_itemsize + nnz·itemsize``), read X once
    (``n_cols·f·itemsize``), write Y (``n_rows·f·itemsize``)."""
    csr = (n_rows + 1 + nnz) * index_itemsize + nnz * itemsize
    return csr + (n_cols + n_rows) * f * itemsize


def copy_bytes(n: int, itemsize: int) -> int:
    """STREAM copy c = a: read a, write c: ``2·n·itemsize`` (0 FLOPs)."""
    return 2 * n * itemsize


def triad_bytes(n: int, itemsize: int) -> int:
    """STREAM triad a = b + s·c: read b and c, write a: ``3·n·itemsize``."""
    return 3 * n * itemsize


def triad_flops(n: int) -> int:
    """STREAM triad a = b + s·c: ``2·n`` (one multiply, one add per element)."""
    return 2 * n
