"""MaxK nonlinearity and its compressed output, CBSR (compressed balanced sparse row).

MaxK-GNN (Peng et al., ASPLOS 2024, https://arxiv.org/abs/2312.08656), Sec. 3: per row keep
the k largest entries by signed value and zero the rest; the result is stored as two dense
(N, k) arrays, ``values`` (x's dtype) and ``indices`` (column ids in [0, width)). The order of
the k entries inside a row is free. Indices are uint8 when width ≤ 256 (as in the paper's
CUDA code) and int16 up to width 65535: int16 keeps the low 16 bits, so read them back with
``decode_indices`` (``& 0xFFFF``), never with a plain cast.

Top-k on CUDA (and in the reference) is ``torch.topk``, a radix select costing about one
read of x (the paper measures 0.26 ms on Reddit against 15 ms for each sparse kernel), so a
Triton top-k (``tl.topk`` sorts a power-of-two block per row) would not move the layer's time
and would need padding for widths like 384. On the CPU ``torch.topk`` is slow (≈3 µs per
row of 256, as long as the SpGEMM itself on our graphs), so the "cpu" backend selects with
``std::nth_element`` in ``cpu_kernels.py``.
"""

from __future__ import annotations

import torch

MAX_WIDTH = 65535
UINT8_MAX_WIDTH = 256


def index_dtype(width: int) -> torch.dtype:
    """uint8 for width ≤ 256, int16 (low 16 bits) up to 65535."""
    check_width(width)
    return torch.uint8 if width <= UINT8_MAX_WIDTH else torch.int16


def check_width(width: int) -> None:
    if width > MAX_WIDTH:
        raise ValueError(
            f"feature width {width} exceeds {MAX_WIDTH}, the largest CBSR int16 indices can "
            "address; split the features into chunks of ≤ 65535 columns"
        )


def check_k(k: int, width: int) -> None:
    """Raise unless 1 ≤ k ≤ width ≤ 65535."""
    check_width(width)
    if isinstance(k, bool) or not isinstance(k, int):
        raise ValueError(f"k={k!r}: pass an int")
    if k <= 0 or k > width:
        raise ValueError(f"k={k} is outside [1, {width}] (the feature width): pick 1 ≤ k ≤ {width}")


def encode_indices(idx: torch.Tensor, width: int) -> torch.Tensor:
    """int64 column ids → the CBSR index dtype for ``width`` (int16 wraps above 32767)."""
    return idx.to(index_dtype(width))


def decode_indices(indices: torch.Tensor) -> torch.Tensor:
    """CBSR indices (uint8 or int16) → int64 column ids in [0, 65535]."""
    if indices.dtype == torch.int16:
        return indices.to(torch.int64) & 0xFFFF
    if indices.dtype in (torch.uint8, torch.int32, torch.int64):
        return indices.to(torch.int64)
    raise ValueError(f"CBSR indices have dtype {indices.dtype}; expected uint8 or int16")


def maxk_reference(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest entries of each row of x as CBSR (values, indices), with ``torch.topk``.

    Args:
        x: (N, width) float, width ≤ 65535.
        k: entries kept per row, 1 ≤ k ≤ width.

    Returns:
        values (N, k) in x's dtype, differentiable (the gradient flows to the kept positions
        only: MaxK's mask rule), and indices (N, k) uint8 (width ≤ 256) or int16.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError("x must be a 2-D (N, width) tensor")
    check_k(k, x.shape[1])
    values, idx = torch.topk(x, k, dim=1, sorted=False)  # (N, k) each
    return values, encode_indices(idx, x.shape[1])


def cbsr_to_dense(values: torch.Tensor, indices: torch.Tensor, dim: int) -> torch.Tensor:
    """(N, dim) dense matrix with values at indices and zeros elsewhere (differentiable)."""
    check_cbsr(values, indices, dim)
    dense = values.new_zeros(values.shape[0], dim)
    return dense.scatter(1, decode_indices(indices), values)


def check_indices(indices: torch.Tensor, dim: int) -> None:
    """Raise unless ``indices`` are (N, k) CBSR column ids in the index dtype for ``dim``."""
    if not isinstance(indices, torch.Tensor) or indices.dim() != 2:
        raise ValueError("CBSR indices must be a 2-D (N, k) tensor")
    if indices.shape[1]:
        check_k(indices.shape[1], dim)
    else:
        check_width(dim)
    want = index_dtype(dim)
    if indices.dtype != want:
        raise ValueError(
            f"CBSR indices have dtype {indices.dtype} but width {dim} needs {want} "
            "(uint8 for width ≤ 256, int16 above): build them with maxk()"
        )


def check_cbsr(values: torch.Tensor, indices: torch.Tensor, dim: int) -> None:
    """Raise unless (values, indices) is a CBSR pair for width ``dim``."""
    if values.dim() != 2 or indices.shape != values.shape:
        raise ValueError(
            f"CBSR values {tuple(values.shape)} and indices {tuple(indices.shape)} must both "
            "be (N, k)"
        )
    if values.device != indices.device:
        raise ValueError(
            f"CBSR values are on {values.device} but indices on {indices.device}: move both"
        )
    check_indices(indices, dim)
