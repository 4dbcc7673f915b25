"""Power, performance and area of a Verilog design with open tools.

Area: yosys synthesis onto a standard-cell Liberty library (``dfflibmap`` + ``abc -liberty``,
``stat -liberty``), and yosys' library-free CMOS transistor count (``abc -g cmos2; stat -tech
cmos``) beside it. Performance: OpenSTA's worst data-arrival time on the mapped netlist (the
critical-path delay; inputs arrive at time 0, outputs are unloaded) and yosys' ``ltp -noff``
logic depth as a proxy. Power: OpenSTA's ``report_power`` (internal + switching + leakage from
the library's tables, at the library's ``nom_voltage``) with the switching activity of the input
ports taken from a test bench VCD of the RTL, in toggles per clock cycle, and propagated through
the netlist by OpenSTA; inputs the VCD lacks, and every input without a VCD, toggle
``DEFAULT_ACTIVITY`` times per cycle. Register nets are not set from the VCD although their
names survive synthesis: Debian's OpenSTA 2.0.17 (2019) has no ``read_vcd`` or ``read_saif``,
and its ``set_power_activity -pins`` fails (it calls an undefined ``get_pins_error``), so the
activity of every internal net comes from OpenSTA's propagation. Latches are mapped onto the
library's latch cell (yosys' ``dfflibmap`` maps flip-flops only). These are the PPA figures that
stage 2 of the two-stage refinement (arXiv:2312.01022, arXiv:2510.15899) reports to the model.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llm.verilog.liberty import Library, default_liberty, latch_cell, load_liberty
from llm.verilog.reports import (
    clock_ports,
    netlist_ports,
    parse_ltp,
    parse_report_end,
    parse_report_power,
    parse_stat_cmos,
    parse_stat_liberty,
)
from llm.verilog.tools import die_with_parent, find_tool, tool_versions
from llm.verilog.vcd import VcdActivity, read_vcd

DEFAULT_ACTIVITY = 0.1  # toggles per clock period of an input with no VCD data
DEFAULT_PERIOD_NS = 10.0  # clock period (100 MHz) when the caller gives none
LOG_CHARS = 4000


@dataclass
class PPA:
    """The PPA of one design; a figure is None when it could not be found, and ``reasons``
    says why (keyed by the field name); ``notes`` flags figures to read with care."""

    top: str
    area_um2: float | None = None
    cells: int | None = None
    cell_counts: dict[str, int] = field(default_factory=dict)
    transistors: int | None = None
    transistors_exclude_flops: bool = False
    delay_ns: float | None = None
    logic_depth: int | None = None
    power_uw: float | None = None
    dynamic_power_uw: float | None = None
    leakage_power_uw: float | None = None
    power_source: str | None = None
    clock_ports: list[str] = field(default_factory=list)
    clock_period_ns: float | None = None
    vcd_cycles: float | None = None
    supply_v: float | None = None
    liberty: str | None = None
    tools: dict[str, str | None] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        """A JSON-ready dict of every field."""
        return asdict(self)

    def summary(self) -> str:
        """One line for a report or a prompt (``area 1019 µm², 14 cells, delay 0.69 ns, ...``)."""

        def fmt(value: float | None, unit: str, digits: int) -> str:
            return "n/a" if value is None else f"{value:.{digits}f} {unit}"

        plus = "+" if self.transistors_exclude_flops else ""
        return (
            f"area {fmt(self.area_um2, 'µm²', 0)} ({self.cells} cells), "
            f"delay {fmt(self.delay_ns, 'ns', 3)}, power {fmt(self.power_uw, 'µW', 2)} "
            f"({self.power_source}), {self.transistors}{plus} transistors, "
            f"logic depth {self.logic_depth}"
        )


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str | None]:
    versions = tool_versions()
    return {k: versions.get(k) for k in ("yosys", "sta")}


def _tail(text: str) -> str:
    return text if len(text) <= LOG_CHARS else "…" + text[-LOG_CHARS:]


def _run(cmd: list[str], cwd: Path, timeout_s: float) -> tuple[int | None, str]:
    """Run a tool in its own process group; the exit status (None when it ran past
    ``timeout_s`` and the group, ``yosys-abc`` included, was killed) and its output."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    try:
        text, _ = proc.communicate(timeout=max(timeout_s, 1.0))
    except BaseException as err:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # yosys-abc too; Ctrl-C never reaches the group
        if not isinstance(err, subprocess.TimeoutExpired):
            raise
        text, _ = proc.communicate()
        return None, (text or "") + f"\n[stopped after {timeout_s:.0f} s]"
    return proc.returncode, text


