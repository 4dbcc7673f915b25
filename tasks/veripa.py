"""The Verilog method's task: generate, repair against the simulator, improve PPA
(arXiv:2312.01022, arXiv:2510.15899), on RTLLM and VerilogEval.

    python run.py experiment=veripa_rtllm                                # the local model
    python run.py experiment=veripa_rtllm llm=replay_gpt4 refine.max_rounds=0
    python run.py experiment=veripa_verilogeval llm=openai llm.model=...  # a served model

No datamodule, model or trainer. The settings are the top-level ``benchmark:`` (which problems),
``refine:`` (``llm.verilog.veripa.RefineSettings``) and ``harness:`` (parallel simulations)
blocks and the ``llm:`` group. Problems run ``llm.concurrency`` at a time; each one's record
(every prompt, reply, tool log and figure) is written to ``records/<problem>.json`` as it
finishes, ``samples.csv`` gets a row per sample, ``metrics.json`` the rates
(``verilog/syntax_rate``, ``verilog/functional_pass@1``, ``@5``, per stage and the PPA
changes, fractions), and ``veripa.png`` plots them. A rerun answers every request it already
made from the response cache (``llm.cache_dir``), so an interrupted run resumes at no cost.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from effml.checks import check_choice, check_int, check_range
from effml.errors import ConfigError, MissingToolError, UserError
from llm.concurrency import Failed, map_bounded
from llm.factory import build_client, check_llm_config
from llm.verilog.benchmarks import FOLDERS, load_benchmark
from llm.verilog.scoring import aggregate
from llm.verilog.tools import find_tool, tool_versions
from llm.verilog.veripa import OBJECTIVES, RefineSettings, SampleRunner, stage_rows
from tasks.core import optimized_value, update_metrics_json

log = logging.getLogger(__name__)

STAGES = ("generate", "repair", "final")
PPA_FIGURES = ("area_um2", "delay_ns", "power_uw")


def check_veripa(cfg: DictConfig, spec: DictConfig | None = None) -> None:
    """The ``benchmark``, ``refine``, ``harness`` and ``llm`` blocks, before any request."""
    for block in ("benchmark", "refine", "harness", "llm"):
        if cfg.get(block) is None:
            raise ConfigError(block, None, "is missing", fix="Use experiment=veripa_rtllm")
    for block, check in (("benchmark", _check_benchmark), ("refine", _check_refine),
                         ("harness", _check_harness)):  # fmt: skip
        try:
            check(cfg[block])
        except ConfigError as err:
            raise err.with_prefix(f"{block}.") from None
    check_llm_config(cfg.llm)


def _check_benchmark(bench: Mapping[str, Any]) -> None:
    check_choice(bench, "name", tuple(FOLDERS))
    check_int(bench, "limit", minimum=1, example=5)


def _check_refine(refine: Mapping[str, Any]) -> None:
    for key, low, example in (("samples", 1, 5), ("max_rounds", 0, 3), ("ppa_rounds", 0, 2),
                              ("max_tokens", 1, 1024)):  # fmt: skip
        check_int(refine, key, minimum=low, example=example)
    check_choice(refine, "objective", OBJECTIVES)
    check_range(refine, "target", 0.0, 1.0, low_open=True, example=0.1)
    check_range(refine, "temperature", 0.0, 2.0, example=0.8)
    for key in ("sim_timeout_s", "ppa_timeout_s"):
        check_range(refine, key, 0.0, None, low_open=True, example=30)


def _check_harness(harness: Mapping[str, Any]) -> None:
    check_int(harness, "jobs", minimum=1, example=2)


def settings_of(refine: Mapping[str, Any]) -> RefineSettings:
    return RefineSettings(**{k: refine[k] for k in RefineSettings.__dataclass_fields__})


def safe_name(problem_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", problem_id)


def failed_row(problem_id: str, index: int, error: str | None) -> dict:
    """The row of a sample that was never generated."""
    flags = {f"{stage}_{what}": False for stage in STAGES for what in ("compiled", "passed")}
    return {"problem": problem_id, "sample": index, **flags, "repair_rounds": 0, "error": error}


def summarise(rows: list[dict], samples: int) -> dict[str, float]:
    """``verilog/*`` metrics (fractions): the final figures, each stage's, and PPA changes."""
    metrics: dict[str, float] = {}
    ks = tuple(k for k in (1, 5) if k <= samples)
    for stage in STAGES:
        scores = aggregate(
            [{"problem": r["problem"], "compiled": r[f"{stage}_compiled"],
              "passed": r[f"{stage}_passed"]} for r in rows], ks,
        )  # fmt: skip
        prefix = "verilog/" if stage == "final" else f"verilog/{stage}_"
        for key in ("syntax_rate", *(f"functional_pass@{k}" for k in ks)):
            if key in scores:
                metrics[prefix + key] = float(scores[key])
    staged = [r for r in rows if "ppa_rounds" in r]
    metrics["verilog/samples"] = float(len(rows))
    metrics["verilog/ppa_samples"] = float(len(staged))
    if staged:
        metrics["verilog/ppa_accepted_rate"] = sum(r["ppa_accepted"] for r in staged) / len(staged)
        for name in PPA_FIGURES:
            deltas = [r[f"{name}_delta"] for r in staged if not math.isnan(r[f"{name}_delta"])]
            if deltas:
                metrics[f"verilog/ppa_{name.split('_')[0]}_delta"] = sum(deltas) / len(deltas)
    return metrics


def plot(metrics: dict[str, float], rows: list[dict], path: Path, title: str) -> None:
    """Pass rates per stage (left) and the stage-2 PPA changes per sample (right)."""
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    names = ["generate", "repair", "final"]
    keys = {"syntax": "syntax_rate", "pass@1": "functional_pass@1"}
    for i, (label, key) in enumerate(keys.items()):
        values = [metrics.get(f"verilog/{s}_{key}" if s != "final" else f"verilog/{key}", 0.0)
                  for s in names]  # fmt: skip
        left.bar([j + 0.4 * i for j in range(3)], values, 0.4, label=label)
    left.set(xticks=[0.2, 1.2, 2.2], xticklabels=["generated", "after stage 1", "after stage 2"],
             ylim=(0, 1), ylabel="fraction", title=title)  # fmt: skip
    left.legend()
    staged = [r for r in rows if "ppa_rounds" in r]
    for i, name in enumerate(PPA_FIGURES):
        deltas = [100 * r[f"{name}_delta"] for r in staged if not math.isnan(r[f"{name}_delta"])]
        right.scatter([i] * len(deltas), deltas, alpha=0.6)
    right.axhline(0, color="grey", linewidth=0.8)
    right.set(xticks=range(3), xticklabels=["area", "delay", "power"], ylabel="change (%)",
              title=f"stage 2: PPA change of {len(staged)} passing samples")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def veripa(cfg: DictConfig) -> float | None:
    """Run the method over the configured benchmark; records, samples.csv, metrics.json, plot."""
    out = Path(cfg.paths.output_dir)
    records_dir = out / "records"
    records_dir.mkdir(parents=True, exist_ok=True)
    bench = cfg.benchmark
    problems = load_benchmark(
        bench.name, bench.get("path"),
        list(bench.problems) if bench.get("problems") else None, bench.get("limit"),
    )  # fmt: skip
    settings = settings_of(OmegaConf.to_container(cfg.refine, resolve=True))
    for tool in ("iverilog", "vvp") + (("yosys", "sta") if settings.ppa_rounds else ()):
        try:
            find_tool(tool)
        except MissingToolError as err:  # recorded against each problem; the run goes on
            log.warning("%s", err)
    client = build_client(cfg.llm)
    runner = SampleRunner(client, settings, jobs=cfg.harness.jobs)
    log.info("%d problems of %s, %d samples each, tools %s", len(problems), bench.name,
             settings.samples, tool_versions())  # fmt: skip

    def one(problem) -> dict:
        try:
            record = runner.problem(problem)
        except UserError as err:  # a missing tool, a bad reply: against this problem
            record = {"problem": problem.id, "benchmark": problem.benchmark, "samples": [],
                      "error": f"{type(err).__name__}: {err}"}  # fmt: skip
        path = records_dir / f"{safe_name(problem.id)}.json"
        path.write_text(json.dumps(record, indent=1, default=str))
        return record

    records = map_bounded(one, problems, cfg.llm.get("concurrency", 1), "problems")
    rows, errors = [], {}
    for problem, record in zip(problems, records, strict=True):
        if isinstance(record, Failed):
            record = {"problem": problem.id, "samples": [],
                      "error": f"{type(record.error).__name__}: {record.error}"}  # fmt: skip
        if record.get("error"):
            errors[problem.id] = record["error"]
        made = stage_rows(record)
        # samples never made (the server or a tool failed) count as failed, not as absent
        rows += made + [failed_row(problem.id, i, record["error"])
                        for i in range(len(made), settings.samples)]  # fmt: skip
    for problem_id, reason in errors.items():
        log.warning("problem %s: %s", problem_id, reason)
    if rows:
        pd.DataFrame(rows).to_csv(out / "samples.csv", index=False)
    metrics = summarise(rows, settings.samples)
    metrics["verilog/problems"] = float(len(problems))
    metrics["verilog/problem_errors"] = float(len(errors))
    metrics.update({f"llm/{k}": float(v) for k, v in client.usage.as_dict().items()})
    plot(metrics, rows, out / "veripa.png", f"{bench.name} ({cfg.llm._target_.split('.')[-1]})")
    update_metrics_json(out, metrics)
    for key, value in sorted(metrics.items()):
        log.info("%s = %.4g", key, value)
    return optimized_value(metrics, cfg.get("optimized_metric"))


veripa.check_config = check_veripa
