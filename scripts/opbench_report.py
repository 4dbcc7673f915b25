"""Report on operator-benchmark results: throughput, rooflines, machines side by side.

Usage:
    python scripts/opbench_report.py RESULT.json [RESULT2.json ...] [--out DIR]

Each RESULT is the ``opbench.json`` of a run of ``python run.py experiment=opbench`` (or
``opbench_quick``); the plots and the Markdown table are those of ``tasks/opbench/report.py``
(see there), written into ``--out`` (default: the folder of the first RESULT). With two
RESULTs or more it adds the machines side by side (``comparison.png`` and a table).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tasks.opbench.report import report
from tasks.opbench.results import OpbenchReportError, load_results


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="opbench.json files")
    parser.add_argument("--out", type=Path, default=None, help="default: the first's folder")
    args = parser.parse_args(argv)
    try:
        results = load_results(args.results)
        written = report(results, args.out or args.results[0].parent)
    except OpbenchReportError as err:
        raise SystemExit(f"opbench_report: {err}") from None
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
