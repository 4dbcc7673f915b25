"""A small reader for Liberty (``.lib``) standard-cell libraries and the default library.

It reads what the PPA report needs from a library: its units and nominal supply voltage, and per
cell the area, the leakage power, the pin capacitances and the mean internal energy of each
pin's ``internal_power`` tables. The default library is the OSU 0.18 µm one that Debian's
``qflow-tech-osu018`` package installs.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from effml.errors import DataError, MissingDataError

OSU018_DIR = Path("/usr/share/qflow/tech/osu018")
INSTALL_HINT = (
    "install it with `sudo apt-get install qflow-tech-osu018` (OSU 0.18 µm cells), or point "
    "ppa.liberty= at any Liberty .lib file"
)

_TOKEN = re.compile(
    r'"(?:\\.|[^"\\])*"'  # a quoted string
    r"|[{}();:,]"  # punctuation
    r"|[^\s{}();:,\"]+"  # a bare word or number
)


@dataclass
class LibertyGroup:
    """One ``kind (args) { ... }`` group: its simple and complex attributes and sub-groups."""

    kind: str
    args: list[str]
    attrs: dict[str, str] = field(default_factory=dict)
    complex_attrs: dict[str, list[str]] = field(default_factory=dict)
    groups: list[LibertyGroup] = field(default_factory=list)

    def children(self, kind: str) -> list[LibertyGroup]:
        """The direct sub-groups of one kind (``cell``, ``pin``, ``internal_power``)."""
        return [g for g in self.groups if g.kind == kind]


@dataclass
class LibertyPin:
    """A cell pin: direction, input capacitance (library units), mean internal energy, and
    whether it is a clock pin."""

    name: str
    direction: str
    capacitance: float
    internal_energy: float | None
    is_clock: bool = False
    function: str | None = None


@dataclass
class LibertyCell:
    """A standard cell: area (library area unit, µm² for OSU), leakage (library power unit)."""

    name: str
    area: float
    leakage_power: float
    pins: dict[str, LibertyPin]
    latch: LibertyGroup | None = None
    ff: LibertyGroup | None = None


@dataclass
class Library:
    """A parsed Liberty library with the figures PPA reporting uses."""

    path: Path
    name: str
    nom_voltage: float | None
    time_unit: str | None
    leakage_power_unit: str | None
    capacitive_load_unit: str | None
    cells: dict[str, LibertyCell]


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return text.replace("\\\n", " ")


def _unquote(token: str) -> str:
    return token[1:-1] if len(token) >= 2 and token[0] == token[-1] == '"' else token


def parse_liberty_text(text: str, where: str = "<text>") -> LibertyGroup:
    """Parse Liberty text into its top group (``library (name) { ... }``).

    Args:
        text: the whole file.
        where: the file name, used in error messages.

    Raises:
        DataError: when the text is not well-formed Liberty.
    """
    tokens = _TOKEN.findall(_strip_comments(text))
    pos = 0

    def fail(problem: str) -> DataError:
        return DataError(f"{where}: not a readable Liberty file ({problem} near token {pos})")

    def parse_args() -> list[str]:
        nonlocal pos
        args: list[str] = []
        pos += 1  # "("
        while pos < len(tokens) and tokens[pos] != ")":
            if tokens[pos] != ",":
                args.append(_unquote(tokens[pos]))
            pos += 1
        if pos >= len(tokens):
            raise fail("unclosed '('")
        pos += 1
        return args

    def parse_body(group: LibertyGroup) -> None:
        nonlocal pos
        while pos < len(tokens):
            tok = tokens[pos]
            if tok == "}":
                pos += 1
                return
            if tok == ";":
                pos += 1
                continue
            name = tok
            pos += 1
            if pos >= len(tokens):
                raise fail(f"attribute {name!r} has no value")
            if tokens[pos] == ":":
                pos += 1
                value: list[str] = []
                while pos < len(tokens) and tokens[pos] not in (";", "}"):
                    value.append(_unquote(tokens[pos]))
                    pos += 1
                group.attrs[name] = " ".join(value)
            elif tokens[pos] == "(":
                args = parse_args()
                if pos < len(tokens) and tokens[pos] == "{":
                    pos += 1
                    child = LibertyGroup(name, args)
                    parse_body(child)
                    group.groups.append(child)
                else:
                    group.complex_attrs[name] = args
            else:
                raise fail(f"unexpected {tokens[pos]!r} after {name!r}")
        raise fail(f"group {group.kind}({', '.join(group.args)}) is not closed")

    if len(tokens) < 4 or tokens[0] != "library" or tokens[1] != "(":
        raise DataError(f"{where}: not a Liberty file (it must start with `library (name) {{`)")
    pos = 1
    lib_args = parse_args()
    if pos >= len(tokens) or tokens[pos] != "{":
        raise fail("library group has no body")
    pos += 1
    top = LibertyGroup("library", lib_args)
    parse_body(top)
    return top


def _float(text: str | None, default: float = 0.0) -> float:
    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        return default


def _mean_table(groups: list[LibertyGroup]) -> float | None:
    values: list[float] = []
    for g in groups:
        for row in g.complex_attrs.get("values", []):
            values.extend(float(v) for v in row.replace(",", " ").split())
    return sum(values) / len(values) if values else None


def _pin(group: LibertyGroup) -> list[LibertyPin]:
    energies: list[float] = []
    for ip in group.children("internal_power"):
        mean = _mean_table(ip.children("rise_power") + ip.children("fall_power"))
        if mean is None:
            mean = _mean_table(ip.children("power"))
        if mean is not None:
            energies.append(mean)
    energy = sum(energies) / len(energies) if energies else None
    return [
        LibertyPin(
            name=name,
            direction=group.attrs.get("direction", ""),
            capacitance=_float(group.attrs.get("capacitance")),
            internal_energy=energy,
            is_clock=group.attrs.get("clock", "").lower() == "true",
            function=group.attrs.get("function"),
        )
        for name in group.args
    ]


def library_from_group(top: LibertyGroup, path: Path) -> Library:
    """The PPA view of a parsed library group."""
    cells: dict[str, LibertyCell] = {}
    for cg in top.children("cell"):
        pins: dict[str, LibertyPin] = {}
        for pg in cg.children("pin"):
            for pin in _pin(pg):
                pins[pin.name] = pin
        name = cg.args[0] if cg.args else ""
        cells[name] = LibertyCell(
            name=name,
            area=_float(cg.attrs.get("area")),
            leakage_power=_float(cg.attrs.get("cell_leakage_power")),
            pins=pins,
            latch=next(iter(cg.children("latch")), None),
            ff=next(iter(cg.children("ff")), None),
        )
    cap_unit = top.complex_attrs.get("capacitive_load_unit")
    nom = top.attrs.get("nom_voltage")
    return Library(
        path=path,
        name=top.args[0] if top.args else "",
        nom_voltage=_float(nom) if nom is not None else None,
        time_unit=top.attrs.get("time_unit"),
        leakage_power_unit=top.attrs.get("leakage_power_unit"),
        capacitive_load_unit=" ".join(cap_unit) if cap_unit else None,
        cells=cells,
    )


def latch_cell(lib: Library) -> tuple[str, str, str, str] | None:
    """A transparent-high D latch of the library as (cell, D pin, enable pin, Q pin), or None.

    yosys' ``dfflibmap`` maps flip-flops only; the PPA flow maps latches onto this cell.
    """
    for cell in sorted(lib.cells.values(), key=lambda c: (c.area, c.name)):
        if cell.latch is None or not cell.latch.args:
            continue
        d_pin = cell.latch.attrs.get("data_in", "").strip()
        enable = cell.latch.attrs.get("enable", "").strip()
        q = [
            p.name
            for p in cell.pins.values()
            if p.direction == "output" and (p.function or "").strip() == cell.latch.args[0]
        ]
        if d_pin in cell.pins and enable in cell.pins and q and len(cell.pins) == 3:
            return cell.name, d_pin, enable, q[0]
    return None


def load_liberty(path: Path | str) -> Library:
    """Read a Liberty file (cached while the file is unchanged).

    Raises:
        MissingDataError: the file does not exist.
        DataError: the file is not Liberty or defines no cells.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"Liberty file {path} does not exist; {INSTALL_HINT}")
    return _load_liberty(path.resolve(), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _load_liberty(path: Path, mtime_ns: int) -> Library:
    lib = library_from_group(parse_liberty_text(path.read_text(errors="replace"), str(path)), path)
    if not lib.cells:
        raise DataError(f"Liberty file {path} defines no cells; {INSTALL_HINT}")
    return lib


def default_liberty() -> Path:
    """The OSU 0.18 µm standard-cell Liberty file from ``qflow-tech-osu018``.

    ``EFFML_LIBERTY`` in the environment overrides the search.

    Raises:
        MissingDataError: no such file, with the install command.
    """
    env = os.environ.get("EFFML_LIBERTY")
    if env:
        if not Path(env).is_file():
            raise MissingDataError(f"EFFML_LIBERTY={env} is not a file; {INSTALL_HINT}")
        return Path(env)
    candidates = sorted(OSU018_DIR.glob("*.lib")) if OSU018_DIR.is_dir() else []
    if not candidates:
        raise MissingDataError(f"no Liberty file under {OSU018_DIR}; {INSTALL_HINT}")
    return candidates[0]
