"""Benchmark scores: the unbiased pass@k estimator (Chen et al., arXiv:2107.03374, used by
VerilogEval arXiv:2309.07544 and RTLLM arXiv:2308.05345) and per-benchmark aggregates."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k: ``1 - C(n-c, k) / C(n, k)`` for ``c`` passing samples out of ``n``.

    Computed as ``1 - prod_{i=n-c+1}^{n} (1 - k / i)``, which never forms the large binomials.
    """
    if not (0 <= c <= n) or k < 1:
        raise ValueError(f"pass_at_k(n={n}, c={c}, k={k}): needs 0 <= c <= n and k >= 1")
    if k > n:
        raise ValueError(f"pass_at_k(n={n}, c={c}, k={k}): k must be <= n (samples per problem)")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def _get(record: Any, name: str) -> Any:
    return record[name] if isinstance(record, Mapping) else getattr(record, name)


def aggregate(records: Iterable[Any], ks: tuple[int, ...] = (1, 5)) -> dict[str, float | int]:
    """Syntax rate and functional pass@k over problems.

    Args:
        records: one per sample, with ``problem`` (id), ``compiled`` and ``passed`` (mappings
            or objects with those attributes).
        ks: the k of pass@k; a k larger than a problem's sample count is skipped.

    Returns:
        ``problems``, ``samples``, ``syntax_rate`` (fraction of samples that compile),
        ``syntax_pass@k`` and ``functional_pass@k`` (means over problems), as fractions.
    """
    per: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for r in records:
        per[str(_get(r, "problem"))].append((bool(_get(r, "compiled")), bool(_get(r, "passed"))))
    samples = sum(len(v) for v in per.values())
    out: dict[str, float | int] = {"problems": len(per), "samples": samples}
    if not per:
        return out
    out["syntax_rate"] = sum(c for v in per.values() for c, _ in v) / samples
    for k in ks:
        if all(len(v) >= k for v in per.values()):
            out[f"syntax_pass@{k}"] = sum(
                pass_at_k(len(v), sum(c for c, _ in v), k) for v in per.values()
            ) / len(per)
            out[f"functional_pass@{k}"] = sum(
                pass_at_k(len(v), sum(p for _, p in v), k) for v in per.values()
            ) / len(per)
    return out
