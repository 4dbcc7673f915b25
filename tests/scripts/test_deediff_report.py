"""scripts/deediff_report.py on sweep files in the layout the evaluate stage writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts import deediff_report


def write_sweep(folder: Path, threshold: float, fraction: float, fid: float) -> None:
    (folder / "evaluate").mkdir(parents=True)
    rows = [
        {"kind": "full", "layer_fraction": 1.0, "wall_s": 10.0, "fid_classifier": 4.0},
        {"kind": "early_exit", "rule": "sample", "threshold": threshold,
         "layer_fraction": fraction, "wall_s": 10.0 * fraction, "fid_classifier": fid},
        {"kind": "static", "rule": "sample", "threshold": threshold, "shallow_depth": 2,
         "shallow_steps": 5, "layer_fraction": fraction, "wall_s": 10.0 * fraction,
         "fid_classifier": fid + 1},
    ]  # fmt: skip
    data = {"depth": 7, "steps": 20, "rows": rows, "spearman": [0.5, 0.7]}
    (folder / "evaluate" / "sweep.json").write_text(json.dumps(data))


def test_report_merges_a_multirun(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_sweep(tmp_path / "0", 0.1, 0.8, 4.2)
    write_sweep(tmp_path / "1", 0.2, 0.6, 4.6)
    deediff_report.main([str(tmp_path)])
    out = capsys.readouterr().out
    assert (tmp_path / "deediff_sweep.png").stat().st_size > 0
    table, _ = deediff_report.collect(tmp_path)
    assert sorted(table.kind) == ["early_exit", "early_exit", "full", "static", "static"]
    assert "| early_exit | sample | 0.2 |" in out and "mean 0.600" in out
    assert "0.4" in out  # layers saved at threshold 0.2


def test_report_without_sweeps_says_what_it_needs(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="evaluate/sweep.json"):
        deediff_report.main([str(tmp_path)])
