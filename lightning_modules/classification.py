"""What the cross-entropy classifiers (LinGCN, ReLU budget, spiking nets) share: accuracy for
train/val/test, the best validation accuracy, and the logging of each step."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from effml.checks import check_int
from lightning_modules.base import EffmlModule

Batch = tuple[torch.Tensor, torch.Tensor]


class ClassificationModule(EffmlModule):
    """A classifier trained on ``(x, y)`` batches; logs ``{train,val,test}/{loss,acc}`` and
    ``val/acc_best`` (kept in checkpoints, so a resumed run keeps its best).

    A subclass builds its net, defines ``forward`` and may override :meth:`training_loss`
    (distillation, penalties), :meth:`validation_epoch_metrics` and
    :meth:`test_epoch_metrics` (its own ``val/…`` and ``test/…`` numbers).
    ``val/loss`` and ``test/loss`` are the plain cross-entropy of the student. A ``teacher``
    a subclass sets (frozen, for distillation) stays in eval mode, its batch-norm statistics
    fixed, when the module trains.

    Args:
        optimizer, scheduler: partial constructors (see :class:`EffmlModule`).
        num_classes: classes of the multiclass accuracy.
    """

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer] | None,
        scheduler: Callable[..., object] | None,
        num_classes: int,
    ) -> None:
        super().__init__(optimizer, scheduler, monitor="val/acc")
        ClassificationModule.check_config({"num_classes": num_classes})
        self.train_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)
        self.val_acc = self.train_acc.clone()
        self.test_acc = self.train_acc.clone()
        self.val_best = torchmetrics.MaxMetric()
        self.val_best.persistent(True)
        self.teacher: nn.Module | None = None

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """The optimizer and scheduler (:class:`EffmlModule`); at least two classes."""
        super().check_config(cfg)
        check_int(cfg, "num_classes", minimum=2, example=10)

    def train(self, mode: bool = True) -> ClassificationModule:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss to minimise and the logits it came from; cross-entropy by default."""
        logits = self(x)
        return F.cross_entropy(logits, y), logits

    def validation_epoch_metrics(self, val_acc: torch.Tensor) -> dict[str, torch.Tensor | float]:
        """Extra ``val/…`` numbers logged at the end of each validation epoch."""
        return {}

    def test_epoch_metrics(self) -> dict[str, torch.Tensor | float]:
        """Extra ``test/…`` numbers logged at the end of testing."""
        return {}

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss, logits = self.training_loss(x, y)
        self.train_acc(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def _eval_step(self, batch: Batch, split: str, metric: torchmetrics.Metric) -> None:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.log(f"{split}/loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        metric(logits, y)
        self.log(f"{split}/acc", metric, on_step=False, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_acc)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        acc = self.val_acc.compute()
        self.val_best(acc)
        self.log("val/acc_best", self.val_best.compute(), sync_dist=True)
        for name, value in self.validation_epoch_metrics(acc).items():
            self.log(name, value, sync_dist=True)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_acc)

    def on_test_epoch_end(self) -> None:
        for name, value in self.test_epoch_metrics().items():
            self.log(name, value, sync_dist=True)
