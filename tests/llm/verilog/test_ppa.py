"""PPA with yosys, OpenSTA and the OSU 0.18 µm library on tiny designs (about 0.3 s each)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from effml.errors import MissingToolError
from llm.verilog.liberty import default_liberty, load_liberty
from llm.verilog.ppa import ppa
from llm.verilog.reports import (
    parse_report_end,
    parse_report_power,
    parse_stat_cmos,
    parse_stat_liberty,
)

ROOT = Path(__file__).resolve().parents[3]


def _have_liberty() -> bool:
    try:
        default_liberty()
    except FileNotFoundError:
        return False
    return True


needs_tools = pytest.mark.skipif(
    shutil.which("yosys") is None or shutil.which("sta") is None or not _have_liberty(),
    reason="needs yosys, OpenSTA (sta) and qflow-tech-osu018: "
    "apt-get install yosys opensta qflow-tech-osu018",
)
needs_iverilog = pytest.mark.skipif(
    shutil.which("iverilog") is None or shutil.which("vvp") is None,
    reason="needs Icarus Verilog: apt-get install iverilog",
)

COUNTER = """
module counter4(input clk, input rst_n, input en, output reg [3:0] q);
  always @(posedge clk or negedge rst_n)
    if (!rst_n) q <= 4'd0;
    else if (en) q <= q + 4'd1;
endmodule
"""


def adder(width: int) -> str:
    """A combinational adder of ``width`` bits."""
    w = width - 1
    return (
        f"module adder(input [{w}:0] a, input [{w}:0] b, input cin,\n"
        f"             output [{w}:0] s, output cout);\n"
        "  assign {cout, s} = a + b + cin;\nendmodule\n"
    )


STAT_023 = """
=== top ===

   Number of wires:                 14
   Number of cells:                 14
     AND2X1                          1
     DFFSR                           4
     INVX1                           2

   Chip area for module '\\top': 1019.000000
