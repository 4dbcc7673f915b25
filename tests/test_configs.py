"""Every config composes; every experiment runs one fast_dev_run step; bad values fail early."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import CONF, ROOT, compose_cfg, require_data, run_cli
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict

from effml.errors import MissingDataError, UserError
from tasks.core import run_task, update_metrics_json

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
LOGGERS = sorted(p.stem for p in (CONF / "logger").glob("*.yaml"))
# smoke runs that train an image or spiking network (6-45 s each on 2 shared cores; a graph
# or benchmark smoke run takes about 1 s): the slow tier
SLOW_SMOKE = {
    "autorep_cifar10",
    "lif_cifar10",
    "lif_mnist",
    "resnet18_cifar10",
    "revsnn_cifar10",
    "revsnn_mnist",
    "snl_cifar10",
}
# what an experiment that trains nothing (a benchmark) drops: the Lightning groups
WITHOUT_LIGHTNING = ["~datamodule", "~model", "~trainer", "~callbacks"]


def trains(cfg: DictConfig) -> bool:
    """Whether an experiment is a Lightning run (it selects a trainer)."""
    return cfg.get("trainer") is not None


def count_task(cfg: DictConfig) -> float:
    """A task that trains nothing: it writes one metric and returns it."""
    update_metrics_json(cfg.paths.output_dir, {"bench/count": 3.0})
    return 3.0


def test_experiments_exist() -> None:
    assert "sage_cora" in EXPERIMENTS


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes(name: str, tmp_path: Path) -> None:
    cfg = compose_cfg([f"experiment={name}", f"paths.output_dir={tmp_path}"])
    assert cfg.task_name != "train", f"experiment {name} should set its own task_name"
    groups = ("datamodule", "model", "trainer", "task") if trains(cfg) else ("task",)
    for group in groups:
        assert "_target_" in cfg[group], f"{name}: {group} has no _target_"
    OmegaConf.to_container(cfg, resolve=True)


def smoke_overrides(name: str, cfg: DictConfig) -> list[str]:
    """The experiment's smallest setting: its own ``smoke_overrides`` list; ``scale=cpu``
    for those built on relu_budget/pipeline (the paper nets take minutes per step on one
    core); one fast_dev_run step on the CPU for those that train with Lightning."""
    overrides = list(cfg.get("smoke_overrides") or [])
    if "relu_budget/pipeline" in (CONF / "experiment" / f"{name}.yaml").read_text():
        overrides.append("scale=cpu")
    if trains(cfg):
        overrides += ["trainer=cpu", "+trainer.fast_dev_run=true"]
    return overrides


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_SMOKE else n for n in EXPERIMENTS],
)
def test_experiment_smoke_run(name: str, tmp_path: Path, cache_dir: Path) -> None:
    chosen = compose_cfg([f"experiment={name}", f"paths.output_dir={tmp_path}"])
    cfg = compose_cfg(
        [
            f"experiment={name}",
            *smoke_overrides(name, chosen),
            "logger=csv",
            f"paths.output_dir={tmp_path}",
            f"paths.cache_dir={cache_dir}",
        ]
    )
    try:
        run_task(cfg)
    except (MissingDataError, InstantiationException) as err:
        cause = err if isinstance(err, MissingDataError) else err.__cause__
        if not isinstance(cause, MissingDataError):
            raise
        pytest.skip(f"data for {name} is absent: {cause}")
    assert (tmp_path / "metrics.json").is_file()


def test_smoke_overrides_follow_the_experiment() -> None:
    lightning = compose_cfg(["experiment=sage_cora"])
    assert smoke_overrides("sage_cora", lightning) == ["trainer=cpu", "+trainer.fast_dev_run=true"]
    bench = compose_cfg([*WITHOUT_LIGHTNING, "smoke_overrides=['seed=1']"])
    assert smoke_overrides("sage_cora", bench) == ["seed=1"]
    budget = compose_cfg(["experiment=autorep_cifar10"])
    assert smoke_overrides("autorep_cifar10", budget)[0] == "scale=cpu"


@pytest.mark.parametrize("logger", LOGGERS)
def test_task_without_lightning_groups_runs(logger: str, tmp_path: Path) -> None:
    """A task that trains nothing composes and runs with every logger config, and without
    a datamodule, model, trainer or callbacks."""
    cfg = compose_cfg(
        [
            *WITHOUT_LIGHTNING,
            f"logger={logger}",
            f"task._target_={__name__}.count_task",
            f"paths.output_dir={tmp_path}",
        ]
    )
    assert not {"datamodule", "model", "trainer", "callbacks"} & set(cfg)
    OmegaConf.to_container(cfg, resolve=True)
    assert run_task(cfg) == 3.0
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"bench/count": 3.0}


def test_task_without_lightning_groups_checks_the_seed(tmp_path: Path) -> None:
    cfg = compose_cfg([*WITHOUT_LIGHTNING, f"paths.output_dir={tmp_path}", "seed=-1"])
    with pytest.raises(ValueError, match="seed=-1"):
        run_task(cfg)


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF / "debug").glob("*.yaml")))
def test_debug_presets_compose(preset: str, tmp_path: Path) -> None:
    cfg = compose_cfg([f"debug={preset}", f"paths.output_dir={tmp_path}"])
    assert cfg.trainer.accelerator == "cpu"


@pytest.mark.parametrize("preset", ["fdr", "overfit", "limit", "profiler"])
def test_debug_presets_run(preset: str, tmp_path: Path, cache_dir: Path) -> None:
    require_data("Planetoid/Cora/raw/ind.cora.graph")
    overrides = [f"debug={preset}", f"paths.output_dir={tmp_path}", f"paths.cache_dir={cache_dir}"]
    if preset == "overfit":
        overrides.append("trainer.max_epochs=3")
    run_task(compose_cfg(overrides))
    assert "test/acc" in json.loads((tmp_path / "metrics.json").read_text())
    if preset == "profiler":
        assert list(tmp_path.glob("*profile*.txt"))


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF / "trainer").glob("*.yaml")))
def test_trainer_presets_compose(preset: str) -> None:
    cfg = compose_cfg([f"trainer={preset}"])
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"


def test_slurm_launcher_follows_trainer() -> None:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "hydra/launcher=submitit_slurm",
                "trainer=ddp",
                "trainer.devices=8",
                "trainer.num_nodes=2",
            ],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 8, 8)


def test_slurm_launcher_without_a_trainer() -> None:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["hydra/launcher=submitit_slurm", *WITHOUT_LIGHTNING],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (1, 1, 1)


@pytest.mark.parametrize("launcher", ["submitit_local", "joblib"])
def test_other_launchers_compose(launcher: str) -> None:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert "_target_" in cfg.hydra.launcher


def test_paths_follow_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "somewhere"))
    cfg = compose_cfg([])
    assert cfg.paths.data_dir == str(tmp_path / "somewhere")
    monkeypatch.delenv("DATA_DIR")
    cfg = compose_cfg([])
    assert cfg.paths.data_dir == f"{ROOT}/data"
    assert not str(cfg.paths.cache_dir).startswith(str(cfg.paths.data_dir))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("seed=-3", "seed=-3"),
        ("monitor_mode=up", "monitor_mode=up"),
        ("trainer.max_epochs=-7", "trainer.max_epochs=-7"),
        ("ckpt_path=/nonexistent/run", "ckpt_path=/nonexistent/run"),
    ],
)
def test_bad_run_values_fail_before_reading_data(
    override: str, message: str, tmp_path: Path, cache_dir: Path
) -> None:
    cfg = compose_cfg(
        ["trainer=cpu", f"paths.output_dir={tmp_path}", f"paths.cache_dir={cache_dir}", override]
    )
    with open_dict(cfg):
        cfg.datamodule.data_dir = str(tmp_path / "never-read")
    with pytest.raises(UserError) as err:
        run_task(cfg)
    assert message in str(err.value)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.dropout=1.5", "dropout=1.5"),
        ("model.conv=transformer", "conv=transformer"),
        ("model.hidden_channels=0", "hidden_channels=0"),
        ("model.norm=batchy", "norm=batchy"),
    ],
)
def test_bad_model_values_fail_before_training(
    override: str, message: str, tmp_path: Path, cache_dir: Path
) -> None:
    require_data("Planetoid/Cora/raw/ind.cora.graph")
    cfg = compose_cfg(
        ["trainer=cpu", f"paths.output_dir={tmp_path}", f"paths.cache_dir={cache_dir}", override]
    )
    with pytest.raises((ValueError, InstantiationException), match=re.escape(message)):
        run_task(cfg)
    assert not (tmp_path / "checkpoints").exists()
    assert not (tmp_path / "metrics.json").exists()


def test_wrong_type_is_rejected_by_hydra() -> None:
    with pytest.raises(Exception, match="trainer.max_epoch"):
        compose_cfg(["trainer.max_epoch=3"])


def test_unknown_experiment_lists_the_available_ones(tmp_path: Path, cache_dir: Path) -> None:
    proc = run_cli(["experiment=no_such_thing"], tmp_path, cache_dir)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "no_such_thing" in out and "sage_cora" in out


def test_maxk_k_sweep_grid_is_valid_for_every_maxk_experiment(tmp_path: Path) -> None:
    """The k grid targets model.k, and every k fits the width of each maxk_* experiment."""
    from lightning_modules.gnn.maxk import MaxKGNN

    for name in (e for e in EXPERIMENTS if e.startswith("maxk_")):
        overrides = [f"experiment={name}", "hparams_search=maxk_k_sweep"]
        with initialize_config_dir(str(CONF), version_base="1.3"):
            full = compose("config", overrides=overrides, return_hydra_config=True)
        grid = full.hydra.sweeper.params
        assert list(grid) == ["model.k"], f"{name}: the sweep must vary model.k only"
        ks = [int(v) for v in str(grid["model.k"]).split(",")]
        assert ks == [2, 4, 8, 16, 32, 64, 96, 128, 192]
        cfg = compose_cfg([*overrides, f"paths.output_dir={tmp_path}"])
        assert cfg.model.nonlinearity == "maxk" and max(ks) <= cfg.model.hidden_channels
        MaxKGNN(8, cfg.model.hidden_channels, 3, num_layers=1, k=max(ks))


def test_relu_budget_sweep_grid_fits_every_budget_experiment(tmp_path: Path) -> None:
    """The budget grid targets the top-level budget that every stage reads, and each budget
    fits the paper nets' ReLU counts (resnet18_in 491,520; WRN-22-8 at 64×64 far more)."""
    names = [e for e in EXPERIMENTS if e.startswith(("autorep_", "snl_"))]
    assert len(names) == 5
    for name in names:
        overrides = [f"experiment={name}", "hparams_search=relu_budget_sweep"]
        with initialize_config_dir(str(CONF), version_base="1.3"):
            full = compose("config", overrides=overrides, return_hydra_config=True)
        grid = full.hydra.sweeper.params
        assert list(grid) == ["budget"]
        budgets = [int(v) for v in str(grid["budget"]).split(",")]
        assert budgets == [6000, 12900, 25000, 50000, 100000]
        cfg = compose_cfg([*overrides, "budget=25000", f"paths.output_dir={tmp_path}"])
        assert cfg.model.budget == 25000 and max(budgets) < 491_520
        stage = "autorep" if name.startswith("autorep_") else "snl"
        assert cfg.pipeline[stage].model.method == stage
