"""Code extraction from model replies."""

from __future__ import annotations

from llm.verilog.extract import extract_verilog

ADDER = "module add(input a, input b, output s);\n  assign s = a ^ b;\nendmodule"
TOP = "module top(input a, input b, output s);\n  add u0 (.a(a), .b(b), .s(s));\nendmodule"


def test_fenced_block_with_prose() -> None:
    reply = f"Here is the design:\n```verilog\n{ADDER}\n```\nIt adds two bits."
    ex = extract_verilog(reply, "add")
    assert ex.reason is None and ex.code.strip() == ADDER


def test_systemverilog_fence_and_helpers() -> None:
    unused = "module unused(input x);\nendmodule"
    reply = f"```systemverilog\n{TOP}\n\n{unused}\n```\nand the helper\n```\n{ADDER}\n```"
    ex = extract_verilog(reply, "top")
    assert "module top" in ex.code and "module add" in ex.code
    assert "module unused" not in ex.code


def test_raw_module_without_fence() -> None:
    reply = f"Sure.\n`timescale 1ns/1ps\n{ADDER}\nThat is all."
    ex = extract_verilog(reply, "add")
    assert ex.code.startswith("`timescale 1ns/1ps") and ex.code.rstrip().endswith("endmodule")
    assert "That is all" not in ex.code


def test_wrong_module_name() -> None:
    ex = extract_verilog(f"```verilog\n{ADDER}\n```", "adder")
    assert ex.code is None and ex.reason == "no module named adder; found add"


def test_no_code() -> None:
    ex = extract_verilog("I cannot help with that.", "add")
    assert ex.code is None and "no Verilog code" in ex.reason
    assert extract_verilog("", "add").reason.startswith("empty reply")


def test_comment_does_not_define_a_module() -> None:
    reply = "```verilog\n// module add is below\n" + ADDER.replace("add", "adder") + "\n```"
    ex = extract_verilog(reply, "add")
    assert ex.code is None and "found adder" in ex.reason


def test_verilogeval_v1_body_completion() -> None:
    header = "module top_module(input a, input b, output out);\n"
    ex = extract_verilog("  assign out = a & b;\nendmodule\n", "top_module", header)
    assert ex.code == header + "  assign out = a & b;\nendmodule\n"
    ex = extract_verilog("```verilog\nassign out = a | b;\n```", "top_module", header)
    assert ex.code == header + "assign out = a | b;\nendmodule\n"
    # a full module in the reply is used as is, not joined to the header
    full = "module top_module(input a, input b, output out);\nassign out = a;\nendmodule"
    assert extract_verilog(full, "top_module", header).code.strip() == full
    assert extract_verilog("No idea.", "top_module", header).code is None


def test_fence_opened_mid_code() -> None:
    # archived replies where a second answer was glued on: the fence opens inside the code
    reply = ADDER.replace("endmodule", "") + "```verilog\nendmodule\n"
    ex = extract_verilog(reply, "add")
    assert ex.code is not None and "assign s = a ^ b;" in ex.code
