"""What every effml LightningModule shares: optimizer construction and epoch timing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pytorch_lightning as pl
import torch


class EffmlModule(pl.LightningModule):
    """Builds the configured optimizer/scheduler and logs ``train/epoch_time_s``.

    The epoch time is the wall time of the epoch's training steps (forward, backward,
    optimizer step; CUDA synchronised), excluding validation and data loading, so that
    methods can be compared on speed. ``train/epoch_time_s_median`` is the median over the
    epochs so far, the first (warm-up) epoch excluded once there are others.

    Args:
        optimizer: a partial optimizer (``_partial_: true``) called with the parameters; None
            for a module rebuilt for inference only (``checkpoints.load_module``).
        scheduler: a partial LR scheduler or None; stepped per epoch, monitoring ``monitor``.
    """

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer] | None,
        scheduler: Callable[..., object] | None = None,
        monitor: str = "val/loss",
    ) -> None:
        super().__init__()
        if optimizer is not None and not callable(optimizer):
            raise TypeError(
                f"model.optimizer={optimizer!r}: expected a partial optimizer config "
                "(_target_: torch.optim.Adam, _partial_: true)"
            )
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_monitor = monitor
        self._step_time = 0.0
        self._epoch_times: list[float] = []

    def optimizer_params(self) -> list:
        """What the optimizer trains: the parameters that require grad (frozen teachers stay
        out); a subclass returns param groups to give some parameters their own settings."""
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self) -> dict:
        if self.optimizer_factory is None:
            raise ValueError(
                f"{type(self).__name__} was built without an optimizer (for inference): "
                "give optimizer=<partial optimizer> to train it"
            )
        optimizer = self.optimizer_factory(params=self.optimizer_params())
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "monitor": self.scheduler_monitor,
                "interval": "epoch",
                "frequency": 1,
            },
        }

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_train_epoch_start(self) -> None:
        self._step_time = 0.0

    def on_train_batch_start(self, batch: object, batch_idx: int) -> None:
        self._sync()
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        self._sync()
        self._step_time += time.perf_counter() - self._batch_start

    def on_train_epoch_end(self) -> None:
        self._epoch_times.append(self._step_time)
        steady = self._epoch_times[1:] or self._epoch_times
        self.log("train/epoch_time_s", self._step_time, on_epoch=True, sync_dist=True)
        self.log(
            "train/epoch_time_s_median", statistics.median(steady), on_epoch=True, sync_dist=True
        )
