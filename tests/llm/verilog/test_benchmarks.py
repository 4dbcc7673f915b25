"""Verilog benchmark loaders: counts on the real data, the RTLLM naming pitfalls, the
VerilogEval v1 JSONL format, and the errors for a wrong layout, a missing path and unknown ids."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from effml.errors import ConfigError, DataError, MissingDataError
from llm.verilog.benchmarks import load_benchmark, module_names, reference_answer

DATA = os.environ.get("DATA_DIR")
needs_data = pytest.mark.skipif(
    not DATA or not (Path(DATA) / "verilog").is_dir(),
    reason="DATA_DIR unset or without verilog/ (set DATA_DIR=../shared/data)",
)


@needs_data
@pytest.mark.parametrize(
    "name,count",
    [("rtllm_v1.1", 29), ("rtllm_v2", 50), ("verilogeval_v1_human", 156), ("verilogeval_v2", 156)],
)
def test_counts(name: str, count: int) -> None:
    problems = load_benchmark(name)
    assert len(problems) == count
    assert len({p.id for p in problems}) == count
    for p in problems:
        assert p.prompt.strip() and p.testbench.strip() and p.reference.strip()
        # the top module the test bench needs is what the reference answer defines
        assert p.top_module in module_names(reference_answer(p))


@needs_data
def test_rtllm_pitfalls() -> None:
    v1 = {p.id: p for p in load_benchmark("rtllm_v1.1")}
    # references are named verified_<x>; the test bench instantiates <x>
    assert v1["accu"].top_module == "accu"
    assert module_names(v1["accu"].reference) == ["accu"]
    # the folder adder_pipe_64bit holds verified_adder_64bit.v
    assert v1["adder_pipe_64bit"].top_module == "adder_pipe_64bit"
    # the test bench's data files travel with the problem
    assert set(v1["asyn_fifo"].files) == {"rempty.txt", "tdata.txt", "wfull.txt"}
    assert set(v1["multi_booth_8bit"].files) == {"test_data.dat"}
    assert v1["accu"].files == {} and v1["accu"].category is None
    v2 = {p.id: p for p in load_benchmark("rtllm_v2")}
    assert v2["adder_bcd"].category == "Arithmetic/Adder"
    # the description says freq_diveven, the test bench freq_divbyeven: the prompt says so
    assert v2["freq_divbyeven"].top_module == "freq_divbyeven"
    assert "instantiates this module as `freq_divbyeven`" in v2["freq_divbyeven"].prompt
    assert v2["fixed_point_substractor"].top_module == "fixed_point_subtractor"


@needs_data
def test_verilogeval_formats() -> None:
    (v1,) = load_benchmark("verilogeval_v1_human", problems=["gatesv"])
    assert v1.module_header and v1.module_header.startswith("module top_module")
    assert v1.prompt.endswith(v1.module_header) and v1.top_module == "top_module"
    assert v1.scoring == "verilogeval"
    v2 = load_benchmark("verilogeval_v2", limit=2)
    assert [p.id for p in v2] == ["Prob001_zero", "Prob002_m2014_q4i"]
    assert v2[0].top_module == "TopModule" and "RefModule" in v2[0].reference
    assert "module TopModule" in reference_answer(v2[0])


def test_verilogeval_v1_machine_format(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "descriptions").mkdir()
    row = {
        "task_id": "andgate",
        "prompt": "module top_module(input a, input b, output out);\n",
        "canonical_solution": "assign out = a & b;\nendmodule\n",
        "test": "module tb(); endmodule\n",
    }
    (tmp_path / "data" / "VerilogEval_Machine.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "descriptions" / "VerilogDescription_Machine.jsonl").write_text(
        json.dumps({"task_id": "andgate", "detail_description": "An AND gate."}) + "\n"
    )
    (p,) = load_benchmark("verilogeval_v1_machine", tmp_path)
    assert p.id == "andgate" and p.prompt.startswith("An AND gate.")
    assert p.reference == row["prompt"] + row["canonical_solution"]
    with pytest.raises(DataError, match="VerilogEval_Human.jsonl"):
        load_benchmark("verilogeval_v1_human", tmp_path)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("rtllm_v1.1", "design_description.txt"),
        ("rtllm_v2", "design_description.txt"),
        ("verilogeval_v1_human", "VerilogEval_Human.jsonl"),
        ("verilogeval_v2", "_prompt.txt"),
    ],
)
def test_wrong_layout(tmp_path: Path, name: str, expected: str) -> None:
    (tmp_path / "notes.md").write_text("not a benchmark")
    with pytest.raises(DataError, match=expected) as err:
        load_benchmark(name, tmp_path)
    assert "notes.md" in str(err.value) or "no .jsonl" in str(err.value)


def test_missing_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingDataError, match="benchmark.path="):
        load_benchmark("rtllm_v1.1", tmp_path / "nowhere")
    monkeypatch.delenv("DATA_DIR", raising=False)
    with pytest.raises(MissingDataError, match="DATA_DIR"):
        load_benchmark("verilogeval_v2")
    with pytest.raises(ConfigError, match="rtllm_v1.1"):
        load_benchmark("rtllm_v3")


@needs_data
def test_problem_selection() -> None:
    got = load_benchmark("rtllm_v1.1", problems=["fsm", "accu"])
    assert [p.id for p in got] == ["accu", "fsm"]
    with pytest.raises(ConfigError, match="adder_8bit") as err:
        load_benchmark("rtllm_v1.1", problems=["adder_8bitt"])
    assert "benchmark.problems" in str(err.value)
    assert len(load_benchmark("rtllm_v1.1", limit=3)) == 3