def _first_error(log: str) -> str:
    """A tool's first error line, with the line before it when that says where."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if "ERROR" in line or "Error" in line:
            before = lines[i - 1] if i else ""
            if before and "ERROR" not in before:
                return f"{line} (after: {before[:200]})"
            return line
    return lines[-1] if lines else "no output"


def _pick_scope(act: VcdActivity, port_bits: set[str]) -> str | None:
    """The VCD scope that declares most of the design's port bits (the deepest on a tie)."""
    best, best_key = None, (0, 0)
    for scope, names in act.scopes.items():
        key = (len(port_bits.intersection(names)), scope.count("."))
        if key[0] and key > best_key:
            best, best_key = scope, key
    return best


def _quote(name: str) -> str:
    return "{" + name + "}"


def _sta_script(
    liberty: Path,
    top: str,
    clocks: list[str],
    period: float,
    inputs: list[str],
    has_outputs: bool,
    activities: dict[str, float],
) -> str:
    lines = [f"read_liberty {_quote(str(liberty))}", "read_verilog netlist.v", f"link_design {top}"]
    if clocks:
        for clk in clocks:
            lines.append(f"create_clock -name {clk} -period {period:g} [get_ports {clk}]")
        ref = clocks[0]
    else:
        lines.append(f"create_clock -name virtual_clk -period {period:g}")
        ref = "virtual_clk"
    data_inputs = [p for p in inputs if p not in clocks]
    if data_inputs:
        clk_list = " ".join(_quote(c) for c in clocks)
        target = (
            f"[delete_from_list [all_inputs] [get_ports {{{clk_list}}}]]"
            if clocks
            else ("[all_inputs]")
        )
        lines.append(f"set_input_delay 0 -clock {ref} {target}")
    if has_outputs:
        lines.append(f"set_output_delay 0 -clock {ref} [all_outputs]")
    lines.append(
        "report_checks -path_delay max -format end -endpoint_count 1 -group_count 1000000 -digits 4"
    )
    lines.append(f"set_power_activity -input -activity {DEFAULT_ACTIVITY:g} -duty 0.5")
    for bit, activity in sorted(activities.items()):
        lines.append(
            f"set_power_activity -input_ports [get_ports {_quote(bit)}] -activity {activity:.6g}"
        )
    lines.append("puts EFFML_POWER")
    lines.append("report_power -digits 6")
    return "\n".join(lines) + "\n"


def _ff_legalisation(lib: Library, work: Path) -> list[str]:
    """yosys commands that leave only flip-flops ``dfflibmap`` maps, and latches on the
    library's latch cell (``dfflegalize`` emulates async-load flip-flops and enables)."""
    allowed = "-cell $_DFF_?_ 01 -cell $_DFF_???_ 01 -cell $_DFFSR_???_ 01"
    latch = latch_cell(lib)
    if latch is None:
        return [f"dfflegalize {allowed}"]
    cell, d_pin, en_pin, q_pin = latch
    (work / "latch_map.v").write_text(
        "module \\$_DLATCH_P_ (input E, input D, output Q);\n"
        f"  {cell} _TECHMAP_REPLACE_ (.{d_pin}(D), .{en_pin}(E), .{q_pin}(Q));\n"
        "endmodule\n"
    )
    return [f"dfflegalize {allowed} -cell $_DLATCH_P_ 01", "techmap -map latch_map.v"]


