"""Checkpoint loading: clear errors for missing and foreign files, a net's weights without
their prefix, and a module rebuilt for inference without its teacher or an optimizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from effml.errors import CheckpointError
from lightning_modules.checkpoints import load_module, load_net_state, load_weights
from lightning_modules.relu_budget.module import ReluBudgetModule


def _relu_budget(**kwargs) -> ReluBudgetModule:
    return ReluBudgetModule(torch.optim.Adam, width=4, image_size=8, budget=50, **kwargs)


def _save(module: ReluBudgetModule, path: Path) -> str:
    """What a Lightning trainer's checkpoint holds of the module."""
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return str(path)


def test_missing_and_foreign_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(CheckpointError, match="nope.ckpt"):
        load_net_state(missing)
    foreign = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(
        CheckpointError, match=r"weights.pt.*not a Lightning checkpoint.*\['weight'\]"
    ):
        load_net_state(foreign)


def test_net_state_drops_the_prefix_and_names_a_missing_one(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = _relu_budget(method="relu")
    path = _save(module, tmp_path / "relu.ckpt")
    state = load_net_state(path)
    assert state.keys() == module.net.state_dict().keys()
    for key, value in module.net.state_dict().items():
        torch.testing.assert_close(state[key], value)
    with pytest.raises(CheckpointError, match=r"no weights under 'student\.'.*\['net'"):
        load_net_state(path, prefix="student.")


def test_load_module_rebuilds_without_teacher_or_optimizer(tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher = _save(_relu_budget(method="relu"), tmp_path / "teacher.ckpt")
    student = _relu_budget(method="autorep", teacher_ckpt=teacher, init_ckpt=teacher)
    with torch.no_grad():
        next(iter(student.net.parameters())).add_(1.0)
    path = _save(student, tmp_path / "autorep.ckpt")
    loaded = load_module(ReluBudgetModule, path, teacher_ckpt=None, init_ckpt=None)
    assert loaded.teacher is None and not loaded.training
    assert loaded.method == "autorep"
    for key, value in student.net.state_dict().items():
        torch.testing.assert_close(loaded.net.state_dict()[key], value)
    with pytest.raises(ValueError, match="without an optimizer"):
        loaded.configure_optimizers()


def test_load_weights_is_strict(tmp_path: Path) -> None:
    path = _save(_relu_budget(method="relu"), tmp_path / "relu.ckpt")
    assert not load_weights(_relu_budget(method="relu"), path).training
    with pytest.raises(CheckpointError, match=r"relu\.ckpt' does not fit .* missing keys"):
        load_weights(_relu_budget(method="snl"), path)
