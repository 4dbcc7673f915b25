"""Compare reasoning runs (tasks/reason.py): accuracy, requests, tokens and time per problem,
one bar per run, grouped by task.

Usage:
    python scripts/reason_report.py outputs/<task_name>/multiruns/<time> [--out DIR]
    python scripts/reason_report.py RUN_DIR [RUN_DIR ...] [--out DIR]

A multirun folder is searched for its jobs (every folder below it holding ``metrics.json``
and ``records/``). Writes ``reason_compare.png`` and ``reason_compare.csv`` to ``--out``
(default: the first folder given) and prints the table as Markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PANELS = (
    ("accuracy", "accuracy (pick)"),
    ("calls", "requests / problem"),
    ("tokens", "tokens / problem"),
    ("seconds", "seconds / problem"),
)


def find_runs(folders: Sequence[Path]) -> list[Path]:
    """Every run folder at or below ``folders`` (one with metrics.json and records/)."""
    runs = []
    for folder in folders:
        found = [
            m.parent
            for m in sorted(folder.rglob("metrics.json"))
            if (m.parent / "records").is_dir()
        ]
        runs.extend(found)
    return runs


def row(run: Path) -> dict:
    """One run's figures: strategy and task (from a record), per-problem means (``seconds``:
    the problem's wall time, the first one's including model loading; ``model_seconds``: time
    inside model calls) and their projection to the full selected set."""
    metrics = json.loads((run / "metrics.json").read_text())
    record = next(iter(sorted((run / "records").glob("*.json"))), None)
    info = json.loads(record.read_text()) if record else {}
    count = max(metrics.get("reason/problems", 0.0), 1.0)
    tokens = metrics.get("reason/prompt_tokens", 0.0) + metrics.get("reason/completion_tokens", 0.0)
    return {
        "run": str(run),
        "strategy": info.get("strategy", run.name),
        "task": info.get("task", "?"),
        "problems": int(metrics.get("reason/problems", 0)),
        "accuracy": metrics.get("reason/accuracy", 0.0),
        "any_correct": metrics.get("reason/any_correct", 0.0),
        "calls": metrics.get("reason/llm_calls", 0.0) / count,
        "tokens": tokens / count,
        "seconds": metrics.get("reason/wall_s", 0.0) / count,
        "errors": int(metrics.get("reason/problem_errors", 0)),
        "model_seconds": metrics.get("llm/wall_s", 0.0) / count,
        "full_set_problems": int(metrics.get("reason/full_set_problems", 0)),
        "full_set_calls": metrics.get("reason/full_set_llm_calls", 0.0),
        "full_set_tokens": tokens / count * metrics.get("reason/full_set_problems", 0.0),
        "full_set_model_hours": metrics.get("llm/wall_s", 0.0)
        / count
        * metrics.get("reason/full_set_problems", 0.0)
        / 3600,
    }


def plot(table: pd.DataFrame, path: Path) -> None:
    """Four panels, one bar per run, labelled ``task/strategy`` (the run folders' names when
    those repeat), coloured by task."""
    fig = Figure(figsize=(12, 3.6))
    FigureCanvasAgg(fig)
    labels = [f"{t}/{s}" for t, s in zip(table["task"], table["strategy"], strict=True)]
    if len(set(labels)) < len(labels):  # two runs of one strategy on one task: their folders
        labels = [Path(r).name for r in table["run"]]
    tasks = sorted(set(table["task"]))
    colors = [f"C{tasks.index(t)}" for t in table["task"]]
    for ax, (key, title) in zip(fig.subplots(1, len(PANELS)), PANELS, strict=True):
        ax.bar(labels, table[key], color=colors)
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=75, labelsize=7)
        if key == "accuracy":
            ax.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(table: pd.DataFrame) -> str:
    """The table as Markdown (numbers to 3 significant digits)."""
    cells = [[f"{v:.3g}" if isinstance(v, float) else str(v) for v in r] for r in table.values]
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    runs = find_runs(args.folders)
    if not runs:
        print(f"no reasoning run (metrics.json + records/) under {args.folders}", file=sys.stderr)
        return 1
    table = pd.DataFrame([row(r) for r in runs]).sort_values(["task", "strategy"])
    out = args.out or args.folders[0]
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "reason_compare.csv", index=False)
    plot(table, out / "reason_compare.png")
    print(markdown(table.assign(run=[Path(r).name for r in table["run"]])))
    print(f"\nwrote {out / 'reason_compare.png'} and {out / 'reason_compare.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
