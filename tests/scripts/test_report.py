"""Tests for scripts/report.py on fake single-run and multirun folders."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import read_wandb_run

from scripts.report import choose_metric, group_families, is_log_spaced, main, seeds_figure
from tasks.run_folders import (
    ReportError,
    collect_jobs,
    detect_layout,
    load_curves,
    parse_overrides,
    parse_value,
    summarize_seeds,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_metrics_csv(path: Path, epochs: int = 3) -> None:
    """Write a CSVLogger-style file: train and val rows per epoch, then one test row."""
    rows = []
    for epoch in range(epochs):
        step = (epoch + 1) * 10 - 1
        rows.append(
            {
                "epoch": epoch,
                "step": step,
                "train/loss": 1.0 / (epoch + 1),
                "train/acc": 0.5 + 0.1 * epoch,
                "train/epoch_time_s": 2.0 + 0.01 * epoch,
            }
        )
        rows.append(
            {
                "epoch": epoch,
                "step": step,
                "val/loss": 1.2 / (epoch + 1),
                "val/acc": 0.45 + 0.1 * epoch,
                "val/acc_best": 0.45 + 0.1 * epoch,
            }
        )
    rows.append({"epoch": epochs - 1, "step": epochs * 10, "test/acc": 0.81})
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


def write_run(run_dir: Path, overrides: list[str], metrics: dict | None) -> Path:
    """Write a fake run folder; `metrics=None` leaves it as a failed run."""
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True)
    config = {"task_name": "mnist_mlp", "optimized_metric": "val/acc_best", "seed": 12345}
    (hydra_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    write_metrics_csv(run_dir / "csv" / "metrics.csv")
    if metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


@pytest.fixture
def single_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "outputs" / "mnist_mlp" / "runs" / "2024-05-01_12-00-00"
    return write_run(run_dir, ["seed=1"], {"test/acc": 0.81, "val/acc_best": 0.79})


@pytest.fixture
def multirun(tmp_path: Path) -> Path:
    """Four jobs sweeping lr and optimizer (trainer.max_epochs constant); job 3 failed."""
    sweep_dir = tmp_path / "outputs" / "mnist_mlp" / "multiruns" / "2024-05-01_12-00-00"
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "multirun.yaml").write_text(yaml.safe_dump({"optimized_metric": "val/acc_best"}))
    jobs = [
        ("0.001", "adam", 0.70),
        ("0.01", "sgd", 0.80),
        ("0.1", "adam", 0.75),
        ("1e-3", "sgd", None),
    ]
    for number, (lr, optimizer, best) in enumerate(jobs):
        overrides = [
            f"model.optimizer.lr={lr}",
            f"+model.optimizer.name={optimizer}",
            "trainer.max_epochs=2",
        ]
        metrics = None if best is None else {"val/acc_best": best, "test/acc": best - 0.01}
        write_run(sweep_dir / str(number), overrides, metrics)
    results = {"name": "optuna", "best_params": {"model.optimizer.lr": 0.01}, "best_value": 0.8}
    (sweep_dir / "optimization_results.yaml").write_text(yaml.safe_dump(results))
    return sweep_dir


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_MAGIC)


def test_detect_layout(single_run: Path, multirun: Path, tmp_path: Path) -> None:
    assert detect_layout(single_run) == "single"
    assert detect_layout(multirun) == "multirun"
    assert detect_layout(multirun / "0") == "single"
    with pytest.raises(ReportError, match="multirun.yaml"):
        detect_layout(tmp_path / "outputs")


def test_load_curves_merges_sparse_rows(single_run: Path) -> None:
    curves = load_curves(single_run / "csv" / "metrics.csv")
    assert list(curves.index) == [0, 1, 2]
    assert curves["train/loss"].notna().all() and curves["val/acc"].notna().all()
    assert curves["test/acc"].dropna().to_dict() == {2: 0.81}
    assert curves.loc[1, "val/loss"] == pytest.approx(0.6)


def test_group_families_orders_loss_then_monitored() -> None:
    columns = [
        "train/epoch_time_s",
        "val/acc_best",
        "val/loss",
        "train/acc",
        "test/acc",
        "val/acc",
        "train/loss",
    ]
    families = group_families(columns, "val/acc_best")
    assert list(families) == ["loss", "acc", "epoch_time_s"]
    assert families["loss"] == ["train/loss", "val/loss"]
    assert families["acc"] == ["train/acc", "val/acc", "val/acc_best", "test/acc"]


def test_single_run_writes_curves_and_prints_metrics(single_run: Path, capsys) -> None:
    assert main([str(single_run)]) == 0
    curves_png = single_run / "plots" / "curves.png"
    assert_png(curves_png)
    out = capsys.readouterr().out
    assert "test/acc" in out and "0.81" in out and "0.79" in out
    assert f"wrote {curves_png}" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.01", 0.01),
        ("32", 32),
        ("1e-3", 0.001),
        ("adam", "adam"),
        ("'0.1'", "0.1"),
        ("nan", "nan"),
        ("[1,2]", "[1,2]"),
    ],
)
def test_parse_value(text: str, expected: object) -> None:
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_parse_overrides_strips_prefixes_and_skips_deletions() -> None:
    overrides = ["a.b=1", "+c=x", "++d=2.5", "~e", "f=k=v"]
    assert parse_overrides(overrides) == {"a.b": 1, "c": "x", "d": 2.5, "f": "k=v"}


def test_collect_jobs_marks_failed_jobs(multirun: Path) -> None:
    table = collect_jobs(multirun)
    assert table.params == ["model.optimizer.lr", "model.optimizer.name", "trainer.max_epochs"]
    assert table.metrics == ["val/acc_best", "test/acc"]
    assert list(table.jobs["status"]) == ["ok", "ok", "ok", "failed"]


def test_multirun_writes_jobs_csv_and_sweep_plots(multirun: Path, tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "report"
    assert main([str(multirun), "--out", str(out_dir)]) == 0
    jobs = pd.read_csv(out_dir / "jobs.csv")
    assert list(jobs.columns) == [
        "job",
        "model.optimizer.lr",
        "model.optimizer.name",
        "trainer.max_epochs",
        "status",
        "val/acc_best",
        "test/acc",
    ]
    assert list(jobs["job"]) == [0, 1, 2, 3]
    assert list(jobs["model.optimizer.lr"]) == [0.001, 0.01, 0.1, 0.001]
    assert list(jobs["model.optimizer.name"]) == ["adam", "sgd", "adam", "sgd"]
    assert list(jobs["trainer.max_epochs"]) == [2, 2, 2, 2]
    assert list(jobs["status"]) == ["ok", "ok", "ok", "failed"]
    assert jobs["val/acc_best"].iloc[:3].tolist() == [0.70, 0.80, 0.75]
    assert math.isnan(jobs["test/acc"].iloc[3])
    assert_png(out_dir / "metric_vs_model_optimizer_lr.png")
    assert_png(out_dir / "metric_vs_model_optimizer_name.png")
    assert not (out_dir / "metric_vs_trainer_max_epochs.png").exists()
    out = capsys.readouterr().out
    assert "optuna best value: 0.8" in out and "model.optimizer.lr=0.01" in out
    assert f"wrote {out_dir / 'jobs.csv'}" in out and "failed" in out


def test_multirun_metric_flag_and_default_out(multirun: Path, capsys) -> None:
    assert main([str(multirun), "--metric", "test/acc"]) == 0
    assert_png(multirun / "plots" / "metric_vs_model_optimizer_lr.png")
    assert main([str(multirun), "--metric", "val/f1"]) == 2
    assert "--metric val/f1" in capsys.readouterr().err


def test_choose_metric_fallbacks() -> None:
    available = ["val/acc_best", "test/acc"]
    assert choose_metric(None, "val/loss", available) == "val/acc_best"
    assert choose_metric(None, "test/acc", available) == "test/acc"
    assert choose_metric(None, None, ["test/loss"]) is None
    with pytest.raises(ReportError, match="val/f1"):
        choose_metric("val/f1", None, available)


def test_is_log_spaced() -> None:
    assert is_log_spaced(pd.Series([1e-4, 1e-3, 1e-2]))
    assert not is_log_spaced(pd.Series([32.0, 64.0, 128.0]))
    assert not is_log_spaced(pd.Series([0.0, 1.0, 100.0]))


def test_missing_and_empty_dir_fail_with_message(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope"
    assert main([str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "multirun.yaml" in err and ".hydra" in err


def test_cli_subprocess_exits_nonzero_on_missing_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "report.py"), str(missing)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert str(missing) in result.stderr and "does not exist" in result.stderr


def test_relu_budget_sweep_gets_a_frontier_plot_per_method(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "multiruns" / "t"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"optimized_metric": "pi/test_acc"}))
    job = 0
    for experiment, base in (("autorep_cifar10", 0.9), ("snl_cifar10", 0.85)):
        for budget in (6000, 12900, 50000):
            metrics = {
                "pi/test_acc": base + budget / 1e6,
                "pi/relu_count": budget * 0.99,
                "pi/within_budget": 1.0,
            }
            write_run(sweep / str(job), [f"experiment={experiment}", f"budget={budget}"], metrics)
            job += 1
    written = main([str(sweep)])
    assert written == 0
    assert_png(sweep / "plots" / "accuracy_vs_relu_count.png")
    jobs = pd.read_csv(sweep / "plots" / "jobs.csv")
    assert sorted(jobs["experiment"].unique()) == ["autorep_cifar10", "snl_cifar10"]


@pytest.fixture
def seed_sweep(tmp_path: Path) -> Path:
    """Two experiments over seeds 0-2; lif_cifar10's seed 2 failed."""
    sweep = tmp_path / "multiruns" / "t"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"optimized_metric": "val/acc_best"}))
    accs = {"revsnn_cifar10": (0.58, 0.59, 0.60), "lif_cifar10": (0.56, 0.57, None)}
    job = 0
    for experiment, values in accs.items():
        for seed, acc in enumerate(values):
            metrics = None if acc is None else {"val/acc_best": acc + 0.01, "test/acc": acc}
            write_run(sweep / str(job), [f"experiment={experiment}", f"seed={seed}"], metrics)
            job += 1
    return sweep


