"""scripts/bench_maxk.py on a tiny generated edge file: JSON keys, finite values, the plot."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scripts.bench_maxk import main
from tasks.bench import MANIFEST_KEY

REPO_ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TOP_KEYS = {"graph", "nodes", "edges", "dim", "device", "backend", "results"}
ROW_KEYS = {"k", "spmm_ms", "topk_ms", "spgemm_ms", "sspmm_ms", "dense_bwd_ms",
            "spgemm_speedup", "sspmm_speedup", "fwd_max_rel_err", "bwd_max_rel_err",
            "fwd_max_abs_err", "bwd_max_abs_err"}  # fmt: skip
EPOCH_KEYS = {"epoch_relu_ms", "epoch_maxk_ms", "epoch_speedup", "spmm_share", "amdahl_limit"}


def write_edges(path: Path, n: int = 300, m: int = 3000, directed: bool = False) -> None:
    """A gzipped edge list in the shared-graph format (header, then 'src dst' lines)."""
    gen = torch.Generator().manual_seed(0)
    pairs = torch.randint(0, n, (m, 2), generator=gen).tolist()
    header = ["# name: tiny", f"# nodes: {n}", f"# edges: {m}", f"# directed: {directed}".lower()]
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(header + [f"{a} {b}" for a, b in pairs]) + "\n")


def test_unknown_graph_exits_listing_the_names(tmp_path):
    (tmp_path / "graphs").mkdir()
    write_edges(tmp_path / "graphs" / "tiny.edges.gz", n=5, m=5)
    with pytest.raises(SystemExit, match="no graph 'missing'.*tiny"):
        main(["--graph", "missing", "--data-dir", str(tmp_path), "--no-epoch"])


def test_bench_writes_sane_json_and_plot(tmp_path):
    edges = tmp_path / "tiny.edges.gz"
    write_edges(edges)
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "bench_maxk.py"), "--graph", str(edges),
         "--dim", "64", "--k", "4,13", "--backend", "cpu", "--min-run-time", "0.01",
         "--epoch-k", "8", "--epoch-layers", "2", "--json", str(out), "--plot", str(png)],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result.keys() >= TOP_KEYS and result.keys() >= EPOCH_KEYS
    assert result[MANIFEST_KEY]["torch"] == torch.__version__
    assert result["graph"] == "tiny" and result["nodes"] == 300 and result["dim"] == 64
    assert result["device"] == "cpu" and result["backend"] == "cpu"
    assert 3000 < result["edges"] <= 6000  # both directions, duplicates merged
    assert [row["k"] for row in result["results"]] == [4, 13]
    assert result["epoch_k"] == 8 and result["epoch_kernels"]["k"] == 8  # measured for the epoch
    for row in [*result["results"], result["epoch_kernels"]]:
        assert row.keys() >= ROW_KEYS
        assert all(math.isfinite(v) for v in row.values())
        assert all(row[key] > 0 for key in ROW_KEYS if key.endswith("_ms"))
        assert row["fwd_max_rel_err"] < 1e-5 and row["bwd_max_rel_err"] < 1e-5
        assert row["spgemm_speedup"] == pytest.approx(row["spmm_ms"] / row["spgemm_ms"])
    assert 0 < result["spmm_share"] <= 1 and result["amdahl_limit"] > 0
    assert result["epoch_speedup"] == pytest.approx(
        result["epoch_relu_ms"] / result["epoch_maxk_ms"]
    )
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert "spgemm_speedup" in proc.stdout and "Amdahl limit" in proc.stdout


def test_bench_main_without_epoch(tmp_path):
    edges = tmp_path / "tiny.edges.gz"
    write_edges(edges, n=50, m=200, directed=True)
    result = main(["--graph", str(edges), "--dim", "16", "--k", "16", "--backend", "reference",
                   "--min-run-time", "0.01", "--no-epoch"])  # fmt: skip
    assert "epoch_relu_ms" not in result and result["backend"] == "reference"
    assert result["results"][0]["fwd_max_rel_err"] < 1e-5
