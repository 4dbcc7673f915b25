"""The operator families of the suite (arXiv:2311.04417): each family's config to its cases.

Counts are of the operation, not of a kernel: FLOPs count a multiply-add as 2, bytes are
the minimum traffic (every input read once, every output written once), so
``intensity = flops / bytes`` places an operator on a roofline. Each family's generator takes
the family's config mapping (keys below, every key optional) and returns a list of ``Case``:

- gemm: ``dtypes``, ``square`` (n of n×n×n), ``llm_tokens`` (rows of the 7B projections),
  ``libraries`` (torch; numpy: NumPy's BLAS, CPU fp32/fp64 only — a second BLAS, since the
  one torch links is not the fastest on every CPU, e.g. MKL on AMD);
- conv: ``dtypes``, ``nets`` (``shapes.CONV_NETS``), ``layers`` (extra [C, K, H, W, R, S,
  stride, pad] rows, net "custom"), ``batches``, ``directions`` (forward, backward),
  ``channels_last`` (list of booleans);
- spmm: ``dtypes``, ``graphs`` (``tasks.bench.load_graph`` names or edge files), ``data_dir``,
  ``cache_dir``, ``widths``, ``backends`` (``ops.spmm`` backends; null: every one present);
- attention: ``dtypes``, ``batch``, ``heads``, ``seq_lens``, ``head_dims``, ``causal`` (list of
  booleans), ``backends`` ("default" lets PyTorch choose; math, flash, efficient, cudnn);
- bandwidth: ``dtypes``, ``sizes`` (elements per array), ``ops`` (copy, triad), ``cache``
  (warm: the same arrays every call; cold: a rotation of copies spanning ``flush_bytes``,
  default twice the last-level cache, so each call reads memory, not cache).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from effml.errors import ConfigError
from tasks.opbench.cases import (
    ATTENTION_BACKENDS,
    BANDWIDTH_OPS,
    CACHE_STATES,
    CONV_DIRECTIONS,
    DEFAULT_FLUSH_BYTES,
    DTYPES,
    GEMM_LIBRARIES,
    TRIAD_SCALAR,
    Case,
    CaseSkipped,
    Maker,
    last_level_cache_bytes,
)
from tasks.opbench.counts import (
    INDEX_ITEMSIZE,
    attention_bytes,
    attention_flops,
    conv2d_bytes,
    conv2d_flops,
    conv2d_out,
    copy_bytes,
    gemm_bytes,
    gemm_flops,
    spmm_bytes,
    spmm_flops,
    triad_bytes,
    triad_flops,
)
from tasks.opbench.shapes import CONV_NETS, LLM_7B_GEMMS, LLM_TOKENS, ConvShape


def _get(cfg: Mapping[str, Any], family: str, key: str, default: Any) -> Any:
    value = cfg.get(key, default)
    return default if value is None else value


def _dtypes(cfg: Mapping[str, Any], family: str, default: tuple[str, ...]) -> list[str]:
    dtypes = list(_get(cfg, family, "dtypes", default))
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown or not dtypes:
        raise ConfigError(
            f"{family}.dtypes", dtypes, f"unknown {unknown}; choose from {list(DTYPES)}", ["fp32"]
        )
    return dtypes


def _positive_ints(
    cfg: Mapping[str, Any], family: str, key: str, default: Any, empty: bool = False
) -> list[int]:
    values = list(_get(cfg, family, key, default))
    if (not values and not empty) or any(
        isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values
    ):
        raise ConfigError(f"{family}.{key}", values, "must be a list of positive integers", [64])
    return values


def _positive_int(cfg: Mapping[str, Any], family: str, key: str, default: int) -> int:
    value = _get(cfg, family, key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{family}.{key}", value, "must be a positive integer", default)
    return value


def _choices(cfg: Mapping[str, Any], family: str, key: str, default, allowed, empty=False) -> list:
    values = list(_get(cfg, family, key, default))
    bad = [v for v in values if v not in allowed]
    if bad or (not values and not empty):
        raise ConfigError(f"{family}.{key}", values, f"choose from {list(allowed)}", [allowed[0]])
    return values


def _randn(device: torch.device, dtype: torch.dtype, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, device=device, dtype=dtype)


def _gemm_maker(m: int, n: int, k: int, library: str = "torch") -> Maker:
    def make(device: torch.device, dtype: torch.dtype) -> Callable[[], object]:
        if library == "numpy":
            return _numpy_gemm(device, dtype, m, n, k)
        a, b = _randn(device, dtype, m, k), _randn(device, dtype, k, n)
        c = torch.empty(m, n, device=device, dtype=dtype)
        return lambda: torch.mm(a, b, out=c)

    return make


def _numpy_gemm(device: torch.device, dtype: torch.dtype, m: int, n: int, k: int):
    """The same GEMM through NumPy's BLAS (OpenBLAS in the PyPI wheels): a second library on
    the CPU, next to the one torch links (MKL on x86 builds); fp32 and fp64 only."""
    import numpy as np

    if device.type != "cpu":
        raise CaseSkipped(f"library=numpy on {device.type}: NumPy's BLAS runs on the CPU only")
    if dtype not in (torch.float32, torch.float64):
        raise CaseSkipped(f"library=numpy with {dtype}: NumPy's BLAS has fp32 and fp64 GEMMs only")
    a, b = (_randn(device, dtype, *shape).numpy() for shape in ((m, k), (k, n)))
    c = np.empty((m, n), dtype=a.dtype)
    return lambda: np.matmul(a, b, out=c)


def gemm_cases(cfg: Mapping[str, Any]) -> list[Case]:
    """Square n×n×n GEMMs and the 7B projections (tokens × k) · (k × n), per dtype."""
    dtypes = _dtypes(cfg, "gemm", tuple(DTYPES))
    square = _positive_ints(cfg, "gemm", "square", (256, 512, 1024, 2048, 4096, 8192), True)
    tokens = _positive_ints(cfg, "gemm", "llm_tokens", LLM_TOKENS, True)
    libraries = _choices(cfg, "gemm", "libraries", ("torch",), GEMM_LIBRARIES)
    shapes = [("gemm_square", {"m": s, "n": s, "k": s}) for s in square]
    shapes += [
        ("gemm_llm", {"layer": g.name, "m": t, "n": g.n, "k": g.k})
        for g in LLM_7B_GEMMS
        for t in tokens
    ]
    if not shapes:
        raise ConfigError("gemm.square", square, "and gemm.llm_tokens are both empty", [256])
    cases = []
    for dtype, (op, params), library in itertools.product(dtypes, shapes, libraries):
        m, n, k, size = params["m"], params["n"], params["k"], DTYPES[dtype].itemsize
        cases.append(
            Case(
                "gemm", op, dtype, {**params, "library": library}, gemm_flops(m, n, k),
                gemm_bytes(m, n, k, size), make=_gemm_maker(m, n, k, library),
                probe=dtype in ("fp16", "bf16"),
            )
        )  # fmt: skip
    return cases


def _conv_maker(batch: int, s: ConvShape, direction: str, channels_last: bool) -> Maker:
    def make(device: torch.device, dtype: torch.dtype) -> Callable[[], object]:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x = _randn(device, dtype, batch, s.c, s.h, s.w).contiguous(memory_format=fmt)
        w = _randn(device, dtype, s.k, s.c, s.r, s.s).contiguous(memory_format=fmt)
        if direction == "forward":
            return lambda: F.conv2d(x, w, stride=s.stride, padding=s.pad)
        p, q = conv2d_out(s.h, s.r, s.stride, s.pad), conv2d_out(s.w, s.s, s.stride, s.pad)
        dy = _randn(device, dtype, batch, s.k, p, q).contiguous(memory_format=fmt)
        stride, pad = [s.stride] * 2, [s.pad] * 2
        return lambda: torch.ops.aten.convolution_backward(
            dy, x, w, None, stride, pad, [1, 1], False, [0, 0], 1, [True, True, False]
        )  # dgrad and wgrad, no bias

    return make


def conv_cases(cfg: Mapping[str, Any]) -> list[Case]:
    """The distinct convolutions of each net × batch × direction × memory format × dtype."""
    dtypes = _dtypes(cfg, "conv", ("fp32", "tf32", "fp16", "bf16"))
    nets = _choices(cfg, "conv", "nets", tuple(CONV_NETS), tuple(CONV_NETS), empty=True)
    batches = _positive_ints(cfg, "conv", "batches", (1, 32))
    directions = _choices(cfg, "conv", "directions", CONV_DIRECTIONS, CONV_DIRECTIONS)
    layouts = _choices(cfg, "conv", "channels_last", (False, True), (False, True))
    layers = [(net, shape) for net in nets for shape in CONV_NETS[net]]
    for row in _get(cfg, "conv", "layers", ()):
        row = list(row)
        if len(row) != 8 or any(isinstance(v, bool) or not isinstance(v, int) for v in row):
            raise ConfigError(
                "conv.layers", row, "each layer is [C, K, H, W, R, S, stride, pad] integers",
                [[64, 64, 56, 56, 3, 3, 1, 1]],
            )  # fmt: skip
        layers.append(("custom", ConvShape(*row)))
    if not layers:
        raise ConfigError("conv.nets", nets, "and conv.layers are both empty", ["resnet18"])
    cases = []
    for dtype, (net, s), batch, direction, cl in itertools.product(
        dtypes, layers, batches, directions, layouts
    ):
        size = DTYPES[dtype].itemsize
        params = {"net": net, **s._asdict(), "batch": batch, "channels_last": bool(cl)}
        nbytes = conv2d_bytes(batch, s, size, direction)
        cases.append(
            Case(
                "conv", f"conv_{direction}", dtype, params, conv2d_flops(batch, s, direction),
                nbytes, make=_conv_maker(batch, s, direction, bool(cl)),
                probe=dtype in ("fp16", "bf16") or bool(cl),
            )
        )  # fmt: skip
    return cases


def _spmm_backends(requested: Any) -> list[str]:
    import importlib.util

    from ops.spmm import BACKENDS

    present = ["accel", "torch_sparse"]
    if importlib.util.find_spec("torch_geometric") is not None:
        present.append("pyg")
    if requested is None:
        return present
    backends = list(requested)
    bad = [b for b in backends if b not in BACKENDS]
    if bad or not backends:
        raise ConfigError("spmm.backends", backends, f"choose from {list(BACKENDS)}", present)
    return backends


def spmm_cases(cfg: Mapping[str, Any]) -> list[Case]:
    """Y = A·X over each graph's GCN-normalised adjacency, per width, backend and dtype."""
    from ops.spmm import csr_from_edge_index, spmm
    from tasks.bench import load_graph

    dtypes = _dtypes(cfg, "spmm", ("fp32",))
    widths = _positive_ints(cfg, "spmm", "widths", (32, 64, 128, 256))
    backends = _spmm_backends(cfg.get("backends"))
    graphs = list(_get(cfg, "spmm", "graphs", ()))
    data_dir = cfg.get("data_dir")
    if graphs and data_dir is None:
        raise ConfigError(
            "spmm.data_dir", None, "is needed to find the graphs", "${paths.data_dir}"
        )
    cache_dir = _get(cfg, "spmm", "cache_dir", Path(str(data_dir)) / "cache")
    cases = []
    for graph in graphs:
        g = load_graph(str(graph), data_dir, cache_dir)
        adj = csr_from_edge_index(g.edge_index, g.num_nodes, norm="gcn")
        on_device: dict[torch.device, Any] = {}

        def make_for(width: int, backend: str, adj=adj, on_device=on_device) -> Maker:
            def make(device: torch.device, torch_dtype: torch.dtype) -> Callable[[], object]:
                a = on_device.setdefault(device, adj.to(device))
                x = _randn(device, torch_dtype, a.num_cols, width)
                return lambda: spmm(a, x, backend=backend)

            return make

        n, nnz = adj.num_rows, adj.nnz
        for dtype, width, backend in itertools.product(dtypes, widths, backends):
            size = DTYPES[dtype].itemsize
            params = {"graph": g.name, "nodes": n, "nnz": nnz, "width": width, "backend": backend}
            nbytes = spmm_bytes(nnz, n, n, width, size, INDEX_ITEMSIZE)
            cases.append(
                Case(
                    "spmm", f"spmm_{backend}", dtype, params, spmm_flops(nnz, width), nbytes,
                    footprint=nbytes + nnz * (INDEX_ITEMSIZE + 4) * 2, probe=True,
                    make=make_for(width, backend),
                )
            )  # fmt: skip
    return cases


