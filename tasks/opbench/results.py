"""Reading operator-benchmark results (``opbench.json``) back: validation with errors that name
the file, machine labels, the peak ceilings, and the number formatting of the report."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DTYPES = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8")
ROW_KEYS = ("family", "op", "dtype", "params", "flops", "bytes")
BANDWIDTH_FAMILY = "bandwidth"
REPORT_NAME = "opbench_report.md"
_DTYPE_KEY = re.compile(rf"^(?:gemm_)?({'|'.join(DTYPES)})(?:_tflops)?$")
_BANDWIDTH_KEY = re.compile(r"(gbs|gb_s|bandwidth|tbs|tb_s)")


class OpbenchReportError(ValueError):
    """A result file that cannot be reported on; the message names the file and the fix."""


@dataclass
class Result:
    """One result file: where it came from, its label in tables and plots, and its content."""

    path: Path
    label: str
    data: dict

    @property
    def rows(self) -> list[dict]:
        return self.data["measurements"]

    @property
    def measured(self) -> list[dict]:
        return [row for row in self.rows if not row.get("skipped")]


def _fail(path: Path, what: str) -> OpbenchReportError:
    return OpbenchReportError(
        f"{path}: {what}; pass the opbench.json written by `python run.py experiment=opbench`"
    )


def load_result(path: Path) -> dict:
    """The parsed result file, checked against the schema the report reads."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fail(path, f"not readable as JSON ({err})") from None
    if not isinstance(data, dict):
        raise _fail(path, f"the top level is a {type(data).__name__}, not an object")
    missing = [key for key in ("device", "measurements") if key not in data]
    if missing:
        raise _fail(path, f"no {' or '.join(repr(k) for k in missing)} key")
    if not isinstance(data["measurements"], list):
        raise _fail(path, "'measurements' is not a list")
    for i, row in enumerate(data["measurements"]):
        if not isinstance(row, dict):
            raise _fail(path, f"measurement {i} is not an object")
        absent = [key for key in ROW_KEYS if key not in row]
        if not row.get("skipped"):
            absent += [key for key in ("time_s",) if not isinstance(row.get(key), dict)]
        if absent:
            raise _fail(path, f"measurement {i} ({row.get('op', '?')}) lacks {absent}")
    return data


def machine_label(data: dict) -> str:
    """The device's name (a CPU's model from the manifest) and, on a CPU, its thread count."""
    device = data.get("device") or {}
    name = device.get("name") or device.get("type") or "device"
    if device.get("type", "cpu") == "cpu":
        model = (data.get("manifest") or {}).get("cpu_model")
        name = model if model and name in ("cpu", "CPU") else name
        if device.get("threads"):
            name = f"{name}, {device['threads']} threads"
    return str(name)


def load_results(paths: Sequence[Path]) -> list[Result]:
    """Every result, labelled; equal labels get their run folder (then their index) added."""
    results = [Result(Path(p), machine_label(d), d) for p in paths for d in [load_result(p)]]
    for rename in (
        lambda r, i: f"{r.label} [{r.path.parent.name}]",
        lambda r, i: f"{r.label} #{i}",
    ):
        labels = [r.label for r in results]
        for i, result in enumerate(results, 1):
            if labels.count(result.label) > 1:
                result.label = rename(result, i)
    return results


def ceilings(peaks: dict | None) -> tuple[dict[str, float], float | None]:
    """``({dtype: TFLOP/s}, GB/s)`` read from a ``peaks`` section, whatever its nesting.

    Compute peaks are numbers under a key naming a precision (``fp32``, ``fp32_tflops``,
    ``gemm_fp32_tflops``) at the top level or inside a ``*tflops*`` mapping, or a ``tflops``
    number inside a precision's mapping; the bandwidth is the first number under a key holding
    ``gbs``/``bandwidth`` (``tbs``: TB/s, converted) at the top level or in a ``memory``
    mapping. Factors such as lanes or clocks, nested elsewhere, are not peaks and are ignored.
    """
    compute: dict[str, float] = {}
    bandwidth: float | None = None

    def number(value: Any) -> float | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok and math.isfinite(value) and value > 0 else None

    def visit(mapping: dict, parent: str) -> None:
        nonlocal bandwidth
        for key, value in mapping.items():
            key = str(key).lower()
            match = _DTYPE_KEY.match(key)
            if isinstance(value, dict):
                if match and number(value.get("tflops")) is not None:
                    compute.setdefault(match.group(1), number(value["tflops"]))
                elif not parent and ("tflops" in key or key in ("memory", "compute", "peaks")):
                    visit(value, key)
            elif number(value) is not None:
                if match and (not parent or "tflops" in parent or parent == "compute"):
                    compute.setdefault(match.group(1), number(value))
                elif (
                    bandwidth is None
                    and _BANDWIDTH_KEY.search(key)
                    and (not parent or parent == "memory")
                    and not key.startswith("copy")
                ):
                    bandwidth = number(value) * (1000.0 if "tb" in key else 1.0)

    visit(peaks or {}, "")
    return {d: compute[d] for d in sorted(compute, key=DTYPES.index)}, bandwidth


def measured_ceilings(result: Result) -> tuple[dict[str, float], float | None]:
    return ceilings((result.data.get("peaks") or {}).get("measured"))


def theoretical_ceilings(result: Result) -> tuple[dict[str, float], float | None]:
    return ceilings((result.data.get("peaks") or {}).get("theoretical"))


# ----------------------------------------------------------------------------- formatting


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` significant digits, '–' for None."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def pct(value: Any) -> str:
    """A fraction as a percentage with one decimal, '–' for None."""
    return "–" if value is None else f"{100 * value:.1f}%"


def params_text(params: Any) -> str:
    """``k=v`` pairs, compact, in the order given."""
    if isinstance(params, dict):
        return " ".join(f"{k}={v}" for k, v in params.items()).replace("|", "/")
    return str(params)


def throughput(row: dict) -> tuple[float | None, str]:
    """(value, unit) of a row's headline throughput: GB/s for the bandwidth family and FLOP-less
    ops, TFLOP/s otherwise."""
    if row["family"] == BANDWIDTH_FAMILY or not row.get("flops"):
        return row.get("gbs"), "GB/s"
    return row.get("tflops"), "TFLOP/s"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def case_key(row: dict) -> tuple:
    return (row["family"], row["op"], row["dtype"], json.dumps(row["params"], sort_keys=True))