def _synthesise(code: str, top: str, lib: Library, work: Path, timeout_s: float, out: PPA) -> bool:
    """yosys: the CMOS transistor count and depth, then the mapped netlist; True if mapped."""
    (work / "design.v").write_text(code)
    liberty = f'"{lib.path.resolve()}"'
    script = "\n".join(
        [
            "read_verilog -sv design.v",
            f"hierarchy -check -top {top}",
            f"synth -flatten -top {top}",
            "design -save generic",
            "abc -g cmos2",
            "tee -o stat_cmos.txt stat -tech cmos",
            "tee -o ltp.txt ltp -noff",
            "design -load generic",
            *_ff_legalisation(lib, work),
            f"dfflibmap -liberty {liberty}",
            f"abc -liberty {liberty}",
            "opt_clean",
            f"tee -o stat_lib.txt stat -liberty {liberty}",
            "write_verilog -noattr netlist.v",
        ]
    )
    (work / "synth.ys").write_text(script + "\n")
    rc, log = _run([find_tool("yosys"), "-q", "-l", "yosys.log", "-s", "synth.ys"], work, timeout_s)
    full_log = (work / "yosys.log").read_text(errors="replace") if rc is not None else log
    out.logs["yosys"] = _tail(full_log)
    if (work / "stat_cmos.txt").is_file():
        out.transistors, out.transistors_exclude_flops = parse_stat_cmos(
            (work / "stat_cmos.txt").read_text()
        )
    if (work / "ltp.txt").is_file():
        out.logic_depth = parse_ltp((work / "ltp.txt").read_text())
    if (work / "stat_lib.txt").is_file():
        out.cells, out.cell_counts, out.area_um2 = parse_stat_liberty(
            (work / "stat_lib.txt").read_text()
        )
        if out.area_um2 is None and out.cell_counts:  # yosys omits a chip area of 0
            out.area_um2 = sum(
                lib.cells[c].area * n for c, n in out.cell_counts.items() if c in lib.cells
            )
        zero = sorted(c for c in out.cell_counts if c in lib.cells and lib.cells[c].area <= 0)
        if zero:
            out.notes.append(f"the library gives these cells no area: {', '.join(zero)}")
    why = f"synthesis failed: {_first_error(full_log)}"
    if rc is None:
        why = f"yosys ran past the time limit of {timeout_s:g} s"
    ok = rc == 0 and (work / "netlist.v").is_file()
    unmapped = {c: n for c, n in out.cell_counts.items() if c.startswith("$")}
    if ok and unmapped:
        why = f"cells the library cannot implement: {unmapped}"
        ok = False
    for name in ("transistors", "logic_depth", "area_um2", "cells"):
        if getattr(out, name) is None:
            out.reasons[name] = why
    if not ok:
        out.reasons.setdefault("area_um2", why)
        for name in ("delay_ns", "power_uw"):
            out.reasons[name] = why
    return ok


def _activities(
    vcd: Path, port_bits: dict[str, list[str]], clocks: list[str], out: PPA
) -> dict[str, float]:
    """Toggles per clock cycle of each data input bit, from a VCD of the test bench.

    A cycle is a rising edge of the fastest clock port, or, in a design without a clock, one
    test vector (a timestamp at which some input changes). Counting per cycle makes the
    figures independent of the test bench's time unit (many RTLLM benches set none).
    """
    act = read_vcd(vcd)
    all_bits = {b for bits in port_bits.values() for b in bits}
    scope = _pick_scope(act, all_bits)
    if scope is None:
        out.reasons["power_source"] = (
            f"{vcd} has no scope with the ports of {out.top}; "
            f"default activity {DEFAULT_ACTIVITY} per clock cycle used"
        )
        return {}
    prefix = f"{scope}."
    data = [b for p, bs in port_bits.items() if p not in clocks for b in bs]
    clock_toggles = [act.toggles.get(prefix + c, 0) for c in clocks]
    cycles = max(clock_toggles) / 2 if clock_toggles else act.events([prefix + b for b in data])
    out.vcd_cycles = cycles
    if cycles < 1:
        out.reasons["power_source"] = (
            f"{vcd} shows no {'clock edge' if clocks else 'input change'} of {out.top}; "
            f"default activity {DEFAULT_ACTIVITY} per clock cycle used"
        )
        return {}
    return {b: act.toggles[prefix + b] / cycles for b in data if prefix + b in act.toggles}


