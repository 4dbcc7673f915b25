"""scripts/bench_revsnn.py on tiny shapes: JSON keys, ratios consistent with the raw numbers,
memory that grows with T for LIF and not for the reversible node, the plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from scripts.bench_revsnn import KINDS, main
from tasks.bench import MANIFEST_KEY

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROW_KEYS = {"node_memory_ratio_vs_lif", "net_memory_ratio_vs_lif",
            "step_time_ratio_vs_reversible_autograd", "grad_max_rel_err",
            "net_step_time_ratio_vs_reversible_autograd", "inverse_max_abs_err",
            "inverse_flipped"}  # fmt: skip


def test_bench_writes_sane_json_and_plot(tmp_path: Path) -> None:
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    tiny = "--T 2,4 --widths 4 --batch 2 --size 4 --backend cpu --min-run-time 0.01 --rounds 1"
    main([*tiny.split(), "--json", str(out), "--plot", str(png)])
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["backend"] == "cpu"
    assert result[MANIFEST_KEY]["torch_threads"] == result["threads"]
    rows = result["results"]
    assert [(r["T"], r["width"]) for r in rows] == [(2, 4), (4, 4)]
    for row in rows:
        assert row.keys() >= ROW_KEYS
        assert all(math.isfinite(v) for v in row.values())
        assert row["grad_max_rel_err"] <= 1e-4 and row["inverse_max_abs_err"] <= 1e-5
        assert row["node_memory_ratio_vs_lif"] == pytest.approx(
            row["node_bytes_lif"] / row["node_bytes_reversible"]
        )
        assert row["net_memory_ratio_vs_lif"] > 1
        assert all(row[f"node_step_ms_{kind}"] > 0 for kind in KINDS)
        state_bytes = 2 * 4 * 4 * 4 * 4  # v_T: batch × width × size² fp32
        assert row["node_bytes_reversible"] == row["node_bytes_reversible_autograd"] == state_bytes
    assert rows[1]["node_bytes_lif"] == 2 * rows[0]["node_bytes_lif"]  # LIF keeps every step
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_bad_arguments_exit() -> None:
    with pytest.raises(SystemExit):
        main(["--widths", "5"])
