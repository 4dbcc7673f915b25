"""scripts/bench_spmm.py on a tiny edge file: JSON keys, errors, the plot, the metadata."""

from __future__ import annotations

import gzip
import json
import math
import re
from pathlib import Path

import pytest
import torch

from ops.spmm import accel_graph, csr_from_edge_index, read_block4
from scripts.bench_spmm import main
from tasks.bench import MANIFEST_KEY, load_graph

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROW_KEYS = {"graph", "dim", "backend", "fwd_ms", "fwdbwd_ms", "max_rel_err"}
GRAPH_KEYS = {"graph", "nodes", "edges", "blocks", "sort_ms", "partition_ms", "prepare_ms"}
SPEEDUPS = ("fwd_vs_torch_sparse", "fwdbwd_vs_torch_sparse", "fwd_vs_pyg", "fwdbwd_vs_pyg")


def write_edges(path: Path, n: int = 500, m: int = 2500) -> None:
    """A gzipped undirected edge list (shared-graph format) with one hub of degree > 384."""
    gen = torch.Generator().manual_seed(0)
    pairs = torch.randint(0, n, (m, 2), generator=gen).tolist() + [[0, j] for j in range(1, 450)]
    header = ["# name: tiny", f"# nodes: {n}", f"# edges: {len(pairs)}", "# directed: false"]
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(header + [f"{a} {b}" for a, b in pairs]) + "\n")


def test_bench_writes_json_plot_and_block4(tmp_path):
    edges = tmp_path / "tiny.edges.gz"
    write_edges(edges)
    out, png, meta = tmp_path / "bench.json", tmp_path / "bench.png", tmp_path / "tiny.block4"
    result = main(["--graph", str(edges), "--dims", "8", "--threads", "1", "--clock", "cpu",
                   "--rounds", "1", "--min-run-time", "0.01", "--json", str(out),
                   "--plot", str(png), "--dump-meta", str(meta)])  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["device"] == {"type": "cpu", "name": "cpu", "threads": 1, "clock": "cpu"}
    assert saved[MANIFEST_KEY]["torch"] == torch.__version__
    assert [(r["graph"], r["dim"], r["backend"]) for r in saved["results"]] == [
        ("tiny", 8, "accel"),
        ("tiny", 8, "torch_sparse"),
        ("tiny", 8, "pyg"),
    ]
    for row in saved["results"]:
        assert row.keys() >= ROW_KEYS
        assert row["fwd_ms"] > 0 and row["fwdbwd_ms"] > 0 and row["max_rel_err"] < 1e-5
    accel, torch_sparse, pyg = saved["results"]
    assert accel["speedup_fwd_vs_torch_sparse"] == pytest.approx(
        torch_sparse["fwd_ms"] / accel["fwd_ms"]
    )
    assert accel["speedup_fwdbwd_vs_pyg"] == pytest.approx(pyg["fwdbwd_ms"] / accel["fwdbwd_ms"])
    for name in SPEEDUPS:  # one row each: the geometric mean is the row's value
        assert saved["summary"][f"geomean_speedup_{name}"] == pytest.approx(
            accel[f"speedup_{name}"]
        )
    (info,) = saved["graphs"]
    assert info.keys() >= GRAPH_KEYS and info["nodes"] == 500 and info["max_degree"] > 384
    assert all(math.isfinite(v) and v >= 0 for k, v in info.items() if k.endswith("_ms"))
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert result["results"] == saved["results"]

    loaded = load_graph(str(edges), tmp_path, tmp_path)
    adj = csr_from_edge_index(loaded.edge_index, 500, norm="gcn", add_self_loops=True)
    expected = accel_graph(adj).meta
    assert meta.stat().st_size == expected.shape[0] * 16 == info["blocks"] * 16
    assert torch.equal(read_block4(meta), expected)


def test_unknown_graph_exits_listing_the_names(tmp_path):
    (tmp_path / "graphs").mkdir()
    write_edges(tmp_path / "graphs" / "tiny.edges.gz", n=5, m=5)
    with pytest.raises(SystemExit, match="no graph 'missing'.*tiny"):
        main(["--graph", "missing", "--data-dir", str(tmp_path)])


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--graph", "a,b", "--dump-meta", "m.block4"], r"put \{graph\} in the path"),
        (["--graph", "a", "--backends", "accel,dense"], r"--backends accel,dense: choose"),
        (["--graph", "a", "--dims", "0"], r"every width must be ≥ 1"),
    ],
)
def test_bad_arguments_exit_with_the_fix(argv, match, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert re.search(match, capsys.readouterr().err)
