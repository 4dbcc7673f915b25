"""Verilog generation with two-stage refinement (arXiv:2312.01022; the PPA stage as in
arXiv:2510.15899).

One problem, one or more samples. Each sample is generated from the problem's description,
then

- stage 1 (function): while the design does not compile or fails its test bench, the compiler
  or simulator output goes back to the model with a request to fix it, for up to
  ``max_rounds`` rounds;
- stage 2 (power, performance, area): a design that passes gets its synthesis (cell area),
  static timing (critical path) and power report and a target ("cut the area by 10 %"); a new
  version replaces it only if it still passes its test bench and improves the objective, for
  up to ``ppa_rounds`` rounds. So stage 2 never returns a design that fails.

``max_rounds=0`` turns both stages off (the first answers are scored as they are). Every
prompt, reply, tool log and figure goes into the sample's record; a failure of the model
server, of extraction or of a tool is recorded against the sample with its reason.
"""

from __future__ import annotations

import math
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effml.errors import UserError
from llm.base import LLMClient, LLMRequestError
from llm.verilog.benchmarks import Problem
from llm.verilog.extract import extract_verilog
from llm.verilog.ppa import ppa
from llm.verilog.sim import simulate

OBJECTIVES = ("area", "delay", "power", "adp")
FEEDBACK_CHARS = 2500  # of a compiler or simulator log sent back to the model

SYSTEM = (
    "You are an expert digital hardware designer. You write correct, synthesizable Verilog. "
    "Answer with the complete Verilog code of the requested module in one ```verilog code "
    "block, keeping the module name and ports exactly as specified."
)


@dataclass(frozen=True)
class RefineSettings:
    """How each sample is generated and refined.

    Args:
        samples: answers per problem (pass@k needs k of them).
        temperature: sampling temperature of every request.
        max_tokens: most tokens per answer.
        max_rounds: stage-1 repair rounds; 0 turns both stages off.
        ppa_rounds: stage-2 rounds for a passing design (0: no stage 2).
        objective: what stage 2 improves: area, delay, power or adp (area × delay).
        target: the relative improvement asked for (0.1: 10 %).
        sim_timeout_s: time limit of one compile or simulation.
        ppa_timeout_s: time limit of one synthesis + timing + power run.
    """

    samples: int = 1
    temperature: float = 0.0
    max_tokens: int = 1024
    max_rounds: int = 3
    ppa_rounds: int = 2
    objective: str = "area"
    target: float = 0.1
    sim_timeout_s: float = 30.0
    ppa_timeout_s: float = 120.0


def task_prompt(problem: Problem) -> str:
    """The first request: the description, and the header to complete where the benchmark
    gives one."""
    text = problem.prompt.strip()
    if problem.module_header and problem.module_header.strip() not in text:
        text += f"\n\nComplete this module:\n```verilog\n{problem.module_header.strip()}\n```"
    return f"{text}\n\nThe top module must be named `{problem.top_module}`."


def objective_value(figures: dict[str, Any] | None, objective: str) -> float | None:
    """The objective's value from a PPA dict (lower is better); None when a figure is missing."""
    if not figures:
        return None
    if objective == "adp":
        area, delay = figures.get("area_um2"), figures.get("delay_ns")
        return None if area is None or delay is None else area * delay
    return figures.get({"area": "area_um2", "delay": "delay_ns", "power": "power_uw"}[objective])