"""

REPORT_END = """max_delay/setup group **async_default**
_20_/R (DFFSR)                         10.1172    0.0000   10.1172 (MET)
max_delay/setup group clk
_22_/D (DFFSR)                          9.9138    0.6943    9.2195 (MET)
out[0] (output)                        -1.0000    0.3150   -1.3150 (VIOLATED)
"""

REPORT_POWER = """Group                    Internal    Switching      Leakage        Total
------------------------------------------------------------------------
Sequential           1.486062e-04 2.278821e-06 1.109080e-09 1.508862e-04  91.9%
Total                1.587248e-04 5.469512e-06 1.742217e-09 1.641961e-04 100.0%
"""


def test_parsers_on_recorded_output() -> None:
    assert parse_stat_liberty(STAT_023) == (14, {"AND2X1": 1, "DFFSR": 4, "INVX1": 2}, 1019.0)
    assert parse_stat_cmos("   Estimated number of transistors:         56+\n") == (56, True)
    assert parse_stat_cmos("   Estimated number of transistors:        412\n") == (412, False)
    assert parse_report_end(REPORT_END) == pytest.approx(0.6943)
    assert parse_report_power(REPORT_POWER) == pytest.approx(
        (1.587248e-4, 5.469512e-6, 1.742217e-9)
    )
    assert parse_report_end("no paths") is None and parse_report_power("") is None


@needs_tools
def test_counter_has_every_figure(tmp_path: Path) -> None:
    r = ppa(COUNTER, "counter4", workdir=tmp_path)
    assert r.reasons == {}
    assert r.area_um2 > 0 and r.cells > 0 and r.delay_ns > 0 and r.power_uw > 0
    assert r.transistors > 0 and r.transistors_exclude_flops and r.logic_depth > 0
    assert r.clock_ports == ["clk"] and r.power_source == "default_activity"
    assert r.supply_v == pytest.approx(1.8) and r.tools["yosys"] and r.tools["sta"]
    assert r.leakage_power_uw > 0 and r.dynamic_power_uw > r.leakage_power_uw
    # the reported area is the library's area of the cells used
    lib = load_liberty(default_liberty())
    assert r.area_um2 == pytest.approx(sum(lib.cells[c].area * n for c, n in r.cell_counts.items()))
    assert sum(n for c, n in r.cell_counts.items() if c.startswith("DFF")) == 4
    assert (tmp_path / "netlist.v").is_file() and (tmp_path / "sta.tcl").is_file()
    # dynamic power scales with the clock frequency
    slow = ppa(COUNTER, "counter4", clock_period_ns=20.0)
    assert slow.dynamic_power_uw == pytest.approx(r.dynamic_power_uw / 2, rel=0.02)


@needs_tools
def test_combinational_adders_without_clock() -> None:
    small, large = ppa(adder(4), "adder"), ppa(adder(8), "adder")
    for r in (small, large):
        assert r.reasons == {} and r.clock_ports == []
        assert r.delay_ns > 0 and r.power_uw > 0 and r.transistors > 0
        assert not r.transistors_exclude_flops
    assert large.area_um2 > small.area_um2
    assert large.cells > small.cells and large.transistors > small.transistors
    assert large.delay_ns > small.delay_ns


@needs_tools
def test_latches_map_onto_the_latch_cell() -> None:
    code = "module l(input en, input d, output reg q);\n always @* if (en) q = d;\nendmodule\n"
    r = ppa(code, "l")
    assert r.reasons == {} and r.cell_counts == {"LATCH": 1}
    assert r.delay_ns > 0 and r.power_uw > 0
    # OSU 0.18's LATCH has area 0 in its Liberty file: reported as it is, with a note
    assert r.area_um2 == 0 and r.notes == ["the library gives these cells no area: LATCH"]


@needs_tools
def test_design_that_does_not_synthesise_gives_reasons() -> None:
    r = ppa("module broken(input a, output b);\n assign b = a +;\nendmodule\n", "broken")
    assert r.area_um2 is None and r.delay_ns is None and r.power_uw is None
    assert r.transistors is None
    assert (
        r.reasons["area_um2"].startswith("synthesis failed:") and "ERROR" in r.reasons["area_um2"]
    )
    assert set(r.reasons) >= {"area_um2", "cells", "delay_ns", "power_uw", "transistors"}
    wrong_top = ppa(adder(4), "not_there")
    assert "not_there" in wrong_top.reasons["area_um2"]


@needs_tools
def test_time_limit_stops_synthesis() -> None:
    code = "module mul(input [63:0] a, b, output [127:0] p);\n assign p = a * b;\nendmodule\n"
    r = ppa(code, "mul", timeout_s=1)
    assert r.reasons["area_um2"] == "yosys ran past the time limit of 1 s"
    assert r.delay_ns is None and r.seconds < 10


def test_missing_tools_name_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match="apt-get install yosys"):
        ppa(adder(4), "adder")
    yosys = shutil.which("yosys", path=os.defpath + ":/usr/local/bin:/usr/bin")
    if yosys is None:
        pytest.skip("yosys is not installed, so the missing-sta case cannot be set up")
    (tmp_path / "yosys").symlink_to(yosys)
    with pytest.raises(MissingToolError, match="apt-get install opensta"):
        ppa(adder(4), "adder")


COUNTER_TB = """
`timescale 1ns/1ps
module tb;
  reg clk = 0, rst_n = 0, en = 0;
  wire [3:0] q;
  counter4 dut(.clk(clk), .rst_n(rst_n), .en(en), .q(q));
  always #5 clk = ~clk;
  initial begin
    $dumpfile("dump.vcd"); $dumpvars(0, tb);
    #12 rst_n = 1;
    repeat (40) begin @(negedge clk) en = EN_EXPR; end
    $finish;
  end
endmodule
"""


def _counter_vcd(folder: Path, en_expr: str) -> Path:
    folder.mkdir()
    (folder / "tb.v").write_text(COUNTER_TB.replace("EN_EXPR", en_expr))
    (folder / "dut.v").write_text(COUNTER)
    subprocess.run(["iverilog", "-o", "sim", "tb.v", "dut.v"], cwd=folder, check=True, timeout=60)
    subprocess.run(["vvp", "-n", "sim"], cwd=folder, check=True, timeout=60, capture_output=True)
    return folder / "dump.vcd"


@needs_tools
@needs_iverilog
def test_vcd_activity_drives_power(tmp_path: Path) -> None:
    idle = ppa(COUNTER, "counter4", vcd=_counter_vcd(tmp_path / "idle", "1'b0"))
    busy = ppa(COUNTER, "counter4", vcd=_counter_vcd(tmp_path / "busy", "~en"))
    for r in (idle, busy):
        assert r.power_source == "vcd" and r.reasons == {}
        assert r.vcd_cycles == pytest.approx(41, abs=1)
    assert busy.power_uw > idle.power_uw
    assert idle.area_um2 == busy.area_um2 and idle.delay_ns == busy.delay_ns


@needs_tools
def test_vcd_without_the_design_falls_back(tmp_path: Path) -> None:
    vcd = tmp_path / "other.vcd"
    vcd.write_text(
        "$timescale 1ns $end\n$scope module x $end\n$var wire 1 ! zz $end\n$upscope $end\n"
        "$enddefinitions $end\n#0\n0!\n#5\n1!\n"
    )
    r = ppa(COUNTER, "counter4", vcd=vcd)
    assert r.power_source == "default_activity" and r.power_uw > 0
    assert "no scope with the ports of counter4" in r.reasons["power_source"]


@pytest.mark.requires_data
@needs_tools
@needs_iverilog
def test_check_script_on_two_rtllm_designs(tmp_path: Path) -> None:
    data = os.environ.get("DATA_DIR")
    if not data or not (Path(data) / "verilog" / "rtllm-v1.1").is_dir():
        pytest.skip("DATA_DIR with verilog/rtllm-v1.1 is not available")
    out = tmp_path / "ppa.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "verilog_ppa_check.py"),
            "--problems",
            "counter_12,fsm",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DATA_DIR": data},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["design"] for r in rows] == ["counter_12", "fsm"]
    for r in rows:
        assert r["passed"] and r["power_source"] == "vcd"
        assert r["area_um2"] > 0 and r["delay_ns"] > 0 and r["power_uw"] > 0
