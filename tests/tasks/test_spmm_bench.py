"""tasks/spmm_bench.py through the composed config: metrics.json, the result JSON with the
device manifest, the plot; bad settings fail before any data is read."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
from conftest import compose_cfg
from omegaconf import OmegaConf

from effml.errors import MissingDataError
from tasks.bench import MANIFEST_KEY
from tasks.core import run_task

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXPERIMENT = "spmm_bench_cora"


def bench_cfg(tmp_path: Path, cache_dir: Path, *overrides: str):
    """The experiment at its smoke setting, with runs and caches under tmp folders."""
    chosen = compose_cfg([f"experiment={EXPERIMENT}"])
    return compose_cfg(
        [
            f"experiment={EXPERIMENT}",
            *chosen.smoke_overrides,
            f"paths.output_dir={tmp_path}",
            f"paths.cache_dir={cache_dir}",
            *overrides,
        ]
    )


def test_experiment_drops_the_lightning_groups(tmp_path: Path, cache_dir: Path) -> None:
    cfg = bench_cfg(tmp_path, cache_dir)
    assert not {"datamodule", "model", "trainer", "callbacks"} & set(cfg)
    assert cfg.task._target_ == "tasks.spmm_bench.spmm_bench"
    assert list(cfg.bench.widths) == [64] and cfg.bench.rounds == 1
    OmegaConf.to_container(cfg, resolve=True)


def test_smoke_run_on_cora(tmp_path: Path, cache_dir: Path) -> None:
    cfg = bench_cfg(tmp_path, cache_dir)
    try:
        value = run_task(cfg)
    except MissingDataError as err:
        pytest.skip(f"Cora is absent: {err}")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {
        "bench/spmm_ms_d64",
        "bench/spmm_max_rel_err_d64",
        "bench/dense_ms_d64",
        "bench/dense_max_rel_err_d64",
        "bench/dense_speedup_d64",
    }
    assert value == metrics[cfg.optimized_metric] > 0
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["bench/spmm_max_rel_err_d64"] < 1e-5
    result = json.loads((tmp_path / "spmm_bench.json").read_text())
    assert (result["graph"], result["nodes"], result["edges"]) == ("cora", 2708, 10556)
    assert result["ops"] == ["spmm", "dense"] and result["skipped"] == {}
    assert result[MANIFEST_KEY]["torch"] and "cpu_model" in result[MANIFEST_KEY]
    row = result["results"][0]
    assert row["dense_speedup"] == pytest.approx(row["spmm_ms"] / row["dense_ms"])
    assert (tmp_path / "spmm_bench.png").read_bytes()[:8] == PNG_MAGIC


def test_dense_skipped_over_the_memory_limit(tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "graphs").mkdir()
    with gzip.open(tmp_path / "graphs" / "ring.edges.gz", "wt") as handle:
        handle.write("# nodes: 40\n# directed: false\n")
        handle.write("".join(f"{i} {(i + 1) % 40}\n" for i in range(40)))
    cfg = bench_cfg(
        tmp_path,
        cache_dir,
        "bench.graph=ring",
        f"paths.data_dir={tmp_path}",
        "bench.dense_max_bytes=1000",
        "bench.widths=[3,8]",
        "optimized_metric=bench/spmm_ms_d8",
    )
    run_task(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {f"bench/spmm_{k}_d{w}" for w in (3, 8) for k in ("max_rel_err", "ms")}
    result = json.loads((tmp_path / "spmm_bench.json").read_text())
    assert result["edges"] == 80 and "6400 bytes > 1000" in result["skipped"]["dense"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("bench.ops=[spmm,gemm]", "bench.ops="),
        ("bench.baseline=reference", "bench.baseline=reference"),
        ("bench.widths=[0]", "bench.widths=[0]"),
        ("bench.clock=gpu", "clock=gpu"),
    ],
)
def test_bad_settings_fail_before_reading_data(
    override: str, message: str, tmp_path: Path, cache_dir: Path
) -> None:
    cfg = bench_cfg(tmp_path, cache_dir, override, "bench.graph=never-read")
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        run_task(cfg)


def test_unknown_graph_raises_missing_data(tmp_path: Path, cache_dir: Path) -> None:
    cfg = bench_cfg(tmp_path, cache_dir, "bench.graph=no_such_graph")
    with pytest.raises(MissingDataError, match="no graph 'no_such_graph'"):
        run_task(cfg)
