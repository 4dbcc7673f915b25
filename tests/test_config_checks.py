"""Validation before work: each model, net, optimizer and task declares the rules its config
alone decides in ``check_config``; a bad value is a ConfigError naming the key and a value that
works, and the defaults of every experiment pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import pytest
from conftest import CONF, compose_cfg
from omegaconf import DictConfig, OmegaConf

from effml.errors import ConfigError
from lightning_modules.classification import ClassificationModule
from lightning_modules.gnn import NodeClassifier
from lightning_modules.gnn.maxk import MaxKGNN
from lightning_modules.gnn.nets import GNN
from lightning_modules.lingcn import LinGCNModule
from lightning_modules.lingcn.stgcn import STGCN
from lightning_modules.optim import Lookahead
from lightning_modules.relu_budget import ReluBudgetModule
from lightning_modules.relu_budget.sites import AutoRepSite
from lightning_modules.snn import SpikingClassifier
from lightning_modules.snn.nets import SpikingResNet, SpikingVGG
from tasks.pi_cost import GcCostModel
from tasks.pipeline import stage_config
from tasks.validation import validate_config

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}
LOOKAHEAD = "lightning_modules.optim.Lookahead"
# the CPU-sized settings, whose sizes differ from the paper's
SMALL_SETTINGS = [
    ["experiment=lingcn_ntu", "datamodule=ntu_synthetic"],
    ["experiment=snl_cifar10", "scale=cpu"],
]

BAD_VALUES = [
    (NodeClassifier, {"dropout": 1.5}, "dropout=1.5: must be in [0, 1)", "dropout=0.5"),
    (
        NodeClassifier,
        {"structure": "paper", "nonlinearity": "maxk", "hidden_channels": 256, "k": 1000},
        "k=1000: MaxK keeps k entries",
        "k=32",
    ),
    (NodeClassifier, {"nonlinearity": "maxk"}, "structure=stack", "structure=paper"),
    (NodeClassifier, {"task_type": "multilabel"}, "metric=acc", "metric=f1_micro"),
    (NodeClassifier, {"optimizer": {"_target_": "torch.optim.Adam"}}, "_partial_", "=true"),
    (NodeClassifier, {"optimizer": {**ADAM, "_target_": "torch.optim.Adamm"}}, "import", None),
    (GNN, {"num_layers": 0}, "num_layers=0: must be >= 1", "num_layers=2"),
    (GNN, {"conv": "gat"}, "conv=gat: choose one of", "conv=sage"),
    (MaxKGNN, {"hidden_channels": 16, "k": 17}, "1 ≤ k ≤ 16", "k=16"),
    (MaxKGNN, {"backend": "cuda"}, "backend=cuda", "backend=cpu"),
    (ClassificationModule, {"num_classes": 1}, "num_classes=1: must be >= 2", "num_classes=10"),
    (Lookahead, {"k": 0}, "k=0: must be >= 1", "k=6"),
    (Lookahead, {"alpha": 1.5}, "alpha=1.5: must be in (0, 1]", "alpha=0.5"),
    (NodeClassifier, {"optimizer": {**ADAM, "_target_": LOOKAHEAD, "k": 0}}, "optimizer.k=0", None),
    (SpikingClassifier, {"tau": 1.0}, "tau=1.0: must be in (1, inf", "tau=2.0"),
    (SpikingClassifier, {"node": "izhikevich"}, "node=izhikevich", "node=reversible"),
    (SpikingClassifier, {"arch": "resnet", "blocks": [1, 1]}, "one per stage", "[1, 1, 1]"),
    (SpikingVGG, {"channels": ["M", 64]}, "start with a width", "channels=[64, M, 128, M]"),
    (SpikingResNet, {"time_steps": 0}, "time_steps=0: must be >= 1", "time_steps=4"),
    (LinGCNModule, {"eta": 1.5}, "eta=1.5: must be in [0, 1]", "eta=0.9"),
    (LinGCNModule, {"square_offset": 0.0}, "square_offset=0.0", "square_offset=8.0"),
    (LinGCNModule, {"gate_init": [1e-3, 5e-4]}, "gate_init=", "[0.0005, 0.001]"),
    (STGCN, {"variant": "stgcn_9"}, "variant=stgcn_9", "variant=stgcn_3_128"),
    (STGCN, {"variant": "custom"}, "channels=null", "channels=[[3, 16, 1], [16, 32, 2]]"),
    (STGCN, {"in_channels": 2}, "first block takes 3 channels", None),
    (ReluBudgetModule, {"method": "autorp"}, "method=autorp", "method=relu"),
    (ReluBudgetModule, {"method": "snl", "budget": 0}, "budget=0: must be >= 1", "budget=12900"),
    (ReluBudgetModule, {"arch": "wrn_20_8"}, "6n + 4", "arch=wrn_22_8"),
    (ReluBudgetModule, {"image_size": 36}, "multiple of 8", "image_size=32"),
    (ReluBudgetModule, {"method": "autorep", "dapa_every": 0}, "dapa_every=0", "dapa_every=10"),
    (AutoRepSite, {"dapa_sigma": "mad"}, "dapa_sigma=mad", "dapa_sigma=std"),
    (GcCostModel, {"rtt_ms": 0}, "rtt_ms=0: must be a number > 0", "rtt_ms=0.5"),
    (GcCostModel, {"latency": 1}, "latency=1: is not a cost-model field", None),
]


@pytest.mark.parametrize(
    ("cls", "values", "message", "example"),
    BAD_VALUES,
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_a_bad_value_names_its_key_and_an_example(
    cls: type, values: dict, message: str, example: str | None
) -> None:
    with pytest.raises(ConfigError) as err:
        cls.check_config(values)
    assert message in str(err.value)
    if example is not None:
        assert f"e.g. {err.value.key}" in str(err.value) and example in str(err.value)


def test_the_constructor_runs_the_same_check() -> None:
    with pytest.raises(ConfigError, match=r"^k=1000: MaxK keeps"):
        MaxKGNN(8, 16, 3, k=1000)
    with pytest.raises(ConfigError, match=r"^dropout=1.5"):
        NodeClassifier(8, 3, optimizer=None, dropout=1.5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["experiment=sage_cora", "model.dropout=1.5"], "model.dropout=1.5: must be in [0, 1)"),
        (["experiment=maxk_cora", "model.k=1000"], "model.k=1000: MaxK keeps k entries"),
        (
            ["experiment=lingcn_ntu", "pipeline.linearize.model.optimizer.alpha=2"],
            "pipeline.linearize.model.optimizer.alpha=2: must be in (0, 1]",
        ),
        (
            ["experiment=lingcn_ntu", "pipeline.he.edge_bits=40"],
            "pipeline.he.edge_bits=40: must exceed scale_bits=40",
        ),
        (
            ["experiment=lingcn_ntu", "pipeline.he.inputs.poly_ckpt=linearize"],
            "pipeline.he.inputs.poly_ckpt=linearize: trains model.stage=linearize",
        ),
        (
            ["experiment=lingcn_ntu", "pipeline.he.scale_bits=61"],
            "pipeline.he.scale_bits=61: must be <= 60",
        ),
        (
            [
                "experiment=autorep_cifar10",
                "stages=[teacher,autorep,pi]",
                "+pipeline.pi.cost.rtt_ms=-1",
            ],
            "pipeline.pi.cost.rtt_ms=-1: must be a number > 0",
        ),
        (["experiment=spmm_bench_cora", "bench.norm=max"], "bench.norm=max: choose one of"),
        (["experiment=spmm_bench_cora", "bench.threads=0"], "bench.threads=0: must be >= 1"),
    ],
)
def test_the_run_names_the_full_key(overrides: list[str], message: str, tmp_path: Path) -> None:
    cfg = compose_cfg([*overrides, f"paths.output_dir={tmp_path}"])
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert message in str(err.value)


def check_component(node: DictConfig | None) -> None:
    """The ``check_config`` of the class ``node._target_`` names, on its resolved values."""
    if node is None:
        return
    values = OmegaConf.to_container(node, resolve=True)
    cls = hydra.utils.get_object(values.pop("_target_"))
    cls.check_config({k: v for k, v in values.items() if not k.startswith("_")})


def check_experiment(cfg: DictConfig, run_dir: Path) -> None:
    """Every model (the run's and each training stage's) and every function stage or task
    that declares ``check_config``."""
    check_component(cfg.get("model"))
    for name, spec in (cfg.get("pipeline") or {}).items():
        if spec.get("kind", "train") == "train":
            check_component(stage_config(cfg, name, run_dir / name, {}).get("model"))
        else:
            hydra.utils.get_object(spec._target_).check_config(cfg, cfg.pipeline[name])
    task: Any = hydra.utils.get_object(cfg.task._target_)
    if task.__module__ == "tasks.spmm_bench":
        task.check_config(cfg, None)


@pytest.mark.parametrize(
    "overrides",
    [[f"experiment={name}"] for name in EXPERIMENTS]
    + [
        ["experiment=lingcn_ntu", "datamodule=ntu_synthetic"],
        ["experiment=snl_cifar10", "scale=cpu"],
    ],
    ids=" ".join,
)
def test_every_experiment_passes_its_checks(overrides: list[str], tmp_path: Path) -> None:
    check_experiment(compose_cfg([*overrides, f"paths.output_dir={tmp_path}"]), tmp_path)
