"""Check the Verilog harness: every reference design of a benchmark through its own test
bench, and RTLLM v1.1's archived GPT-4 / GPT-3.5 outputs replayed through the same harness.

Usage:
    python scripts/verilog_harness_check.py [--benchmark NAME|all] [--path DIR] [--jobs N]
        [--timeout 30] [--no-replay] [--json OUT]

NAME is rtllm_v1.1 (default), rtllm_v2, verilogeval_v1_human, verilogeval_v1_machine,
verilogeval_v2 or ``all`` (the four in $DATA_DIR). Prints the tool versions, the pass count
with each failure and its reason, and (for rtllm_v1.1) the replay table: syntax rate and
functional pass@1/pass@5 over the 5 archived trials (RTLLM arXiv:2308.05345 reports GPT-4
80.7% / 43.4% and GPT-3.5 64.1% / 25.5% syntax / functional pass@1).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm.concurrency import Failed, map_bounded  # noqa: E402
from llm.verilog.answers import TRIALS, ReplayClient  # noqa: E402
from llm.verilog.benchmarks import load_benchmark, reference_answer  # noqa: E402
from llm.verilog.extract import extract_verilog  # noqa: E402
from llm.verilog.scoring import aggregate  # noqa: E402
from llm.verilog.sim import simulate  # noqa: E402
from llm.verilog.tools import tool_versions  # noqa: E402

ALL = ["rtllm_v1.1", "rtllm_v2", "verilogeval_v1_human", "verilogeval_v2"]


def check_references(name: str, path: str | None, jobs: int, timeout: float) -> dict:
    """Simulate every reference design of benchmark ``name``; the counts and failures."""
    problems = load_benchmark(name, path)
    t0 = time.monotonic()
    results = map_bounded(
        lambda p: simulate(p, reference_answer(p), timeout_s=timeout),
        problems,
        jobs,
        f"{name} references",
    )
    failures = {}
    for p, r in zip(problems, results, strict=True):
        if isinstance(r, Failed):
            failures[p.id] = f"harness error: {r.error!r}"
        elif not r.passed:
            failures[p.id] = r.reason
    return {
        "benchmark": name,
        "problems": len(problems),
        "passed": len(problems) - len(failures),
        "failures": failures,
        "seconds": round(time.monotonic() - t0, 1),
    }


def replay(model: str, path: str | None, jobs: int, timeout: float, names: str = "exact") -> dict:
    """RTLLM v1.1's archived answers of ``model`` (5 trials) through extraction and simulation
    (``names``: how archived files are matched to problems, see ``ReplayClient``)."""
    client = ReplayClient(model, path, names)
    problems = load_benchmark("rtllm_v1.1", path)
    items = []
    for p in problems:
        answers = client.complete([{"role": "user", "content": p.prompt}], n=TRIALS, key=p.id)
        items += [(p, t, a) for t, a in enumerate(answers, 1)]

    def one(item: tuple) -> dict:
        p, t, answer = item
        ex = extract_verilog(answer, p.top_module, p.module_header)
        if ex.code is None:
            return {
                "problem": p.id,
                "trial": t,
                "compiled": False,
                "passed": False,
                "forged": False,
                "reason": ex.reason,
            }
        r = simulate(p, ex.code, timeout_s=timeout)
        return {
            "problem": p.id,
            "trial": t,
            "compiled": r.compiled,
            "passed": r.passed,
            "forged": r.forged,
            "reason": r.reason,
        }

    records = map_bounded(one, items, jobs, f"replay {model}")
    bad = [r for r in records if isinstance(r, Failed)]
    if bad:
        raise RuntimeError(f"replay {model}: {len(bad)} harness errors, first: {bad[0].error!r}")
    summary = aggregate(records)
    summary["model"] = model
    summary["forged"] = sum(r["forged"] for r in records)
    summary["records"] = records
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="rtllm_v1.1")
    parser.add_argument("--path", default=None, help="benchmark folder (default: $DATA_DIR)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--no-replay", action="store_true")
    parser.add_argument(
        "--names", choices=("exact", "closest"), default="exact",
        help="match archived files to problems by exact name (the published figures) or the "
        "closest name (GPT-3.5's calender.v counts for calendar)",
    )  # fmt: skip
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    names = ALL if args.benchmark == "all" else [args.benchmark]
    out: dict = {"tools": tool_versions(), "references": [], "replay": []}
    print("tools:", json.dumps(out["tools"]))
    for name in names:
        res = check_references(
            name, args.path if len(names) == 1 else None, args.jobs, args.timeout
        )
        out["references"].append(res)
        print(
            f"\n{name}: {res['passed']}/{res['problems']} reference designs pass "
            f"({res['seconds']} s)"
        )
        for pid, reason in res["failures"].items():
            print(f"  FAIL {pid}: {reason}")
    if "rtllm_v1.1" in names and not args.no_replay:
        path = args.path if names == ["rtllm_v1.1"] else None
        print(f"\n{'replay':<8} {'syntax':>8} {'pass@1':>8} {'pass@5':>8} {'forged':>7}")
        for model in ("gpt4", "gpt35"):
            s = replay(model, path, args.jobs, args.timeout, args.names)
            out["replay"].append(s)
            print(
                f"{model:<8} {s['syntax_rate']:8.1%} {s['functional_pass@1']:8.1%} "
                f"{s['functional_pass@5']:8.1%} {s['forged']:7d}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
