"""tasks.bench: the timer, the device manifest, result files and graph resolution."""

from __future__ import annotations

import gzip
import itertools
import json
import math
import platform
import time
from pathlib import Path

import pytest
import torch
from conftest import require_data

from effml.errors import MissingDataError
from tasks.bench import (
    MANIFEST_KEY,
    Timer,
    device_manifest,
    graph_file,
    load_graph,
    max_errors,
    non_finite,
    save_result,
)
from tasks.bench import manifest as manifest_module
from tasks.bench.manifest import VECTOR_ISA_FLAGS

MANIFEST_KEYS = {"cpu_model", "cpu_cores", "vector_isa", "gpu", "cuda", "torch", "triton",
                 "python", "torch_threads", "os", "machine"}  # fmt: skip


def spin(seconds: float) -> None:
    """Busy-wait, so wall and CPU clocks both advance."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_timer_median_of_a_spinning_fn_is_about_its_duration(clock: str) -> None:
    times = Timer(rounds=2, round_time=0.02, clock=clock)({"spin": lambda: spin(2e-3)})
    assert 1.0 < times["spin"] < 50.0


def test_timer_sleep_counts_on_the_wall_clock_only() -> None:
    fns = {"sleep": lambda: time.sleep(2e-3)}
    assert Timer(rounds=1, round_time=0.02, clock="wall")(fns)["sleep"] >= 1.9
    assert Timer(rounds=1, round_time=0.02, clock="cpu")(fns)["sleep"] < 1.0


def test_timer_warms_up_then_interleaves_rounds() -> None:
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    seen: list[str] = []
    samples = Timer(rounds=3, round_time=1e-3, progress=seen.append).samples(fns)
    assert {name: len(ms) for name, ms in samples.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(ms > 0 for values in samples.values() for ms in values)
    runs = [name for name, _ in itertools.groupby(calls)]  # consecutive calls of one fn merged
    assert runs == ["a", "b", "c"] * 4  # one warm-up pass, then three rounds in the same order
    assert calls[:3] == ["a", "b", "c"]  # the warm-up calls each fn exactly once
    assert seen == [f"    round {r}/3: a, b, c" for r in (1, 2, 3)]


def test_timer_measures_with_the_requested_threads() -> None:
    threads: set[int] = set()
    Timer(rounds=1, round_time=1e-3, num_threads=1).samples(
        {"f": lambda: threads.add(torch.get_num_threads())}
    )
    assert 1 in threads


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clock": "gpu"}, "clock='gpu'"),
        ({"device": "tpu"}, "device='tpu'"),
        ({"rounds": 0}, "rounds=0"),
        ({"round_time": 0}, "round_time=0"),
        ({"num_threads": 0}, "num_threads=0"),
    ],
)
def test_timer_rejects_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Timer(**kwargs)


def test_manifest_keys_and_no_host_name() -> None:
    manifest = device_manifest(threads=3)
    assert manifest.keys() == MANIFEST_KEYS
    assert manifest["torch_threads"] == 3 and manifest["torch"] == torch.__version__
    assert manifest["cpu_cores"] >= 1
    assert set(manifest["vector_isa"]) <= set(VECTOR_ISA_FLAGS)
    assert (manifest["gpu"] is None) == (not torch.cuda.is_available())
    assert device_manifest()["torch_threads"] == torch.get_num_threads()
    host = platform.node()
    assert not host or host not in json.dumps(manifest)


def test_manifest_reads_cpu_model_and_vector_flags(tmp_path: Path, monkeypatch) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse4_2 avx2 fma avx512f\n\n"
        "processor\t: 1\nmodel name\t: Other\nflags\t\t: neon\n"
    )
    monkeypatch.setattr(manifest_module, "CPUINFO", cpuinfo)
    manifest = device_manifest()
    assert manifest["cpu_model"] == "Test CPU 9000"
    assert manifest["vector_isa"] == ["sse4_2", "avx2", "fma", "avx512f"]


def test_save_result_writes_json_with_manifest_and_plot(tmp_path: Path) -> None:
    drawn: list[Path] = []
    json_path, png = tmp_path / "sub" / "r.json", tmp_path / "sub" / "r.png"
    save_result({"x": 1.5}, json_path, png, lambda result, path: drawn.append(path), print)
    saved = json.loads(json_path.read_text())
    assert saved["x"] == 1.5 and saved[MANIFEST_KEY].keys() == MANIFEST_KEYS
    assert drawn == [png]
    own = {"x": 1, MANIFEST_KEY: {"cpu_model": "given"}}
    save_result(own, json_path, None, lambda *_: pytest.fail("no plot asked for"), print)
    assert json.loads(json_path.read_text())[MANIFEST_KEY] == {"cpu_model": "given"}


def test_non_finite_and_max_errors() -> None:
    rows = [{"k": 1, "a": 1.0, "b": math.nan}, {"k": 2, "a": math.inf, "b": 0.5}]
    assert non_finite(rows, lambda row, key: (row["k"], key)) == [(1, "b"), (2, "a")]
    ref = torch.tensor([[2.0, -4.0]], dtype=torch.float64)
    assert max_errors(torch.tensor([[2.0, -3.0]]), ref) == (1.0, 0.25)
    assert max_errors(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.float64)) == (0.0, 0.0)


def write_edges(path: Path, n: int, pairs: list[tuple[int, int]], directed: bool) -> None:
    """An edge list in the shared-graph format (header, then 'src dst' lines)."""
    header = [f"# nodes: {n}", f"# directed: {str(directed).lower()}"]
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(header + [f"{a} {b}" for a, b in pairs]) + "\n")


def test_load_graph_by_name_and_path(tmp_path: Path) -> None:
    (tmp_path / "graphs").mkdir()
    pairs = [(0, 1), (1, 2), (2, 0), (3, 1)]
    write_edges(tmp_path / "graphs" / "tiny.edges.gz", 5, pairs, directed=False)
    write_edges(tmp_path / "d.edges.gz", 5, pairs, directed=True)
    assert graph_file("tiny", tmp_path) == tmp_path / "graphs" / "tiny.edges.gz"
    assert graph_file("absent", tmp_path) is None
    undirected = load_graph("tiny", tmp_path, tmp_path / "cache")
    directed = load_graph(str(tmp_path / "d.edges.gz"), tmp_path, tmp_path / "cache")
    assert (undirected.name, undirected.num_nodes) == ("tiny", 5)  # node 4: isolated, counted
    assert directed.name == "d" and directed.edge_index.tolist() == [[0, 1, 2, 3], [1, 2, 0, 1]]
    assert torch.equal(undirected.edge_index[:, :4], directed.edge_index)
    assert torch.equal(undirected.edge_index[:, 4:], directed.edge_index.flip(0))


def test_load_graph_unknown_name_lists_what_there_is(tmp_path: Path) -> None:
    (tmp_path / "graphs").mkdir()
    write_edges(tmp_path / "graphs" / "tiny.edges.gz", 2, [(0, 1)], directed=False)
    with pytest.raises(MissingDataError, match=r"no graph 'missing'.*'cora'.*'tiny'"):
        load_graph("missing", tmp_path, tmp_path / "cache")


def test_load_graph_planetoid_name(cache_dir: Path) -> None:
    data = require_data("Planetoid/Cora/raw/ind.cora.graph")
    graph = load_graph("Cora", data, cache_dir)
    assert (graph.name, graph.num_nodes, graph.edge_index.shape[1]) == ("cora", 2708, 10556)
