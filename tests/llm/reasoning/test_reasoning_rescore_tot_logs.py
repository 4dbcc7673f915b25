"""scripts/rescore_tot_logs.py: pass@k, a tiny synthetic log set, and the real ToT GPT-4 logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.rescore_tot_logs import LOGS, main, pass_at_k
from tests.conftest import require_data

KEYS = {"tot_any_of_5", "tot_first", "cot_pass@1", "cot_pass@100", "io_pass@1", "io_pass@100"}


def test_pass_at_k():
    assert pass_at_k(100, 0, 1) == 0.0
    assert pass_at_k(100, 4, 1) == pytest.approx(0.04)
    assert pass_at_k(100, 1, 100) == 1.0
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)


def test_tiny_logs(tmp_path: Path, capsys):
    (tmp_path / "24.csv").write_text("Rank,Puzzles\n1,3 3 8 8\n2,4 5 6 10\n")
    good, bad = "Answer: 8 / (3 - 8 / 3) = 24", "Answer: (8 + 8) + 3 + 3 = 24"
    good2 = "Answer: (4 * 5) + (10 - 6) = 24"
    tot = [{"idx": 0, "ys": [bad, good], "infos": [{"r": 0}, {"r": 1}]},
           {"idx": 1, "ys": [good2, bad], "infos": [{"r": 1}, {"r": 1}]}]  # fmt: skip
    cot = [{"idx": 0, "ys": [good, bad], "infos": [{"r": 1}, {"r": 0}]},
           {"idx": 1, "ys": [bad, bad], "infos": [{"r": 0}, {"r": 0}]}]  # fmt: skip
    io = [{"idx": 0, "ys": [bad, bad], "accs": [False, False]},
          {"idx": 1, "ys": [good2, good2], "accs": [True, True]}]  # fmt: skip
    logs = tmp_path / "logs"
    logs.mkdir()
    for name, records in (("tot", tot), ("cot", cot), ("io", io)):
        (logs / LOGS[name]).write_text(json.dumps(records))
    out = tmp_path / "out.json"
    main(["--logs", str(logs), "--csv", str(tmp_path / "24.csv"), "--json", str(out)])
    figures = json.loads(out.read_text())
    assert figures.keys() >= KEYS
    assert figures["tot_any_of_5"] == 1.0 and figures["tot_first"] == 0.5
    assert figures["cot_pass@1"] == 0.25 and figures["io_pass@1"] == 0.5
    assert figures["disagreements"]["tot"]["count"] == 1
    assert "tot: 1 of 4 outputs judged differently" in capsys.readouterr().out


@pytest.mark.requires_data
def test_real_tot_logs(tmp_path: Path):
    root = require_data("game24/tot-gpt4-logs", "game24/24.csv")
    out = tmp_path / "rescore.json"
    main(["--logs", str(root / "game24" / "tot-gpt4-logs"), "--json", str(out)])
    figures = json.loads(out.read_text())
    assert abs(figures["tot_any_of_5"] - 0.69) <= 0.02
    assert abs(figures["cot_pass@1"] - 0.04) <= 0.02
    assert abs(figures["io_pass@1"] - 0.073) <= 0.02
    assert all(0.0 <= figures[k] <= 1.0 for k in KEYS)
