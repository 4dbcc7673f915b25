"""The classification base through a real Trainer: the metric names every classifier logs
(``stage/name``) and the method-specific ones of the ReLU-budget module."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.relu_budget.module import ReluBudgetModule


def _loader() -> DataLoader:
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x, torch.arange(16) % 10), batch_size=8)


def test_logged_metric_names_and_values() -> None:
    pl.seed_everything(0)
    model = ReluBudgetModule(torch.optim.Adam, method="snl", width=4, image_size=8, budget=50)
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, train_dataloaders=_loader(), val_dataloaders=_loader())
    fit = trainer.callback_metrics
    expected = {
        "train/loss",
        "train/acc",
        "train/penalty",
        "train/relu_kept",
        "train/relu_kept_fraction",
        "val/loss",
        "val/acc",
        "val/acc_best",
        "val/relu_kept",
        "val/acc_in_budget",
    }
    assert expected <= set(fit), sorted(fit)
    assert all("/" in name for name in fit), sorted(fit)
    assert fit["val/acc_best"] == fit["val/acc"]
    assert fit["train/relu_kept"] == fit["val/relu_kept"] == 1920  # α starts at 1: all kept
    assert fit["train/relu_kept_fraction"] == 1.0
    assert fit["val/acc_in_budget"] == 0.0  # 1920 kept, budget 50
    trainer.test(model, dataloaders=_loader(), verbose=False)
    assert {"test/loss", "test/acc", "test/relu_kept"} <= set(trainer.callback_metrics)
