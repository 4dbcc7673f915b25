"""The Verilog method's loop and task: stage 1 repairs with tool feedback, stage 2 keeps only
passing improvements, bad replies and failures are recorded per problem, the task writes its
records, CSV, metrics and plot."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from effml.errors import ConfigError, DataError, MissingDataError
from llm.base import LLMClient, LLMRequestError
from llm.verilog.benchmarks import Problem
from llm.verilog.veripa import RefineSettings, SampleRunner, objective_value, stage_rows
from tasks.core import run_task
from tests.conftest import compose_cfg

pytestmark = pytest.mark.skipif(
    shutil.which("iverilog") is None or shutil.which("vvp") is None,
    reason="iverilog/vvp not installed (apt-get install iverilog)",
)
needs_synthesis = pytest.mark.skipif(
    shutil.which("yosys") is None or shutil.which("sta") is None,
    reason="yosys/OpenSTA not installed (apt-get install yosys opensta qflow-tech-osu018)",
)

TB = """`timescale 1ns/1ps
module tb_and;
  reg a, b; wire y; integer i, error = 0;
  and2 dut (.a(a), .b(b), .y(y));
  initial begin
    for (i = 0; i < 4; i = i + 1) begin
      {a, b} = i; #1;
      if (y !== (a & b)) error = error + 1;
    end
    if (error == 0) $display("===========Your Design Passed===========");
    else $display("===========Test completed with %d /4 failures===========", error);
    $finish;
  end
endmodule
"""
GOOD = "module and2(input a, input b, output y);\n  assign y = a & b;\nendmodule\n"
# the same function, marked so the stubbed PPA below can tell the versions apart
LEAN = "module and2(input a, input b, output y);\n  and lean_gate(y, a, b);\nendmodule\n"
WRONG = "module and2(input a, input b, output y);\n  assign y = a | b;\nendmodule\n"
BROKEN = "module and2(input a, input b, output y)\n  assign y = a & ;\nendmodule\n"
HANG = (
    "module and2(input a, input b, output y);\n  reg r = 0;\n  assign y = a & b;\n"
    "  initial forever r = ~r;\nendmodule\n"
)


def fence(code: str) -> str:
    return f"Here it is:\n```verilog\n{code}```\n"


class Scripted(LLMClient):
    """Answers from a list, in order; an exception in the list is raised instead."""

    def __init__(self, answers: list) -> None:
        super().__init__()
        self.answers, self.requests = list(answers), []

    def complete(self, messages, n=1, temperature=0.0, max_tokens=512, stop=None, *, key=None):
        self.requests.append(messages)
        out = []
        for _ in range(n):
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            out.append(answer)
        self.usage.add(calls=1)
        return out

    def identity(self) -> dict:
        return {"kind": "scripted"}


def problem() -> Problem:
    return Problem("and2", "tiny", "Write an AND gate and2(a, b, y).", None, "and2", TB, GOOD,
                   "rtllm")  # fmt: skip


def settings(**kw) -> RefineSettings:
    return RefineSettings(**{"samples": 1, "max_rounds": 3, "ppa_rounds": 0,
                             "sim_timeout_s": 3.0, **kw})  # fmt: skip


def test_stage1_repairs_with_compiler_and_simulator_feedback() -> None:
    client = Scripted([fence(BROKEN), fence(WRONG), fence(GOOD)])
    record = SampleRunner(client, settings()).problem(problem())
    (sample,) = record["samples"]
    stages = sample["stages"]
    assert not stages["generate"]["sim"]["compiled"]
    assert [r["sim"]["passed"] for r in stages["repair"]] == [False, True]
    assert stages["repair"][0]["feedback"].startswith("The code does not compile")
    assert "fails the test bench" in stages["repair"][1]["feedback"]
    assert "2 /4 failures" in client.requests[2][-1]["content"]  # the simulator's own words
    assert sample["final"] == {"code": GOOD, "compiled": True, "passed": True}
    (row,) = stage_rows(record)
    assert (row["generate_compiled"], row["repair_passed"], row["repair_rounds"]) == (
        False,
        True,
        2,
    )


def test_max_rounds_zero_scores_the_first_answer_as_it_is() -> None:
    client = Scripted([fence(WRONG)])
    record = SampleRunner(client, settings(max_rounds=0, ppa_rounds=2)).problem(problem())
    (row,) = stage_rows(record)
    assert not row["final_passed"] and row["repair_rounds"] == 0 and "ppa_rounds" not in row
    assert len(client.requests) == 1


def test_stage2_keeps_only_passing_improvements(monkeypatch: pytest.MonkeyPatch) -> None:
    def measure(self, problem, code):  # a stand-in for synthesis: LEAN is smaller
        area = 80.0 if "lean" in code else 100.0
        return {"area_um2": area, "delay_ns": 1.0, "power_uw": 5.0, "summary": f"area {area}"}

    monkeypatch.setattr(SampleRunner, "measure", measure)
    client = Scripted([fence(GOOD), fence(WRONG), fence(GOOD), fence(LEAN)])
    record = SampleRunner(client, settings(ppa_rounds=3)).problem(problem())
    ppa = record["samples"][0]["stages"]["ppa"]
    verdicts = [r["verdict"].split(":")[0] for r in ppa["rounds"]]
    assert verdicts == ["rejected", "rejected", "accepted"]
    assert "no longer passes" in ppa["rounds"][0]["verdict"]
    assert "reduce the cell area by at least 10%" in client.requests[1][-1]["content"]
    assert record["samples"][0]["final"]["code"] == LEAN
    (row,) = stage_rows(record)
    assert row["final_passed"] and row["ppa_accepted"]
    assert row["area_um2_delta"] == pytest.approx(-0.2)


def test_bad_replies_are_recorded_with_their_reason() -> None:
    client = Scripted(["I am not able to help.", fence(GOOD.replace("and2", "and3")), fence(HANG)])
    record = SampleRunner(client, settings(samples=3, max_rounds=0)).problem(problem())
    generated = [s["stages"]["generate"] for s in record["samples"]]
    assert generated[0]["code"] is None and generated[0]["reason"]
    assert "and2" in generated[1]["reason"]  # no module named and2; found and3
    assert generated[2]["sim"]["timed_out"] and not generated[2]["sim"]["passed"]
    assert [r["error"] is not None for r in stage_rows(record)] == [True, True, True]


def test_a_server_failure_is_recorded_and_the_sample_keeps_its_last_design() -> None:
    client = Scripted([fence(WRONG), LLMRequestError("HTTP 503 after 4 retries")])
    record = SampleRunner(client, settings()).problem(problem())
    (sample,) = record["samples"]
    assert "HTTP 503" in sample["error"] and sample["final"]["compiled"]
    failing = SampleRunner(Scripted([LLMRequestError("refused")]), settings()).problem(problem())
    assert failing["samples"] == [] and "refused" in failing["error"]


def test_objective_values() -> None:
    figures = {"area_um2": 10.0, "delay_ns": 2.0, "power_uw": None}
    assert objective_value(figures, "adp") == 20.0
    assert objective_value(figures, "power") is None and objective_value({}, "area") is None


# --- the task ------------------------------------------------------------------------------


def tiny_benchmark(root: Path) -> Path:
    """An RTLLM-layout folder with one problem, and2."""
    folder = root / "bench" / "and2"
    folder.mkdir(parents=True)
    (folder / "design_description.txt").write_text("Write an AND gate and2(a, b, y).")
    (folder / "testbench.v").write_text(TB)
    (folder / "verified_and2.v").write_text(GOOD.replace("module and2", "module verified_and2"))
    return folder.parent


def veripa_cfg(tmp_path: Path, cache_dir: Path, *overrides: str):
    return compose_cfg([
        "experiment=veripa_rtllm", "llm=reference", f"benchmark.path={tiny_benchmark(tmp_path)}",
        "refine.samples=1", "refine.sim_timeout_s=5", f"paths.output_dir={tmp_path / 'run'}",
        f"paths.cache_dir={cache_dir}", *overrides,
    ])  # fmt: skip


@needs_synthesis
def test_task_with_the_reference_answers(tmp_path: Path, cache_dir: Path) -> None:
    cfg = veripa_cfg(tmp_path, cache_dir, "refine.ppa_rounds=1")
    assert run_task(cfg) == 1.0
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["verilog/syntax_rate"] == metrics["verilog/functional_pass@1"] == 1.0
    assert metrics["verilog/generate_functional_pass@1"] == 1.0
    assert metrics["verilog/ppa_samples"] == 1.0 and metrics["verilog/ppa_accepted_rate"] == 0.0
    record = json.loads((run / "records" / "and2.json").read_text())
    assert record["messages"][1]["content"].startswith("Write an AND gate")
    ppa = record["samples"][0]["stages"]["ppa"]
    assert ppa["before"]["area_um2"] > 0 and ppa["before"]["delay_ns"] > 0
    assert ppa["before"]["power_uw"] > 0 and ppa["before"]["power_source"] == "vcd"
    assert (run / "samples.csv").is_file() and (run / "veripa.png").is_file()


def test_task_records_a_missing_tool_per_problem(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = veripa_cfg(tmp_path, cache_dir, "refine.max_rounds=0")
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    run_task(cfg)
    record = json.loads((tmp_path / "run" / "records" / "and2.json").read_text())
    assert (
        "is not installed" in record["error"]
        and "iverilog" in record["error"]
        and "apt-get install" in record["error"]
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["verilog/problem_errors"] == 1.0
    # the sample that was never made counts as failed
    assert metrics["verilog/syntax_rate"] == metrics["verilog/functional_pass@1"] == 0.0


@pytest.mark.parametrize(
    ("override", "error", "message"),
    [
        ("refine.objective=speed", ConfigError, "refine.objective=speed: choose one of"),
        ("benchmark.name=rtllm_v3", ConfigError, "benchmark.name=rtllm_v3: choose one of"),
        ("refine.max_rounds=-1", ConfigError, "refine.max_rounds=-1: must be >= 0"),
        ("harness.jobs=0", ConfigError, "harness.jobs=0: must be >= 1"),
        ("benchmark.path=/no/such/folder", MissingDataError, "/no/such/folder"),
    ],
)
def test_bad_settings_fail_before_any_request(
    tmp_path: Path, cache_dir: Path, override: str, error: type, message: str
) -> None:
    cfg = veripa_cfg(tmp_path, cache_dir, override)
    with pytest.raises(error, match=message):
        run_task(cfg)
    assert not (tmp_path / "run" / "records").exists() or not any(
        (tmp_path / "run" / "records").iterdir()
    )


def test_a_folder_of_the_wrong_layout_is_a_clear_error(tmp_path: Path, cache_dir: Path) -> None:
    cfg = veripa_cfg(tmp_path, cache_dir)
    wrong = tmp_path / "wrong"
    (wrong / "x").mkdir(parents=True)
    (wrong / "x" / "notes.txt").write_text("no Verilog here")
    cfg.benchmark.path = str(wrong)
    with pytest.raises(DataError, match="wrong"):
        run_task(cfg)


@pytest.mark.skipif(not os.environ.get("DATA_DIR"), reason="DATA_DIR unset (../shared/data)")
def test_replay_through_the_task(tmp_path: Path, cache_dir: Path) -> None:
    cfg = compose_cfg([
        "experiment=veripa_rtllm", "llm=replay_gpt4", "refine.max_rounds=0",
        "benchmark.problems=[adder_8bit,counter_12]", f"paths.output_dir={tmp_path}",
        f"paths.cache_dir={cache_dir}",
    ])  # fmt: skip
    run_task(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["verilog/samples"] == 10.0 and metrics["llm/calls"] == 2.0
    assert 0.0 <= metrics["verilog/functional_pass@1"] <= metrics["verilog/functional_pass@5"]