def test_seed_sweep_gets_mean_and_spread_per_setting(seed_sweep: Path, capsys) -> None:
    sweep = seed_sweep
    assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "over seeds" in out
    seeds = pd.read_csv(sweep / "plots" / "seeds.csv").set_index("experiment")
    assert seeds.loc["revsnn_cifar10", "test/acc/mean"] == pytest.approx(0.59)
    assert seeds.loc["revsnn_cifar10", "test/acc/std"] == pytest.approx(0.01)
    assert seeds.loc["revsnn_cifar10", "test/acc/n"] == 3
    # the failed seed is left out, not counted as zero
    assert seeds.loc["lif_cifar10", "test/acc/n"] == 2
    assert seeds.loc["lif_cifar10", "test/acc/mean"] == pytest.approx(0.565)
    assert seeds.loc["lif_cifar10", "val/acc_best/max"] == pytest.approx(0.58)
    # the seeds get their own plot, not one with the seed number as a continuous axis
    assert_png(sweep / "plots" / "seeds.png")
    assert not (sweep / "plots" / "metric_vs_seed.png").exists()
    assert_png(sweep / "plots" / "metric_vs_experiment.png")


def test_seed_plot_shows_each_seed_and_mean_std_per_setting(seed_sweep: Path) -> None:
    ax = seeds_figure(collect_jobs(seed_sweep), "val/acc_best").axes[0]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["lif_cifar10", "revsnn_cifar10"]
    assert list(ax.get_xticks()) == [0, 1]
    # one point per finished seed, spread within its setting's slot in seed order
    points = ax.collections[0].get_offsets()
    assert len(points) == 5
    assert [round(x) for x, _ in points] == [0, 0, 1, 1, 1]
    assert all(abs(x - round(x)) < 0.25 for x, _ in points)
    assert list(points[:2, 0]) == sorted(points[:2, 0]) and len(set(points[:, 0])) == 5
    assert list(points[:, 1]) == pytest.approx([0.57, 0.58, 0.59, 0.60, 0.61])
    # the error bar of each setting spans mean ± sample std at its tick
    (errorbar,) = ax.containers
    means_line, _, (bars,) = errorbar.lines
    assert list(means_line.get_xdata()) == [0, 1]
    assert list(means_line.get_ydata()) == pytest.approx([0.575, 0.60])
    (low_lif, high_lif), (low_rev, high_rev) = bars.get_segments()
    assert (low_lif[1], high_lif[1]) == pytest.approx((0.575 - 0.0070711, 0.575 + 0.0070711))
    assert (low_rev[1], high_rev[1]) == pytest.approx((0.59, 0.61))


