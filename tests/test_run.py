"""run.py end to end on real Cora: training, resume, multirun, Optuna, DDP on CPU, loggers,
publishing, report, and a task that trains nothing (the SpMM benchmark).

Each test starts ``python run.py`` in a subprocess, exactly as a user would.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import (
    ROOT,
    assert_ok,
    compose_cfg,
    read_wandb_run,
    require_data,
    run_cli,
    run_folder,
)

CORA = "Planetoid/Cora/raw/ind.cora.graph"
SHORT = ["experiment=sage_cora", "trainer=cpu", "trainer.max_epochs=3"]


@pytest.fixture
def cora(cache_dir: Path) -> Path:
    return require_data(CORA)


def read_metrics(run: Path) -> dict[str, float]:
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.slow
def test_sage_cora_learns(cora: Path, tmp_path: Path, cache_dir: Path) -> None:
    proc = run_cli(
        ["experiment=sage_cora", "trainer=cpu", "trainer.max_epochs=25", "seed=1"],
        tmp_path,
        cache_dir,
    )
    assert_ok(proc)
    run = run_folder(proc)
    assert run.parent.parent.name == "sage_cora" and run.parent.name == "runs"
    metrics = read_metrics(run)
    # chance is 1/7; a 2-layer SAGE is near 0.8 after a few dozen epochs
    assert metrics["test/acc"] > 0.6, metrics
    assert metrics["val/acc_best"] >= metrics["val/acc"] - 1e-9
    assert metrics["train/epoch_time_s"] > 0
    for name in ("run.log", ".hydra/config.yaml", "csv/metrics.csv", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    curves = pd.read_csv(run / "csv/metrics.csv")
    assert curves.dropna(subset=["train/loss"])["epoch"].max() == 24
    assert {"train/loss", "val/acc", "train/epoch_time_s"} <= set(curves.columns)


@pytest.mark.slow
def test_interrupted_run_resumes(cora: Path, tmp_path: Path, cache_dir: Path) -> None:
    # a long run, interrupted with Ctrl-C (SIGINT) once it has checkpointed
    cmd = [
        sys.executable,
        str(ROOT / "run.py"),
        "experiment=sage_cora",
        "trainer=cpu",
        "trainer.max_epochs=100000",
        "seed=2",
        f"paths.log_dir={tmp_path / 'a'}",
        f"paths.cache_dir={cache_dir}",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 300
    while not list((tmp_path / "a").glob("sage_cora/runs/*/checkpoints/epoch_*.ckpt")):
        assert proc.poll() is None, proc.communicate()[0][-4000:]
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    try:
        out = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:  # never leave a run spinning (SIGINT ignored under nohup)
            proc.kill()
    assert proc.returncode != 0, out[-3000:]
    run = next((tmp_path / "a").glob("sage_cora/runs/*"))
    assert f"Run folder: {run}" in out
    last = run / "checkpoints" / "last.ckpt"
    interrupted_at = torch.load(last, weights_only=False)["epoch"]
    before = (last.stat().st_mtime_ns, last.read_bytes())

    target = interrupted_at + 3
    second = run_cli(
        [
            "experiment=sage_cora",
            "trainer=cpu",
            f"trainer.max_epochs={target}",
            "seed=2",
            f"ckpt_path={run}",
        ],
        tmp_path / "b",
        cache_dir,
    )
    assert_ok(second)
    resumed = run_folder(second)
    assert resumed != run
    # training continues from the interrupted epoch, not from scratch
    curves = pd.read_csv(resumed / "csv/metrics.csv").dropna(subset=["train/loss"])
    epochs = sorted(int(e) for e in curves["epoch"].unique())
    assert interrupted_at <= epochs[0] <= interrupted_at + 1 and epochs[-1] == target - 1
    assert torch.load(resumed / "checkpoints/last.ckpt", weights_only=False)["epoch"] == target - 1
    # the interrupted run's checkpoint is untouched
    assert (last.stat().st_mtime_ns, last.read_bytes()) == before
    # the best epoch counts across the interruption: test/acc is that epoch's
    assert read_metrics(resumed)["val/acc_best"] >= 0.5
    assert "test/acc" in read_metrics(resumed)


def test_resume_needs_a_checkpoint(tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "empty_run").mkdir()
    proc = run_cli([*SHORT, f"ckpt_path={tmp_path / 'empty_run'}"], tmp_path, cache_dir)
    assert proc.returncode != 0
    assert "checkpoints/last.ckpt" in proc.stderr + proc.stdout


@pytest.mark.slow
def test_multirun_and_report(cora: Path, tmp_path: Path, cache_dir: Path) -> None:
    proc = run_cli(["-m", *SHORT, "model.optimizer.lr=0.01,0.005"], tmp_path, cache_dir)
    assert_ok(proc)
    sweeps = list((tmp_path / "sage_cora" / "multiruns").iterdir())
    assert len(sweeps) == 1
    sweep = sweeps[0]
    jobs = sorted(p for p in sweep.iterdir() if p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    lrs = []
    for job in jobs:
        assert "test/acc" in read_metrics(job)
        lrs.append(
            yaml.safe_load((job / ".hydra/config.yaml").read_text())["model"]["optimizer"]["lr"]
        )
    assert sorted(lrs) == [0.005, 0.01]

    report = run_cli_script(["scripts/report.py", str(sweep)])
    table = pd.read_csv(sweep / "plots" / "jobs.csv")
    assert len(table) == 2 and set(table["status"]) == {"ok"}
    assert (sweep / "plots" / "metric_vs_model_optimizer_lr.png").stat().st_size > 1000
    assert "jobs.csv" in report

    report = run_cli_script(["scripts/report.py", str(jobs[0])])
    assert (jobs[0] / "plots" / "curves.png").stat().st_size > 1000


def run_cli_script(args: list[str]) -> str:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert_ok(proc)
    return proc.stdout


@pytest.mark.slow
def test_optuna_sweep(cora: Path, tmp_path: Path, cache_dir: Path) -> None:
    proc = run_cli(
        [
            *SHORT,
            "hparams_search=sage_cora_optuna",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
        ],
        tmp_path,
        cache_dir,
    )
    assert_ok(proc)
    sweep = next((tmp_path / "sage_cora" / "multiruns").iterdir())
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    values = [read_metrics(sweep / str(i))["val/acc_best"] for i in range(2)]
    assert results["best_value"] == pytest.approx(max(values))
    assert set(results["best_params"]) >= {"model.optimizer.lr", "model.dropout"}
    assert "Best value" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_ddp_cpu(cora: Path, tmp_path: Path, cache_dir: Path) -> None:
    proc = run_cli(
        ["experiment=sage_cora", "trainer=ddp_cpu", "trainer.max_epochs=1"], tmp_path, cache_dir
    )
    assert_ok(proc)
    out = proc.stdout + proc.stderr
    assert "distributed_backend=gloo" in out and "All distributed processes registered" in out
    run = run_folder(proc)
    assert "test/acc" in read_metrics(run)
    assert (run / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_loggers_write_files(cora: Path, tmp_path: Path, cache_dir: Path) -> None:
    proc = run_cli(
        [*SHORT, "logger=many"],
        tmp_path,
        cache_dir,
        env={"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb-dir")},
    )
    assert_ok(proc)
    run = run_folder(proc)
    assert (run / "csv" / "metrics.csv").is_file()
    offline = list((run / "wandb").glob("offline-run-*"))
    assert offline and list(offline[0].glob("*.wandb")), "no offline W&B run written"
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    # metrics.json joins the curves in the run Lightning's logger opened
    seen = read_wandb_run(run)
    assert seen["summary"]["test/acc"] == read_metrics(run)["test/acc"]
    assert "train/loss" in seen["summary"]


def test_benchmark_runs_without_lightning_groups(
    cora: Path, tmp_path: Path, cache_dir: Path
) -> None:
    smallest = list(compose_cfg(["experiment=spmm_bench_cora"]).smoke_overrides)
    proc = run_cli(
        ["experiment=spmm_bench_cora", *smallest, "logger=wandb"],
        tmp_path,
        cache_dir,
        env={"WANDB_MODE": "offline"},
    )
    assert_ok(proc)
    run = run_folder(proc)
    assert run.parent.parent.name == "spmm_bench_cora"
    metrics = read_metrics(run)
    assert metrics and all(key.startswith("bench/") for key in metrics)
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert not {"datamodule", "model", "trainer", "callbacks"} & set(config)
    # its plot reaches the W&B run that run_task opened for it
    plots = [p for p in run.rglob("*.png") if "wandb" not in p.parts]
    seen = read_wandb_run(run)
    assert plots and all(
        seen["summary"][f"images/{p.relative_to(run).with_suffix('').as_posix()}"]["_type"]
        == "image-file"
        for p in plots
    )


def test_missing_data_names_the_folder(tmp_path: Path, cache_dir: Path) -> None:
    empty = tmp_path / "no-data-here"
    empty.mkdir()
    proc = run_cli(SHORT, tmp_path, tmp_path / "cache", env={"DATA_DIR": str(empty)})
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert str(empty) in out and "DATA_DIR" in out
