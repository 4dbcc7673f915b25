"""What every ``scripts/bench_*.py`` does with its result: log to stderr, refuse non-finite
numbers, write the JSON and draw the plot when asked."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path


def log(msg: str) -> None:
    """Progress to stderr, so that stdout stays the result table."""
    print(msg, file=sys.stderr, flush=True)


def non_finite(rows: Iterable[dict], key: Callable[[dict, str], object]) -> list:
    """``key(row, name)`` of every float value in ``rows`` that is NaN or infinite."""
    return [
        key(row, k)
        for row in rows
        for k, v in row.items()
        if isinstance(v, float) and not math.isfinite(v)
    ]


def save_result(
    result: dict,
    json_path: Path | None,
    plot_path: Path | None,
    plot: Callable[[dict, Path], object],
) -> None:
    """Write ``result`` as JSON and ``plot(result, path)`` where paths are given."""
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2))
        log(f"wrote {json_path}")
    if plot_path:
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        plot(result, plot_path)
        log(f"wrote {plot_path}")
