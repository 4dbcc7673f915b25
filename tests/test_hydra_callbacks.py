"""The Hydra callbacks of conf/hydra/default.yaml: a multirun ends by naming its folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import CONF, assert_ok, require_data, run_cli
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from tasks.hydra_callbacks import PrintMultirunFolder

TIME = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d"


def hydra_config(overrides: list[str]) -> DictConfig:
    """The composed config with its ``hydra`` node, as a callback receives it."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def test_multirun_end_prints_the_sweep_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = hydra_config(["experiment=sage_cora", f"paths.log_dir={tmp_path}"])
    callbacks = {name: instantiate(spec) for name, spec in cfg.hydra.callbacks.items()}
    assert isinstance(callbacks["multirun_folder"], PrintMultirunFolder)
    callbacks["multirun_folder"].on_multirun_end(config=cfg)
    out = capsys.readouterr().out
    assert re.fullmatch(rf"Multirun folder: {tmp_path}/sage_cora/multiruns/{TIME}\n", out), out


def test_relative_sweep_folder_is_printed_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = hydra_config(["hydra.sweep.dir=sweeps/mine"])
    PrintMultirunFolder().on_multirun_end(config=cfg)
    assert capsys.readouterr().out == f"Multirun folder: {tmp_path / 'sweeps' / 'mine'}\n"


@pytest.mark.slow
def test_cli_multirun_names_the_folder_that_holds_its_jobs(tmp_path: Path, cache_dir: Path) -> None:
    require_data("Planetoid/Cora/raw/ind.cora.graph")
    smallest = ["bench.widths=[64]", "bench.rounds=1", "bench.round_time=0.01"]
    proc = run_cli(["-m", "experiment=spmm_bench_cora", *smallest, "seed=1,2"], tmp_path, cache_dir)
    assert_ok(proc)
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"Multirun folder: {tmp_path}/spmm_bench_cora/multiruns/{TIME}", last)
    folder = Path(last.removeprefix("Multirun folder: "))
    assert sorted(p.name for p in folder.iterdir() if p.name.isdigit()) == ["0", "1"]
    assert all((folder / job / "metrics.json").is_file() for job in ("0", "1"))
