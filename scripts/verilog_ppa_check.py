"""PPA of every reference design of a Verilog benchmark that passes its own test bench.

Usage:
    python scripts/verilog_ppa_check.py [--benchmark rtllm_v1.1] [--path FOLDER]
        [--problems a,b] [--json OUT] [--liberty LIB] [--timeout 120]

Each reference design is simulated with its test bench (iverilog, dumping a VCD of the design
instance); a passing one is synthesised onto the Liberty library (OSU 0.18 µm by default),
timed with OpenSTA and powered with the VCD's input activity (``llm.verilog.ppa``). Prints a
table (design, cells, area µm², delay ns, power µW, activity source, transistors (``+``: yosys
leaves flip-flops out of its count), seconds) and, with ``--json``,
writes every figure, the reasons for any missing one and the tool versions. The data folder
comes from ``DATA_DIR`` (or ``--path``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm.verilog.benchmarks import load_benchmark  # noqa: E402
from llm.verilog.ppa import ppa  # noqa: E402
from llm.verilog.sim import simulate  # noqa: E402

MISSING = ("area_um2", "delay_ns", "power_uw")


def _cell(value: float | int | None, digits: int) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    """Run the check; the exit status is 1 when a passing design lacks a figure."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--benchmark", default="rtllm_v1.1")
    ap.add_argument("--path", default=None, help="the benchmark folder (default: DATA_DIR's)")
    ap.add_argument("--problems", default=None, help="comma-separated problem ids")
    ap.add_argument("--liberty", type=Path, default=None)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per design and tool")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    problems = load_benchmark(
        args.benchmark, args.path, args.problems.split(",") if args.problems else None
    )
    start = time.monotonic()
    rows: list[dict] = []
    header = f"{'design':<20} {'cells':>6} {'area µm²':>10} {'delay ns':>9} {'power µW':>9} "
    header += f"{'source':>8} {'transistors':>11} {'seconds':>8}"
    print(header)
    for problem in problems:
        with tempfile.TemporaryDirectory(prefix="effml_ppa_check_") as tmp:
            t0 = time.monotonic()
            sim = simulate(problem, problem.reference, keep_dir=Path(tmp) / "sim", vcd=True)
            row: dict = {"design": problem.id, "passed": sim.passed, "sim_reason": sim.reason}
            if sim.passed:
                result = ppa(
                    problem.reference,
                    problem.top_module,
                    liberty=args.liberty,
                    vcd=sim.vcd_path,
                    timeout_s=args.timeout,
                )
                row.update({k: v for k, v in result.as_dict().items() if k != "logs"})
            row["total_seconds"] = time.monotonic() - t0
        rows.append(row)
        if not sim.passed:
            print(f"{problem.id:<20} reference fails its test bench: {sim.reason}")
            continue
        transistors = _cell(row["transistors"], 0) + (
            "+" if row["transistors_exclude_flops"] else ""
        )
        print(
            f"{problem.id:<20} {_cell(row['cells'], 0):>6} {_cell(row['area_um2'], 1):>10} "
            f"{_cell(row['delay_ns'], 3):>9} {_cell(row['power_uw'], 2):>9} "
            f"{str(row['power_source']):>8} {transistors:>11} "
            f"{row['total_seconds']:>8.2f}"
        )
        by_reason: dict[str, list[str]] = {}
        for key, why in row["reasons"].items():
            by_reason.setdefault(why, []).append(key)
        for why, keys in by_reason.items():
            print(f"{'':<20} {', '.join(keys)}: {why}")
        for note in row["notes"]:
            print(f"{'':<20} note: {note}")
    wall = time.monotonic() - start
    passing = [r for r in rows if r["passed"]]
    incomplete = [r["design"] for r in passing if any(r.get(k) is None for k in MISSING)]
    print(
        f"\n{len(passing)} of {len(rows)} reference designs pass; {len(passing) - len(incomplete)}"
        f" have area, delay and power; {wall:.1f} s in all"
    )
    if incomplete:
        print(f"missing a figure: {', '.join(incomplete)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"benchmark": args.benchmark, "wall_s": wall, "rows": rows}, indent=1)
        )
    return 1 if incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