def ppa(
    code: str,
    top: str,
    liberty: Path | None = None,
    vcd: Path | None = None,
    timeout_s: float = 120,
    clock_period_ns: float | None = None,
    workdir: Path | None = None,
) -> PPA:
    """Synthesise, time and power one design; a figure that cannot be found is None with a
    reason, and a design that does not synthesise is a result, not an exception.

    Args:
        code: the Verilog source (all modules the top needs).
        top: the top module's name.
        liberty: the standard-cell library; the OSU 0.18 µm one by default.
        vcd: a VCD of the test bench simulating this design (RTL), for input activities.
        timeout_s: the time limit for all tool runs together.
        clock_period_ns: the clock period (``DEFAULT_PERIOD_NS`` when None); without a clock
            port it is the period of a virtual clock that inputs and outputs are timed to.
        workdir: keep the tools' files there (a temporary folder otherwise).

    Raises:
        MissingToolError: yosys or sta is not installed (names the install command).
        MissingDataError: no Liberty file (names the package to install).
    """
    start = time.monotonic()
    find_tool("yosys")
    find_tool("sta")
    liberty = Path(liberty) if liberty is not None else default_liberty()
    lib = load_liberty(liberty)
    out = PPA(top=top, liberty=str(liberty), supply_v=lib.nom_voltage, tools=_versions())
    with tempfile.TemporaryDirectory(prefix="effml_ppa_") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not _synthesise(code, top, lib, work, timeout_s, out):
            out.seconds = time.monotonic() - start
            return out
        netlist = (work / "netlist.v").read_text()
        ports = netlist_ports(netlist)
        inputs = [p for p, (d, bits) in ports.items() if d == "input"]
        clock_pins = {  # flip-flops only: a latch enable may be a reset (async-load emulation)
            name: {p for p, pin in cell.pins.items() if pin.is_clock}
            for name, cell in lib.cells.items()
            if cell.ff is not None
        }
        out.clock_ports = clock_ports(netlist, clock_pins, inputs)
        per_period: dict[str, float] = {}
        if vcd is not None:
            in_bits = {p: bits for p, (d, bits) in ports.items() if d == "input"}
            per_period = _activities(Path(vcd), in_bits, out.clock_ports, out)
        period = clock_period_ns or DEFAULT_PERIOD_NS
        out.clock_period_ns = period
        script = _sta_script(
            liberty.resolve(),
            top,
            out.clock_ports,
            period,
            inputs,
            any(d == "output" for d, _ in ports.values()),
            per_period,
        )
        (work / "sta.tcl").write_text(script)
        remaining = timeout_s - (time.monotonic() - start)
        rc, log = _run([find_tool("sta"), "-no_init", "-exit", "sta.tcl"], work, remaining)
        out.logs["sta"] = _tail(log)
        timing, _, power = log.partition("EFFML_POWER")
        why = f"sta failed: {_first_error(log)}"
        if rc is None:
            why = f"sta ran past the time limit of {timeout_s:g} s"
        out.delay_ns = parse_report_end(timing)
        if out.delay_ns is None:
            out.reasons["delay_ns"] = why if rc != 0 else "sta reported no timing path"
        totals = parse_report_power(power)
        if totals is None:
            out.reasons["power_uw"] = why if rc != 0 else "sta printed no power report"
        else:
            internal, switching, leakage = totals
            out.dynamic_power_uw = (internal + switching) * 1e6
            out.leakage_power_uw = leakage * 1e6
            out.power_uw = out.dynamic_power_uw + out.leakage_power_uw
            out.power_source = "vcd" if per_period else "default_activity"
    out.seconds = time.monotonic() - start
    return out
