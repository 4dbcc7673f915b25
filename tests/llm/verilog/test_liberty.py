"""The Liberty reader: a handwritten library, malformed input, and the default OSU library."""

from __future__ import annotations

from pathlib import Path

import pytest

from effml.errors import DataError, MissingDataError
from llm.verilog import liberty as liberty_mod
from llm.verilog.liberty import default_liberty, latch_cell, load_liberty, parse_liberty_text

SNIPPET = r"""
/* a comment */
library (tiny) {
  time_unit : "1ns";
  leakage_power_unit : "1nW";
  capacitive_load_unit (1,pf);
  nom_voltage : 1.2;
  cell (INV) {
    area : 8.5;
    cell_leakage_power : 0.25;
    pin(A) { direction : input; capacitance : 0.01; }
    pin(Y) {
      direction : output;
      function : "(!A)";
      internal_power() {
        related_pin : "A";
        rise_power(t) { index_1 ("0.1, 0.2"); values ("1.0, 3.0"); }
        fall_power(t) { index_1 ("0.1, 0.2"); values ("2.0, 2.0"); }
      }
    }
  }
  cell (DLAT) {
    area : 20;
    latch (IQ, IQN) { data_in : "D"; enable : "G"; }
    pin(D) { direction : input; capacitance : 0.005; }
    pin(G) { direction : input; capacitance : 0.006; clock : true; }
    pin(Q) { direction : output; function : "IQ"; }
  }
  cell (DFF) {
    area : 30; // trailing comment
    ff (IQ, IQN) { next_state : "D"; clocked_on : "CK"; }
    pin(D, E) { direction : input; capacitance : 0.004; }
    pin(CK) { direction : input; clock : true; capacitance : 0.007; }
    pin(Q) { direction : output; function : "IQ"; }
  }
}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tiny.lib"
    path.write_text(text)
    return path


def test_handwritten_library(tmp_path: Path) -> None:
    lib = load_liberty(_write(tmp_path, SNIPPET))
    assert lib.name == "tiny"
    assert (lib.nom_voltage, lib.time_unit, lib.leakage_power_unit) == (1.2, "1ns", "1nW")
    assert lib.capacitive_load_unit == "1 pf"
    assert sorted(lib.cells) == ["DFF", "DLAT", "INV"]
    inv = lib.cells["INV"]
    assert (inv.area, inv.leakage_power) == (8.5, 0.25)
    assert inv.pins["A"].capacitance == pytest.approx(0.01)
    assert inv.pins["Y"].internal_energy == pytest.approx(2.0)  # mean of 1, 3, 2, 2
    assert inv.pins["Y"].function == "(!A)"
    assert inv.pins["A"].internal_energy is None
    dff = lib.cells["DFF"]
    assert dff.pins["CK"].is_clock and not dff.pins["D"].is_clock
    assert dff.pins["E"].capacitance == pytest.approx(0.004)  # pin(D, E) names two pins
    assert latch_cell(lib) == ("DLAT", "D", "G", "Q")
    assert dff.ff is not None and dff.latch is None and lib.cells["DLAT"].ff is None


def test_malformed_and_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a Liberty file"):
        parse_liberty_text("cell (X) { area : 1; }", "x.lib")
    with pytest.raises(DataError, match="not closed"):
        parse_liberty_text("library (x) { cell (A) { area : 1; }", "x.lib")
    with pytest.raises(DataError, match="defines no cells"):
        load_liberty(_write(tmp_path, "library (empty) { nom_voltage : 1.0; }"))
    with pytest.raises(MissingDataError, match="qflow-tech-osu018"):
        load_liberty(tmp_path / "absent.lib")


def test_default_liberty_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EFFML_LIBERTY", raising=False)
    monkeypatch.setattr(liberty_mod, "OSU018_DIR", tmp_path / "none")
    with pytest.raises(MissingDataError, match="apt-get install qflow-tech-osu018"):
        default_liberty()
    monkeypatch.setenv("EFFML_LIBERTY", str(tmp_path / "nope.lib"))
    with pytest.raises(MissingDataError, match="ppa.liberty="):
        default_liberty()
    monkeypatch.setenv("EFFML_LIBERTY", str(_write(tmp_path, SNIPPET)))
    assert default_liberty() == tmp_path / "tiny.lib"


@pytest.mark.skipif(
    not liberty_mod.OSU018_DIR.is_dir(), reason="qflow-tech-osu018 is not installed"
)
def test_osu018_library() -> None:
    lib = load_liberty(default_liberty())
    assert lib.nom_voltage == pytest.approx(1.8)
    assert len(lib.cells) == 32
    assert lib.cells["DFFSR"].pins["CLK"].is_clock
    assert lib.cells["DFFSR"].area == pytest.approx(176.0)
    assert latch_cell(lib) == ("LATCH", "D", "CLK", "Q")
