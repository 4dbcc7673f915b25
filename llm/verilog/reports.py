"""Parsers of the EDA tools' reports: yosys' ``stat`` (cells, area, CMOS transistors) and
``ltp`` (logic depth), OpenSTA's ``report_checks -format end`` (arrival times) and
``report_power`` (the Total line), and the ports and clock nets of a yosys-written netlist."""

from __future__ import annotations

import re

_PORT = re.compile(r"^\s*(input|output|inout)\s+(?:\[(\d+):(\d+)\]\s+)?([^\s;]+)\s*;", re.M)
_INSTANCE_PIN = re.compile(r"\.(\w+)\(([^()]*)\)")
_INSTANCE = re.compile(r"^\s*(\w+)\s+(\S+)\s*\((.*?)\);", re.M | re.S)


def parse_stat_liberty(text: str) -> tuple[int | None, dict[str, int], float | None]:
    """The cell count, the count per cell type and the chip area from yosys' ``stat``."""
    cells_m = re.findall(r"Number of cells:\s+(\d+)", text)
    area_m = re.findall(r"Chip area for (?:module|top module) '[^']*':\s+([\d.eE+-]+)", text)
    counts: dict[str, int] = {}
    block = text.split("Number of cells:")[-1].splitlines()[1:] if cells_m else []
    for line in block:
        m = re.match(r"^\s+(\S+)\s+(\d+)\s*$", line)
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    return (
        int(cells_m[-1]) if cells_m else None,
        counts,
        float(area_m[-1]) if area_m else None,
    )


def parse_stat_cmos(text: str) -> tuple[int | None, bool]:
    """yosys' estimated transistor count, and whether flip-flops were left out (``123+``)."""
    m = re.search(r"Estimated number of transistors:\s+(\d+)(\+?)", text)
    return (int(m.group(1)), m.group(2) == "+") if m else (None, False)


def parse_ltp(text: str) -> int | None:
    """The longest topological path length from yosys' ``ltp``."""
    m = re.search(r"Longest topological path in \S+ \(length=(\d+)\)", text)
    return int(m.group(1)) if m else None


def parse_report_end(text: str) -> float | None:
    """The largest data-arrival time in ``report_checks -format end`` output (ns)."""
    arrivals = [
        float(m.group(1))
        for m in re.finditer(
            r"^\S.*?\s+-?[\d.]+\s+(-?[\d.]+)\s+-?[\d.]+\s+\((?:MET|VIOLATED)\)", text, re.M
        )
    ]
    return max(arrivals) if arrivals else None


def parse_report_power(text: str) -> tuple[float, float, float] | None:
    """(internal, switching, leakage) power in W from the ``Total`` line of ``report_power``."""
    m = re.search(r"^Total\s+([\d.eE+-]+)\s+([\d.eE+-]+)\s+([\d.eE+-]+)\s+[\d.eE+-]+", text, re.M)
    return (float(m.group(1)), float(m.group(2)), float(m.group(3))) if m else None


def netlist_ports(netlist: str) -> dict[str, tuple[str, list[str]]]:
    """Port name -> (direction, bit names) of a yosys-written netlist."""
    ports: dict[str, tuple[str, list[str]]] = {}
    for direction, msb, lsb, name in _PORT.findall(netlist):
        name = name.lstrip("\\")
        if msb:
            hi, lo = int(msb), int(lsb)
            step = -1 if hi >= lo else 1
            bits = [f"{name}[{i}]" for i in range(hi, lo + step, step)]
        else:
            bits = [name]
        ports[name] = (direction, bits)
    return ports


def clock_ports(netlist: str, clock_pins: dict[str, set[str]], inputs: list[str]) -> list[str]:
    """The 1-bit input ports wired straight to a clock pin of a library cell
    (``clock_pins``: cell name -> its clock pins)."""
    nets: set[str] = set()
    for cell, _inst, body in _INSTANCE.findall(netlist):
        for pin, net in _INSTANCE_PIN.findall(body):
            if pin in clock_pins.get(cell, ()):
                nets.add(net.strip().lstrip("\\"))
    return [p for p in inputs if p in nets]