def test_seed_plot_names_settings_of_several_parameters(tmp_path: Path) -> None:
    sweep = tmp_path / "multiruns" / "t"
    sweep.mkdir(parents=True)
    job = 0
    for lr in ("0.1", "0.01"):
        for width in (8, 16):
            for seed in (0, 1):
                overrides = [f"lr={lr}", f"width={width}", f"seed={seed}"]
                write_run(sweep / str(job), overrides, {"val/acc_best": 0.5 + 0.01 * job})
                job += 1
    ax = seeds_figure(collect_jobs(sweep), "val/acc_best").axes[0]
    assert ax.get_xlabel() == "lr, width"
    # in the parameters' own order (numbers by value), like the rows of seeds.csv
    assert [tick.get_text() for tick in ax.get_xticklabels()] == [
        "0.01, 8",
        "0.01, 16",
        "0.1, 8",
        "0.1, 16",
    ]
    assert len(ax.collections[0].get_offsets()) == 8


def test_no_seed_summary_without_a_seed_sweep(multirun: Path) -> None:
    assert summarize_seeds(collect_jobs(multirun), "val/acc_best") is None


def test_wandb_flag_publishes_the_sweep_tables_and_plots(multirun: Path, capsys) -> None:
    assert main([str(multirun), "--wandb"]) == 0
    assert "published to W&B:" in capsys.readouterr().out
    seen = read_wandb_run(multirun)
    assert seen["summary"]["images/plots/metric_vs_model_optimizer_lr"]["_type"] == "image-file"
    assert seen["summary"]["tables/plots/jobs"]["_type"] == "table-file"
    assert seen["config"]["optimized_metric"] == "val/acc_best"
