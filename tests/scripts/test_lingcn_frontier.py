"""scripts/lingcn_frontier.py on a μ-sweep folder laid out like a real multirun."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml
from conftest import read_wandb_run

from scripts.lingcn_frontier import main


def make_job(sweep: Path, num: int, mu: float, metrics: dict | None) -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    config = {"pipeline": {"linearize": {"model": {"mu": mu}}}}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


def test_frontier_table_and_plot(tmp_path: Path) -> None:
    for num, (mu, gates, acc, lat) in enumerate([(2.0, 40, 0.80, 6.0), (0.5, 100, 0.86, 15.0)]):
        make_job(
            tmp_path,
            num,
            mu,
            {
                "linearize/test_gates_kept": gates,
                "poly/test_acc": acc,
                "he/latency_s_per_sample": lat,
                "he/levels": 7,
                "cryptogcn/test_acc": 0.85,
                "he_baseline/latency_s_per_sample": 50.0,
                "he_baseline/levels": 13,
            },
        )
    make_job(tmp_path, 2, 1.0, None)  # a failed job is left out
    assert main([str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "frontier.csv")
    assert table["mu"].tolist() == [0.5, 2.0]
    assert table["gates_kept"].tolist() == [100, 40]
    assert (tmp_path / "frontier.png").read_bytes()[:4] == b"\x89PNG"


def test_empty_sweep_is_an_error(tmp_path: Path) -> None:
    try:
        main([str(tmp_path)])
    except SystemExit as err:
        assert "no job folder" in str(err)
    else:
        raise AssertionError("an empty sweep must fail")


def test_baseline_point_from_another_run(tmp_path: Path) -> None:
    sweep, run = tmp_path / "sweep", tmp_path / "run"
    for num, mu in enumerate([0.5, 2.0]):
        make_job(
            sweep,
            num,
            mu,
            {
                "linearize/test_gates_kept": 10 * (num + 1),
                "poly/test_acc": 0.8,
                "he/latency_s_per_sample": 5.0 + num,
                "he/levels": 7,
                "cryptogcn/test_acc": 0.85,
            },
        )
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"poly/test_acc": 0.8}))
    try:
        main([str(sweep), "--baseline-run", str(run)])
    except SystemExit as err:
        assert "he_baseline/latency_s_per_sample" in str(err)
    else:
        raise AssertionError("a run without the baseline circuit must be refused")
    (run / "metrics.json").write_text(
        json.dumps(
            {
                "cryptogcn/test_acc": 0.84,
                "he_baseline/latency_s_per_sample": 40.0,
                "he_baseline/levels": 13,
            }
        )
    )
    assert main([str(sweep), "--baseline-run", str(run)]) == 0
    table = pd.read_csv(sweep / "frontier.csv")
    assert table["baseline_latency_s"].tolist() == [40.0, 40.0]
    assert table["baseline_test_acc"].tolist() == [0.85, 0.85]  # the jobs' own value wins


def test_wandb_flag_publishes_the_frontier(tmp_path: Path) -> None:
    metrics = {"linearize/test_gates_kept": 10, "poly/test_acc": 0.8, "he/levels": 7}
    make_job(tmp_path, 0, 1.0, {**metrics, "he/latency_s_per_sample": 5.0})
    assert main([str(tmp_path), "--wandb"]) == 0
    seen = read_wandb_run(tmp_path)
    assert seen["summary"]["images/frontier"]["_type"] == "image-file"
    assert seen["summary"]["tables/frontier"]["_type"] == "table-file"
