"""The staged pipeline on LinGCN with tiny synthetic skeletons: stages, hand-over, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_ok, run_cli, run_folder

TINY = [
    "experiment=lingcn_ntu",
    "datamodule=ntu_synthetic",
    "trainer=cpu",
    "datamodule.num_classes=4",
    "datamodule.samples_per_class_per_view=6",
    "datamodule.num_frames=16",
    "datamodule.batch_size=16",
    "lingcn_sizes.ntu_synthetic.channels=[[3,4,1],[4,8,2],[8,8,1]]",
    "lingcn_sizes.ntu_synthetic.epochs.baseline=2",
    "lingcn_sizes.ntu_synthetic.epochs.linearize=2",
    "lingcn_sizes.ntu_synthetic.epochs.poly=1",
    "lingcn_sizes.ntu_synthetic.epochs.cryptogcn=1",
]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    logs, cache = tmp_path_factory.mktemp("logs"), tmp_path_factory.mktemp("cache")
    proc = run_cli(
        [*TINY, "pipeline.he.num_samples=3", "pipeline.he.baseline_samples=1"], logs, cache
    )
    assert_ok(proc)
    return run_folder(proc), logs, cache


def test_stages_hand_over_checkpoints(pipeline_run: tuple[Path, Path, Path]) -> None:
    run, _, _ = pipeline_run
    metrics = json.loads((run / "metrics.json").read_text())
    for stage in ("baseline", "linearize", "poly", "cryptogcn"):
        record = json.loads((run / stage / "stage.json").read_text())
        assert Path(record["best_ckpt"]).is_file()
        assert str(run / stage) in record["best_ckpt"]
        assert f"{stage}/test_acc" in metrics
    assert metrics["baseline/gates_kept"] == 3 * 2 * 25
    # the poly stage freezes the linearize stage's gates
    assert metrics["poly/gates_kept"] == metrics["linearize/gates_kept"]


def test_encrypted_inference_matches_plaintext(pipeline_run: tuple[Path, Path, Path]) -> None:
    run, _, _ = pipeline_run
    metrics = json.loads((run / "metrics.json").read_text())
    for prefix in ("he", "he_baseline"):
        assert metrics[f"{prefix}/agreement"] == 1.0
        assert metrics[f"{prefix}/max_abs_logit_err"] <= 1e-3
        assert metrics[f"{prefix}/latency_s_per_sample"] > 0
        assert metrics[f"{prefix}/ops/ct_ct_mul"] > 0
    # removed nonlinearities never cost levels: the linearized circuit is no deeper
    assert metrics["he/levels"] <= metrics["he_baseline/levels"]
    for name in ("gate_map.png", "accuracy_latency.png", "he_report.json"):
        assert (run / "he" / name).stat().st_size > 0


def test_finished_stages_are_skipped_on_rerun(pipeline_run: tuple[Path, Path, Path]) -> None:
    run, logs, cache = pipeline_run
    before = {p: p.stat().st_mtime_ns for p in run.glob("*/checkpoints/*.ckpt")}
    proc = run_cli([*TINY, "stages=[baseline,linearize,poly]", f"hydra.run.dir={run}"], logs, cache)
    assert_ok(proc)
    out = proc.stdout + proc.stderr
    assert out.count("finished earlier") == 3
    assert {p: p.stat().st_mtime_ns for p in run.glob("*/checkpoints/*.ckpt")} == before


def test_stage_needing_a_missing_stage_fails_early(tmp_path: Path) -> None:
    proc = run_cli([*TINY, "stages=[poly]"], tmp_path, tmp_path / "cache")
    assert proc.returncode != 0
    assert "needs the finished stage(s)" in proc.stdout + proc.stderr


def test_reuse_from_takes_finished_stages_of_another_run(
    pipeline_run: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    source, _, cache = pipeline_run
    args = [*TINY, f"reuse_from={source}", "pipeline.he.num_samples=2"]
    args += ["pipeline.he.baseline=false", "reuse_stages=[baseline,linearize,poly,cryptogcn]"]
    proc = run_cli(args, tmp_path, cache)
    assert_ok(proc)
    run = run_folder(proc)
    assert run != source
    assert (proc.stdout + proc.stderr).count("reused from") == 4
    assert not (run / "baseline").exists()  # nothing retrained
    metrics = json.loads((run / "metrics.json").read_text())
    source_metrics = json.loads((source / "metrics.json").read_text())
    assert metrics["poly/test_acc"] == source_metrics["poly/test_acc"]
    assert metrics["he/agreement"] == 1.0
    assert not any(key.startswith("he_baseline/") for key in metrics)


def test_reuse_from_a_folder_without_stages_fails(tmp_path: Path) -> None:
    proc = run_cli([*TINY, f"reuse_from={tmp_path}"], tmp_path / "logs", tmp_path / "cache")
    assert proc.returncode != 0
    assert "has no finished stage ['baseline', 'cryptogcn']" in proc.stdout + proc.stderr
