"""What every effml LightningModule shares: optimizer construction, epoch timing, and the
config checks of the optimizer, the scheduler and an op backend."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import hydra
import pytorch_lightning as pl
import torch

from effml.errors import ConfigError
from ops.dispatch import BACKENDS

# what a partial constructor looks like in a config, for the fix of a bad one
PARTIAL_EXAMPLES = {
    "optimizer": "{_target_: torch.optim.Adam, _partial_: true, lr: 0.001}",
    "scheduler": "{_target_: torch.optim.lr_scheduler.StepLR, _partial_: true, step_size: 30}",
}


def check_op_backend(cfg: Mapping[str, Any], key: str = "backend") -> None:
    """``cfg[key]`` is an op backend of ``ops.dispatch.BACKENDS`` or None (picked by device)."""
    value = cfg.get(key)
    if value is not None and value not in BACKENDS:
        raise ConfigError(key, value, f"choose one of {list(BACKENDS)} or null (by device)", "cpu")


def check_partial(cfg: Mapping[str, Any], key: str) -> None:
    """``cfg[key]`` is None, a callable, or a partial-constructor config (``_partial_: true``)
    whose class's own ``check_config`` (e.g. ``Lookahead``'s) accepts its values."""
    value = cfg.get(key)
    if value is None or callable(value):
        return
    fix = f"Write {key}: {PARTIAL_EXAMPLES[key]}"
    if not isinstance(value, Mapping) or "_target_" not in value:
        raise ConfigError(key, value, "must be a partial constructor config", fix=fix)
    if value.get("_partial_") is not True:
        problem = "needs _partial_: true (it is built with the parameters later)"
        raise ConfigError(f"{key}._partial_", value.get("_partial_"), problem, True, fix)
    try:
        target = hydra.utils.get_object(value["_target_"])
    except Exception as err:  # ImportError, AttributeError, hydra's wrapper of them
        problem = f"cannot be imported ({type(err).__name__})"
        raise ConfigError(f"{key}._target_", value["_target_"], problem, fix=fix) from None
    check = getattr(target, "check_config", None)
    if check is not None:
        try:
            check({k: v for k, v in value.items() if not k.startswith("_")})
        except ConfigError as err:
            raise err.with_prefix(f"{key}.") from None


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
        EffmlModule.check_config({"optimizer": optimizer, "scheduler": scheduler})
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_monitor = monitor
        self._step_time = 0.0
        self._epoch_times: list[float] = []

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """``optimizer`` and ``scheduler`` are partial constructors (or None)."""
        check_partial(cfg, "optimizer")
        check_partial(cfg, "scheduler")

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
