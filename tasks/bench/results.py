"""What every benchmark does with its result: log to stderr, refuse non-finite numbers, write
the JSON (with the device manifest) and draw the plot."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from tasks.bench.manifest import device_manifest

MANIFEST_KEY = "manifest"


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


def max_errors(got: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(max abs error, max abs error / max |ref|) of ``got`` against a float64 ``ref``."""
    err = (got.double() - ref).abs().max().item() if ref.numel() else 0.0
    scale = ref.abs().max().item() if ref.numel() else 0.0
    return err, err / scale if scale else err


def save_result(
    result: dict,
    json_path: Path | None,
    plot_path: Path | None,
    plot: Callable[[dict, Path], object],
    progress: Callable[[str], object] = log,
) -> None:
    """Write ``result`` as JSON and ``plot(result, path)`` where paths are given.

    The JSON always carries the device manifest under ``"manifest"`` (``result``'s own when
    it has one, else ``device_manifest()`` now).
    """
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        manifest = result.get(MANIFEST_KEY) or device_manifest()
        json_path.write_text(json.dumps({**result, MANIFEST_KEY: manifest}, indent=2))
        progress(f"wrote {json_path}")
    if plot_path:
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        plot(result, plot_path)
        progress(f"wrote {plot_path}")
