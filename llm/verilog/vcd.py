"""A small streaming reader of Value Change Dump (VCD, IEEE 1364 §18) files: per-bit toggle
counts, the simulated duration and the scopes, for switching-activity power estimates.

A toggle is a 0↔1 change of one bit; changes to or from x/z are not counted (they are not
switching events a power model can price). Bits of a vector are named ``name[i]`` with the
declared index range, the way synthesis names the nets of a bus.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from effml.errors import DataError, MissingDataError

_SCALE = {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0, "ps": 1e-3, "fs": 1e-6}
_RANGE = re.compile(r"^\[(-?\d+)(?::(-?\d+))?\]$")


@dataclass
class VcdActivity:
    """What a VCD says about switching: toggles per bit (keyed ``scope.bit``), the duration.

    Args:
        timescale_ns: one VCD time unit in ns.
        start_ns, end_ns: the first and last timestamps, in ns.
        toggles: ``"tb.uut.out[2]" -> number of 0↔1 changes``.
        scopes: scope path -> the bit names declared in it (without the scope prefix).
        toggle_ticks: ``"tb.uut.out[2]" ->`` the VCD timestamps (in time units) of its toggles.
    """

    timescale_ns: float
    start_ns: float
    end_ns: float
    toggles: dict[str, int] = field(default_factory=dict)
    scopes: dict[str, list[str]] = field(default_factory=dict)
    toggle_ticks: dict[str, list[int]] = field(default_factory=dict)

    def events(self, names: list[str]) -> int:
        """How many distinct timestamps at least one of the named bits toggles at."""
        ticks: set[int] = set()
        for name in names:
            ticks.update(self.toggle_ticks.get(name, ()))
        return len(ticks)

    @property
    def duration_ns(self) -> float:
        """The simulated time the dump covers."""
        return self.end_ns - self.start_ns

    def rates(self, scope: str | None = None) -> dict[str, float]:
        """Toggles per ns of each bit; within ``scope`` the names are relative to it."""
        if self.duration_ns <= 0:
            return {}
        out: dict[str, float] = {}
        prefix = f"{scope}." if scope else ""
        for full, count in self.toggles.items():
            if scope is None:
                out[full] = count / self.duration_ns
            elif full.startswith(prefix) and "." not in full[len(prefix) :].split("[")[0]:
                out[full[len(prefix) :]] = count / self.duration_ns
        return out


def _tokens(path: Path) -> Iterator[str]:
    with open(path, errors="replace") as f:
        for line in f:
            yield from line.split()


def _bit_names(name: str, size: int, index: str | None) -> list[str]:
    if size == 1 and index is None:
        return [name]
    m = _RANGE.match(index) if index else None
    if m and m.group(2) is not None:
        msb, lsb = int(m.group(1)), int(m.group(2))
        step = -1 if msb >= lsb else 1
        return [f"{name}[{i}]" for i in range(msb, lsb + step, step)]
    if m and size == 1:
        return [f"{name}[{m.group(1)}]"]
    return [f"{name}[{i}]" for i in range(size - 1, -1, -1)]


def read_vcd(path: Path | str) -> VcdActivity:
    """Read a VCD file in one pass and count the 0↔1 toggles of every bit.

    Raises:
        MissingDataError: no such file.
        DataError: the header is malformed (names the file and what is wrong).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"VCD file {path} does not exist (simulate with a $dumpfile)")
    toks = _tokens(path)
    timescale_ns = 1.0
    scope: list[str] = []
    by_id: dict[str, list[list[str]]] = {}  # id code -> bit-name lists (one per alias)
    scopes: dict[str, list[str]] = {}
    for tok in toks:
        if tok == "$timescale":
            words = []
            for t in toks:
                if t == "$end":
                    break
                words.append(t)
            m = re.fullmatch(r"(\d+)\s*([munpf]?s)", "".join(words))
            if not m:
                raise DataError(f"{path}: unreadable $timescale {' '.join(words)!r}")
            timescale_ns = int(m.group(1)) * _SCALE[m.group(2)]
        elif tok == "$scope":
            _kind, name = next(toks), next(toks)
            scope.append(name)
            scopes.setdefault(".".join(scope), [])
            next(toks)  # $end
        elif tok == "$upscope":
            if scope:
                scope.pop()
            next(toks)
        elif tok == "$var":
            words = []
            for t in toks:
                if t == "$end":
                    break
                words.append(t)
            if len(words) < 4:
                raise DataError(f"{path}: malformed $var declaration {' '.join(words)!r}")
            size, code, name = int(words[1]), words[2], words[3]
            index = words[4] if len(words) > 4 else None
            if "[" in name and index is None:
                name, index = name[: name.index("[")], name[name.index("[") :]
            bits = _bit_names(name, size, index)
            where = ".".join(scope)
            scopes.setdefault(where, []).extend(bits)
            by_id.setdefault(code, []).append([f"{where}.{b}" if where else b for b in bits])
        elif tok == "$enddefinitions":
            next(toks)
            break
        elif tok.startswith("$"):
            for t in toks:
                if t == "$end":
                    break
    ticks: dict[str, list[list[int]]] = {
        code: [[] for _ in names[0]] for code, names in by_id.items()
    }
    last: dict[str, str] = {}
    start: int | None = None
    now = 0

    def change(code: str, value: str) -> None:
        width = len(ticks.get(code, ()))
        if width == 0:
            return
        value = value.lower()
        if len(value) < width:  # left-extend per IEEE 1364 §18.2.1
            pad = value[0] if value[0] in "xz" else "0"
            value = pad * (width - len(value)) + value
        value = value[-width:]
        prev = last.get(code)
        if prev is not None:
            bits = ticks[code]
            for i, (a, b) in enumerate(zip(prev, value, strict=True)):
                if a != b and a in "01" and b in "01":
                    bits[i].append(now)
        last[code] = value

    for tok in toks:
        head = tok[0]
        if head == "#":
            now = int(tok[1:])
            if start is None:
                start = now
        elif head in "bB":
            change(next(toks), tok[1:])
        elif head in "rR":
            next(toks)
        elif head in "01xXzZ":
            change(tok[1:], head)
        elif tok == "$comment":
            for t in toks:
                if t == "$end":
                    break
    toggle_ticks: dict[str, list[int]] = {}
    for code, aliases in by_id.items():
        for names in aliases:
            for name, times in zip(names, ticks[code], strict=False):
                toggle_ticks[name] = times
    toggles = {name: len(times) for name, times in toggle_ticks.items()}
    return VcdActivity(
        timescale_ns, (start or 0) * timescale_ns, now * timescale_ns, toggles, scopes, toggle_ticks
    )


def toggle_rates(vcd_path: Path | str, scope: str | None = None) -> tuple[dict[str, float], float]:
    """Toggles per ns of each bit (relative to ``scope`` when given) and the duration in ns."""
    act = read_vcd(vcd_path)
    return act.rates(scope), act.duration_ns
