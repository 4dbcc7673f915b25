"""Graph of Thought and its baselines (IO, CoT, Tree of Thoughts) on Game of 24, polynomial
equations and recursive sequences, scored by exact checkers (arXiv:2308.08614, arXiv:2305.10601).

    python run.py experiment=got_game24                         # the bundled local model
    python run.py experiment=tot_game24 reason.task.ranks=[901,910]
    python run.py experiment=got_polynomial llm=openai llm.model=<served model>
    python run.py -m experiment=io_game24,cot_game24,tot_game24,got_game24 reason.task.limit=10

No datamodule, model or trainer. Settings: ``reason.task`` (which problems, a group of
``conf/reason/task/``), ``reason.strategy`` (the graph of operations and its budget, a group of
``conf/reason/strategy/``), ``reason.draw`` and the ``llm:`` group. Problems run
``llm.concurrency`` at a time; each one's record (every prompt, reply and the thought graph)
goes to ``records/<problem>.json`` as it finishes, the first ``reason.draw`` graphs are drawn
to ``graphs/``, ``problems.csv`` gets a row per problem, ``metrics.json`` the totals
(``reason/accuracy``, ``reason/llm_calls``, tokens, ``reason/wall_s`` and the projected cost
of the full set: ``reason/full_set_*``, the per-problem means times its size) and
``reason.png`` plots them. A failed request is recorded against its problem and the run goes
on; a rerun answers every request it already made from the response cache
(``llm.cache_dir``), so an interrupted run resumes at no cost.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from effml.checks import check_choice, check_int, check_range
from effml.errors import ConfigError
from llm.concurrency import Failed, map_bounded
from llm.factory import build_client, check_llm_config
from llm.reasoning.adapters import ADAPTERS, load_problems
from llm.reasoning.controller import check_graph, solve
from llm.reasoning.graph_draw import draw
from tasks.core import optimized_value, update_metrics_json

log = logging.getLogger(__name__)


def check_reason(cfg: DictConfig, spec: DictConfig | None = None) -> None:
    """The ``reason`` and ``llm`` blocks, before any problem is loaded or request made."""
    if cfg.get("reason") is None or cfg.reason.get("task") is None:
        raise ConfigError("reason", None, "is missing", fix="Use experiment=got_game24")
    reason = OmegaConf.to_container(cfg.reason, resolve=True)
    task, strategy = reason.get("task") or {}, reason.get("strategy") or {}
    try:
        check_choice(task, "name", tuple(ADAPTERS))
        if task.get("name") is None:
            raise ConfigError("name", None, "must be set", example="game24")
        check_int(task, "limit", minimum=1, example=10)
        if task["name"] == "game24":
            ranks = task.get("ranks")
            if not (
                isinstance(ranks, list)
                and len(ranks) == 2
                and all(isinstance(r, int) for r in ranks)
                and 1 <= ranks[0] <= ranks[1]
            ):
                raise ConfigError(
                    "ranks",
                    ranks,
                    "must be [first, last] with 1 <= first <= last",
                    example=[901, 1000],
                )
        else:
            check_int(task, "seed", minimum=0, example=0)
            check_int(task, "count", minimum=1, example=100)
    except ConfigError as err:
        raise err.with_prefix("reason.task.") from None
    try:
        if not strategy.get("name"):
            raise ConfigError("name", strategy.get("name"), "must name the strategy", example="got")
        check_int(strategy, "max_calls", minimum=1, example=60)
        check_int(strategy, "max_tokens", minimum=1, example=128)
        check_range(strategy, "temperature", 0.0, 2.0, example=0.7)
        check_graph(strategy.get("graph"), task["name"])
    except ConfigError as err:
        raise err.with_prefix("reason.strategy.") from None
    try:
        check_int(reason, "draw", minimum=0, example=3)
    except ConfigError as err:
        raise err.with_prefix("reason.") from None
    check_llm_config(cfg.llm)


def summarise(records: list[dict], full: int) -> dict[str, float]:
    """``reason/*`` totals and the projection of the per-problem means to ``full`` problems."""
    count = len(records)
    metrics = {
        "reason/problems": float(count),
        "reason/accuracy": sum(r["correct"] for r in records) / max(count, 1),
        "reason/any_correct": sum(r["any_correct"] for r in records) / max(count, 1),
        "reason/problem_errors": float(sum(bool(r.get("error")) for r in records)),
        "reason/budget_stops": float(sum(bool(r.get("stopped")) for r in records)),
    }
    for key in ("calls", "prompt_tokens", "completion_tokens", "wall_s"):
        total = float(sum(r.get(key, 0) for r in records))
        name = "llm_calls" if key == "calls" else key
        metrics[f"reason/{name}"] = total
        if count:
            metrics[f"reason/full_set_{name}"] = total / count * full
    metrics["reason/full_set_problems"] = float(full)
    return metrics


def plot(records: list[dict], path: Path, title: str) -> None:
    """Per problem: correct or not (left), calls and seconds (right)."""
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    names = [r["problem"].split("-", 1)[-1] for r in records]
    left.bar(names, [int(r["correct"]) for r in records], color="tab:green", label="pick")
    left.bar(
        names,
        [0.5 * int(r["any_correct"]) for r in records],
        color="tab:olive",
        alpha=0.6,
        label="any answer (half bar)",
    )
    left.set(ylim=(0, 1.05), ylabel="correct", title=title)
    left.legend(fontsize=7)
    right.bar(names, [r["calls"] for r in records], color="tab:blue", label="requests")
    twin = right.twinx()
    twin.plot(names, [r["wall_s"] for r in records], "o-", color="tab:red", label="seconds")
    right.set(ylabel="requests", title="cost per problem")
    twin.set_ylabel("seconds")
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=90, labelsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def failed_record(adapter: Any, error: BaseException) -> dict:
    """The record of a problem whose run raised."""
    return {
        "problem": adapter.problem_id,
        "task": adapter.task,
        "text": adapter.problem_text,
        "answer": None,
        "correct": False,
        "reason": "no answer",
        "any_correct": False,
        "calls": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "wall_s": 0.0,
        "stopped": None,
        "error": f"{type(error).__name__}: {error}",
        "exchanges": [],
        "graph": {"thoughts": [], "operations": []},
    }


def reason(cfg: DictConfig) -> float | None:
    """Run the strategy over the task's problems; records, graphs, metrics.json, plot."""
    out = Path(cfg.paths.output_dir)
    (out / "records").mkdir(parents=True, exist_ok=True)
    settings: Mapping[str, Any] = OmegaConf.to_container(cfg.reason, resolve=True)
    task, strategy = settings["task"], settings["strategy"]
    problems = load_problems(task)
    full = len(load_problems({**task, "limit": None}))
    client = build_client(cfg.llm)
    log.info(
        "%d of %d %s problems, strategy %s", len(problems), full, task["name"], strategy["name"]
    )
    started = time.perf_counter()

    def one(adapter: Any) -> dict:
        record = solve(
            adapter,
            strategy["graph"],
            client,
            strategy["max_calls"],
            strategy.get("temperature", 0.7),
            strategy.get("max_tokens", 128),
        )
        path = out / "records" / f"{adapter.problem_id}.json"
        path.write_text(json.dumps({**record, "strategy": strategy["name"]}, indent=1, default=str))
        return record

    results = map_bounded(one, problems, cfg.llm.get("concurrency", 1), "problems")
    records = []
    for adapter, record in zip(problems, results, strict=True):
        if isinstance(record, Failed):
            record = failed_record(adapter, record.error)
            (out / "records" / f"{adapter.problem_id}.json").write_text(
                json.dumps({**record, "strategy": strategy["name"]}, indent=1)
            )
        if record.get("error"):
            log.warning("problem %s: %s", record["problem"], record["error"])
        records.append(record)
    for record in records[: settings.get("draw", 3)]:
        if record["graph"]["thoughts"]:
            title = f"{strategy['name']} on {record['problem']}: {record['reason']}"
            draw(record["graph"], out / "graphs" / record["problem"], title)
    columns = (
        "problem",
        "answer",
        "correct",
        "any_correct",
        "reason",
        "calls",
        "prompt_tokens",
        "completion_tokens",
        "wall_s",
        "stopped",
        "error",
    )
    pd.DataFrame([{k: r.get(k) for k in columns} for r in records]).to_csv(
        out / "problems.csv", index=False
    )
    metrics = summarise(records, full)
    metrics["reason/run_wall_s"] = time.perf_counter() - started
    metrics.update({f"llm/{k}": float(v) for k, v in client.usage.as_dict().items()})
    if records:  # seconds inside model calls (no model loading), projected to the full set
        metrics["reason/full_set_model_s"] = metrics["llm/wall_s"] / len(records) * full
    title = f"{strategy['name']} on {task['name']} ({cfg.llm._target_.split('.')[-1]})"
    plot(records, out / "reason.png", title)
    update_metrics_json(out, metrics)
    for key, value in sorted(metrics.items()):
        log.info("%s = %.4g", key, value)
    return optimized_value(metrics, cfg.get("optimized_metric"))


reason.check_config = check_reason