def _clip(text: str, chars: int = FEEDBACK_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= chars else text[:chars] + "\n[... cut ...]"


def repair_feedback(attempt: dict) -> str:
    """What stage 1 tells the model about a failed attempt."""
    if attempt["code"] is None:
        return f"Your answer contained no usable Verilog: {attempt['reason']}."
    sim = attempt["sim"]
    if not sim["compiled"]:
        return "The code does not compile. Compiler output:\n" + _clip(sim["compile_log"])
    if sim["timed_out"]:
        return "The simulation did not finish within its time limit (an infinite loop?)."
    return "The code compiles but fails the test bench. Simulation output:\n" + _clip(
        sim["sim_log"]
    )


def ppa_request(figures: dict, settings: RefineSettings) -> str:
    """What stage 2 tells the model: the reports and the target."""
    value = objective_value(figures, settings.objective)
    goal = {"area": "cell area", "delay": "critical-path delay", "power": "power",
            "adp": "area-delay product"}[settings.objective]  # fmt: skip
    return (
        "This design passes its test bench. Synthesis (OSU 0.18 µm standard cells), static "
        f"timing and power report: {figures['summary']}.\nRewrite it to reduce the {goal} by at "
        f"least {settings.target:.0%} (from {value:.4g}) while keeping exactly the same "
        "function, module name and ports. Answer with the complete module."
    )


class SampleRunner:
    """Runs samples of problems against one client, the simulations bounded by ``jobs``."""

    def __init__(self, client: LLMClient, settings: RefineSettings, jobs: int = 1) -> None:
        self.client, self.settings = client, settings
        self.gate = threading.Semaphore(jobs)

    def ask(self, messages: list[dict], problem: Problem, n: int = 1) -> list[str]:
        s = self.settings
        return self.client.complete(
            messages, n=n, temperature=s.temperature, max_tokens=s.max_tokens, key=problem.id
        )

    def attempt(self, problem: Problem, reply: str, vcd_dir: Path | None = None) -> dict:
        """Extract the code of ``reply`` and simulate it (a VCD into ``vcd_dir`` if given)."""
        found = extract_verilog(reply, problem.top_module, problem.module_header)
        out: dict[str, Any] = {"reply": reply, "code": found.code, "reason": found.reason}
        if found.code is None:
            out["sim"] = None
            return out
        with self.gate:
            result = simulate(
                problem, found.code, self.settings.sim_timeout_s, keep_dir=vcd_dir,
                vcd=vcd_dir is not None,
            )  # fmt: skip
        out["sim"] = result.as_dict()
        out["reason"] = result.reason
        return out

    def measure(self, problem: Problem, code: str) -> dict:
        """PPA of a passing design, power from its own test bench's VCD."""
        with tempfile.TemporaryDirectory(prefix="effml_ppa_") as tmp:
            run = self.attempt(problem, f"```verilog\n{code}\n```", Path(tmp) / "sim")
            vcd = (run["sim"] or {}).get("vcd_path")
            with self.gate:
                figures = ppa(code, problem.top_module, vcd=Path(vcd) if vcd else None,
                              timeout_s=self.settings.ppa_timeout_s)  # fmt: skip
        out = figures.as_dict()
        out["logs"] = {k: _clip(v, 1500) for k, v in out.get("logs", {}).items()}
        out["summary"] = figures.summary()
        return out

    def problem(self, problem: Problem) -> dict:
        """Every sample of one problem; the record of prompts, replies, logs and figures."""
        first = [{"role": "system", "content": SYSTEM},
                 {"role": "user", "content": task_prompt(problem)}]  # fmt: skip
        record: dict[str, Any] = {"problem": problem.id, "benchmark": problem.benchmark,
                                  "messages": first, "samples": [], "error": None}  # fmt: skip
        try:
            replies = self.ask(first, problem, n=self.settings.samples)
        except (LLMRequestError, UserError) as err:
            record["error"] = f"{type(err).__name__}: {err}"
            replies = []
        for index, reply in enumerate(replies):
            record["samples"].append(self.sample(problem, first, reply, index))
        return record

    def sample(self, problem: Problem, first: list[dict], reply: str, index: int) -> dict:
        """One sample through generation, stage 1 and stage 2."""
        s = self.settings
        stages: dict[str, Any] = {"generate": self.attempt(problem, reply)}
        out: dict[str, Any] = {"index": index, "stages": stages, "error": None}
        current = stages["generate"]
        try:
            if s.max_rounds > 0:
                current = self.repair(problem, first, current, stages)
                if _passed(current) and s.ppa_rounds > 0:
                    current = self.improve(problem, first, current, stages)
        except (LLMRequestError, UserError) as err:
            out["error"] = f"{type(err).__name__}: {err}"
        out["final"] = {"code": current["code"], "compiled": _compiled(current),
                        "passed": _passed(current)}  # fmt: skip
        return out

    def repair(self, problem: Problem, first: list[dict], current: dict, stages: dict) -> dict:
        """Stage 1: compiler and simulator feedback until the test bench passes."""
        rounds = stages["repair"] = []
        while not _passed(current) and len(rounds) < self.settings.max_rounds:
            messages = first + [
                {"role": "assistant", "content": current["reply"]},
                {"role": "user", "content": repair_feedback(current)},
            ]
            (reply,) = self.ask(messages, problem)
            current = self.attempt(problem, reply)
            rounds.append({"feedback": messages[-1]["content"], **current})
        return current

    def improve(self, problem: Problem, first: list[dict], current: dict, stages: dict) -> dict:
        """Stage 2: PPA feedback with a target; a version is kept only if it passes and is
        better on the objective."""
        s = self.settings
        base = self.measure(problem, current["code"])
        stage: dict[str, Any] = {"before": base, "rounds": [], "after": base}
        stages["ppa"] = stage
        best = objective_value(base, s.objective)
        if best is None:
            stage["skipped"] = f"no {s.objective} figure: {base.get('reasons')}"
            return current
        for _ in range(s.ppa_rounds):
            messages = first + [
                {"role": "assistant", "content": current["reply"]},
                {"role": "user", "content": ppa_request(stage["after"], s)},
            ]
            (reply,) = self.ask(messages, problem)
            trial = self.attempt(problem, reply)
            entry: dict[str, Any] = {"request": messages[-1]["content"], **trial}
            stage["rounds"].append(entry)
            if not _passed(trial):
                entry["verdict"] = "rejected: it no longer passes its test bench"
                continue
            figures = self.measure(problem, trial["code"])
            value = objective_value(figures, s.objective)
            entry["ppa"] = figures
            if value is None or not value < best:
                entry["verdict"] = f"rejected: {s.objective} {value} is not below {best:.4g}"
                continue
            entry["verdict"] = f"accepted: {s.objective} {best:.4g} -> {value:.4g}"
            best, current, stage["after"] = value, trial, figures
        return current


def _compiled(attempt: dict) -> bool:
    return bool(attempt["sim"] and attempt["sim"]["compiled"])


def _passed(attempt: dict) -> bool:
    return bool(attempt["sim"] and attempt["sim"]["passed"])


def stage_rows(record: dict) -> list[dict]:
    """One row per sample: compiled/passed after generation, stage 1 and stage 2, and the
    stage-2 PPA before and after (flat, for the CSV and the aggregates)."""
    rows = []
    for sample in record["samples"]:
        stages = sample["stages"]
        gen = stages["generate"]
        repaired = stages["repair"][-1] if stages.get("repair") else gen
        row: dict[str, Any] = {
            "problem": record["problem"], "sample": sample["index"],
            "generate_compiled": _compiled(gen), "generate_passed": _passed(gen),
            "repair_compiled": _compiled(repaired), "repair_passed": _passed(repaired),
            "repair_rounds": len(stages.get("repair") or []),
            "final_compiled": sample["final"]["compiled"],
            "final_passed": sample["final"]["passed"],
            "error": sample["error"] or (None if sample["final"]["passed"] else repaired["reason"]),
        }  # fmt: skip
        stage = stages.get("ppa")
        if stage:
            row["ppa_rounds"] = len(stage["rounds"])
            row["ppa_accepted"] = stage["after"] is not stage["before"]
            for name in ("area_um2", "delay_ns", "power_uw"):
                before, after = stage["before"].get(name), stage["after"].get(name)
                row[f"{name}_before"], row[f"{name}_after"] = before, after
                row[f"{name}_delta"] = (
                    (after - before) / before if before and after is not None else math.nan
                )
        rows.append(row)
    return rows
