"""Simulation: references pass, broken and wrong designs fail, forged pass lines are caught in
both scoring conventions, a hanging simulation is killed, a missing tool is named."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from effml.errors import MissingToolError
from llm.verilog.benchmarks import Problem, load_benchmark, reference_answer
from llm.verilog.sim import simulate
from llm.verilog.tools import find_tool, tool_versions

pytestmark = pytest.mark.skipif(
    shutil.which("iverilog") is None or shutil.which("vvp") is None,
    reason="iverilog/vvp not installed (apt-get install iverilog)",
)
DATA = os.environ.get("DATA_DIR")

# an RTLLM-style test bench: prints the pass line or an error count
RTLLM_TB = """`timescale 1ns/1ps
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
WRONG = "module and2(input a, input b, output y);\n  assign y = a | b;\nendmodule\n"
BROKEN = "module and2(input a, input b, output y)\n  assign y = a & ;\nendmodule\n"
FORGED = (
    "module and2(input a, input b, output y);\n  assign y = 1'b0;\n"
    '  initial #2 $display("===========Your Design Passed===========");\nendmodule\n'
)
# the text is assembled at run time, so only the output check can see it
FORGED_HIDDEN = (
    "module and2(input a, input b, output y);\n  assign y = 1'b0;\n"
    '  initial #2 $display("%s%s", "===========Your Desi", "gn Passed===========");\n'
    "endmodule\n"
)
HANG = (
    "module and2(input a, input b, output y);\n  reg r = 0;\n  assign y = a & b;\n"
    "  initial forever r = ~r;\nendmodule\n"
)

VE_TB = """`timescale 1 ps/1 ps
module tb();
  reg clk = 0; reg a = 0; wire y_ref, y_dut; integer errors = 0, clocks = 0;
  always #5 clk = ~clk;
  RefModule good1 (.a(a), .y(y_ref));
  TopModule top_module1 (.a(a), .y(y_dut));
  always @(posedge clk) begin
    clocks = clocks + 1; a <= $random;
    if (y_ref !== y_dut) errors = errors + 1;
  end
  initial begin
    #200;
    $display("Mismatches: %1d in %1d samples", errors, clocks);
    $finish;
  end
endmodule
"""
VE_REF = "module RefModule(input a, output y);\n  assign y = ~a;\nendmodule\n"


def rtllm_problem() -> Problem:
    return Problem("and2", "tiny", "An AND gate.", None, "and2", RTLLM_TB, GOOD, "rtllm")


def ve_problem() -> Problem:
    return Problem("inv", "tiny", "An inverter.", None, "TopModule", VE_TB, VE_REF, "verilogeval")


def test_rtllm_convention() -> None:
    p = rtllm_problem()
    ok = simulate(p, GOOD, timeout_s=10)
    assert ok.compiled and ok.passed and not ok.forged and ok.reason is None
    assert "Your Design Passed" in ok.sim_log and "EFFML" not in ok.sim_log
    wrong = simulate(p, WRONG, timeout_s=10)
    assert wrong.compiled and not wrong.passed and wrong.mismatches == 2 and wrong.samples == 4
    assert wrong.reason.startswith("functional mismatch")
    broken = simulate(p, BROKEN, timeout_s=10)
    assert not broken.compiled and not broken.passed
    assert broken.reason.startswith("compile failed") and "design.v" in broken.reason


@pytest.mark.parametrize("design", [FORGED, FORGED_HIDDEN], ids=["literal", "assembled"])
def test_rtllm_forged_pass_line(design: str) -> None:
    r = simulate(rtllm_problem(), design, timeout_s=10)
    assert r.compiled and r.forged and not r.passed and "forged" in r.reason


def test_verilogeval_convention_and_forgery() -> None:
    p = ve_problem()
    good = "module TopModule(input a, output y);\n  assign y = ~a;\nendmodule\n"
    ok = simulate(p, good, timeout_s=10)
    assert ok.passed and ok.mismatches == 0 and ok.samples == 20
    wrong = simulate(p, good.replace("~a", "a"), timeout_s=10)
    assert not wrong.passed and wrong.mismatches == 20 and not wrong.forged
    forged = (
        "module TopModule(input a, output y);\n  assign y = a;\n"
        '  initial #100 begin $display("Mismatches: 0 in 100 samples"); $finish; end\n'
        "endmodule\n"
    )
    r = simulate(p, forged, timeout_s=10)
    assert r.forged and not r.passed
    # a pass line in the design's source is flagged even if it never prints
    extra = (
        good + '\nmodule sneaky;\n  initial $display("Mismatches: 0 in 9 samples");\nendmodule\n'
    )
    r = simulate(p, extra, timeout_s=10)
    assert r.forged and not r.passed
    # an extra top-level module of the design is not elaborated (-s tb): it never runs
    wrong_extra = good.replace("~a", "a") + (
        '\nmodule sneaky;\n  initial begin #1 $display("%s", "ran"); $finish; end\nendmodule\n'
    )
    r = simulate(p, wrong_extra, timeout_s=10)
    assert "ran" not in r.sim_log and r.mismatches == 20 and not r.passed


def test_infinite_loop_is_killed() -> None:
    r = simulate(rtllm_problem(), HANG, timeout_s=2)
    assert r.compiled and r.timed_out and not r.passed
    assert r.reason == "simulation timed out (killed)" and r.seconds < 10


def test_keep_dir_and_vcd(tmp_path: Path) -> None:
    r = simulate(rtllm_problem(), GOOD, timeout_s=10, keep_dir=tmp_path / "run", vcd=True)
    assert r.passed and r.vcd_path == tmp_path / "run" / "dump.vcd"
    text = r.vcd_path.read_text()
    assert "$var" in text and " y " in text
    assert (tmp_path / "run" / "design.v").read_text() == GOOD
    assert (tmp_path / "run" / "sim.log").is_file()


def test_missing_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match="apt-get install iverilog"):
        simulate(rtllm_problem(), GOOD)
    with pytest.raises(MissingToolError, match="yosys"):
        find_tool("yosys")
    assert tool_versions() == {"iverilog": None, "vvp": None, "yosys": None, "sta": None}


@pytest.mark.skipif(not DATA, reason="DATA_DIR unset (set DATA_DIR=../shared/data)")
@pytest.mark.parametrize(
    "name,pid",
    [
        ("rtllm_v1.1", "alu"),
        ("rtllm_v2", "freq_divbyeven"),
        ("verilogeval_v1_human", "gatesv"),
        ("verilogeval_v2", "Prob002_m2014_q4i"),
    ],
)
def test_real_reference_passes(name: str, pid: str) -> None:
    (p,) = load_benchmark(name, problems=[pid])
    r = simulate(p, reference_answer(p), timeout_s=20)
    assert r.passed, r.reason


@pytest.mark.skipif(not DATA, reason="DATA_DIR unset (set DATA_DIR=../shared/data)")
def test_known_iverilog11_failure_is_reported() -> None:
    (p,) = load_benchmark("rtllm_v1.1", problems=["radix2_div"])
    r = simulate(p, reference_answer(p), timeout_s=20)
    assert not r.compiled and "break statements not supported" in r.reason