def _sdpa_backend(name: str):
    from torch.nn.attention import SDPBackend

    return {
        "math": SDPBackend.MATH,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
    }[name]


def _attention_maker(b: int, h: int, l: int, d: int, causal: bool, backend: str) -> Maker:  # noqa: E741
    def make(device: torch.device, dtype: torch.dtype) -> Callable[[], object]:
        q, k, v = (_randn(device, dtype, b, h, l, d) for _ in range(3))
        if backend == "default":
            return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        from torch.nn.attention import sdpa_kernel

        chosen = _sdpa_backend(backend)

        def call() -> torch.Tensor:
            with sdpa_kernel(chosen):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

        return call

    return make


def attention_cases(cfg: Mapping[str, Any]) -> list[Case]:
    """``scaled_dot_product_attention`` per sequence length, head dim, mask, backend, dtype."""
    dtypes = _dtypes(cfg, "attention", ("fp32", "fp16", "bf16"))
    batch = _positive_int(cfg, "attention", "batch", 1)
    heads = _positive_int(cfg, "attention", "heads", 32)
    seq_lens = _positive_ints(cfg, "attention", "seq_lens", (512, 1024, 2048, 4096))
    head_dims = _positive_ints(cfg, "attention", "head_dims", (64, 128))
    causal = _choices(cfg, "attention", "causal", (False, True), (False, True))
    backends = _choices(cfg, "attention", "backends", ("default",), ATTENTION_BACKENDS)
    cases = []
    for dtype, seq, d, c, backend in itertools.product(
        dtypes, seq_lens, head_dims, causal, backends
    ):
        size = DTYPES[dtype].itemsize
        params = {"batch": batch, "heads": heads, "seq_len": seq, "head_dim": d,
                  "causal": bool(c), "backend": backend}  # fmt: skip
        nbytes = attention_bytes(batch, heads, seq, d, size)
        scores = batch * heads * seq * seq * 4  # the l×l matrix a math path materialises
        cases.append(
            Case(
                "attention", "sdpa", dtype, params, attention_flops(batch, heads, seq, d, bool(c)),
                nbytes, footprint=nbytes + scores, probe=True,
                make=_attention_maker(batch, heads, seq, d, bool(c), backend),
            )
        )  # fmt: skip
    return cases


