"""The VCD reader on handwritten dumps: toggles per bit, x/z, scopes, aliases, time units."""

from __future__ import annotations

from pathlib import Path

import pytest

from effml.errors import DataError, MissingDataError
from llm.verilog.vcd import read_vcd, toggle_rates

VCD = """$date today $end
$version handwritten $end
$timescale 1ps $end
$scope module tb $end
$var reg 1 ! clk $end
$var reg 4 " count [3:0] $end
$scope module dut $end
$var wire 1 ! clk $end
$var wire 4 " q [3:0] $end
$var wire 2 # sel [0:1] $end
$upscope $end
$upscope $end
$enddefinitions $end
$comment b1111 " this is not a value change $end
#0
$dumpvars
0!
bx "
bz #
$end
#1000
1!
b0 "
b1 #
#2000
0!
b1 "
#3000
1!
b10 "
b10 #
#4000
0!
bx "
#5000
1!
b11 "
"""


def _write(tmp_path: Path, text: str = VCD) -> Path:
    path = tmp_path / "dump.vcd"
    path.write_text(text)
    return path


def test_toggles_scopes_and_duration(tmp_path: Path) -> None:
    act = read_vcd(_write(tmp_path))
    assert act.timescale_ns == pytest.approx(1e-3)
    assert (act.start_ns, act.end_ns, act.duration_ns) == pytest.approx((0.0, 5.0, 5.0))
    assert act.scopes["tb.dut"] == ["clk", "q[3]", "q[2]", "q[1]", "q[0]", "sel[0]", "sel[1]"]
    # clk: 0 -> 1 -> 0 -> 1 -> 0 -> 1: five toggles, the same under both of its names
    assert act.toggles["tb.clk"] == act.toggles["tb.dut.clk"] == 5
    # q: x, 0000, 0001, 0010, xxxx, 0011 -- changes to or from x are not toggles
    assert [act.toggles[f"tb.dut.q[{i}]"] for i in range(4)] == [2, 1, 0, 0]
    # sel [0:1]: z, 01, 10 -> the left bit is sel[0]
    assert act.toggles["tb.dut.sel[0]"] == 1 and act.toggles["tb.dut.sel[1]"] == 1
    assert act.events(["tb.dut.q[0]", "tb.dut.q[1]"]) == 2  # #2000 and #3000
    assert act.toggle_ticks["tb.dut.q[0]"] == [2000, 3000]


def test_rates_relative_to_scope(tmp_path: Path) -> None:
    rates, duration = toggle_rates(_write(tmp_path), scope="tb.dut")
    assert duration == pytest.approx(5.0)
    assert set(rates) == {"clk", "q[3]", "q[2]", "q[1]", "q[0]", "sel[0]", "sel[1]"}
    assert rates["clk"] == pytest.approx(1.0)  # 5 toggles in 5 ns
    everything, _ = toggle_rates(_write(tmp_path))
    assert "tb.count[0]" in everything and "tb.dut.q[0]" in everything
    top_only, _ = toggle_rates(_write(tmp_path), scope="tb")
    assert "count[0]" in top_only and not any("." in name for name in top_only)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="does not exist"):
        read_vcd(tmp_path / "none.vcd")
    with pytest.raises(DataError, match="timescale"):
        read_vcd(_write(tmp_path, "$timescale 3 parsecs $end\n$enddefinitions $end\n"))
    with pytest.raises(DataError, match="malformed"):
        read_vcd(_write(tmp_path, "$var wire 1 $end\n$enddefinitions $end\n"))