def _bandwidth_maker(op: str, n: int, cache: str, flush_bytes: int | None) -> Maker:
    arrays = 2 if op == "copy" else 3

    def make(device: torch.device, dtype: torch.dtype) -> Callable[[], object]:
        span = flush_bytes or 2 * (last_level_cache_bytes(device) or DEFAULT_FLUSH_BYTES // 2)
        set_bytes = arrays * n * dtype.itemsize
        copies = 1 if cache == "warm" else max(2, math.ceil(span / set_bytes) + 1)
        sets = [[_randn(device, dtype, n) for _ in range(arrays)] for _ in range(copies)]
        turn = itertools.cycle(sets)
        if op == "copy":
            return lambda: (lambda a, c: c.copy_(a))(*next(turn))
        return lambda: (lambda a, b, c: torch.add(b, c, alpha=TRIAD_SCALAR, out=a))(*next(turn))

    return make


def bandwidth_cases(cfg: Mapping[str, Any]) -> list[Case]:
    """STREAM copy (c = a) and triad (a = b + s·c) per array size, cache state and dtype."""
    dtypes = _dtypes(cfg, "bandwidth", ("fp32",))
    sizes = _positive_ints(cfg, "bandwidth", "sizes", (2**16, 2**20, 2**24, 2**26))
    ops = _choices(cfg, "bandwidth", "ops", BANDWIDTH_OPS, BANDWIDTH_OPS)
    caches = _choices(cfg, "bandwidth", "cache", CACHE_STATES, CACHE_STATES)
    flush = cfg.get("flush_bytes")
    if flush is not None and (isinstance(flush, bool) or not isinstance(flush, int) or flush < 1):
        raise ConfigError("bandwidth.flush_bytes", flush, "must be a positive byte count", 2**28)
    cases = []
    for dtype, op, n, cache in itertools.product(dtypes, ops, sizes, caches):
        size = DTYPES[dtype].itemsize
        nbytes = copy_bytes(n, size) if op == "copy" else triad_bytes(n, size)
        flops = 0 if op == "copy" else triad_flops(n)
        span = 0 if cache == "warm" else (flush or DEFAULT_FLUSH_BYTES)
        cases.append(
            Case(
                "bandwidth", op, dtype, {"n": n, "cache": cache}, flops, nbytes,
                footprint=nbytes + span, make=_bandwidth_maker(op, n, cache, flush),
            )
        )  # fmt: skip
    return cases


FAMILIES: dict[str, Callable[[Mapping[str, Any]], list[Case]]] = {
    "gemm": gemm_cases,
    "conv": conv_cases,
    "spmm": spmm_cases,
    "attention": attention_cases,
    "bandwidth": bandwidth_cases,
}
