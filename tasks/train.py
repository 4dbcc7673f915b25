"""The training task: seed, build, fit, test the best checkpoint, write metrics.json."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from tasks.common import (
    instantiate_group,
    log_hyperparameters,
    optimized_value,
    resolve_ckpt_path,
    to_float_metrics,
    update_metrics_json,
    validate_run_config,
)

log = logging.getLogger(__name__)


def build_model(cfg: DictConfig, datamodule: pl.LightningDataModule) -> pl.LightningModule:
    """The configured model, given the datamodule's shapes (``model_kwargs()``)."""
    shapes = datamodule.model_kwargs() if hasattr(datamodule, "model_kwargs") else {}
    log.info("Instantiating model <%s> with %s", cfg.model._target_, shapes)
    return hydra.utils.instantiate(cfg.model, **shapes)


def build_trainer(cfg: DictConfig) -> pl.Trainer:
    """Callbacks, loggers and the trainer, all writing under ``cfg.paths.output_dir``."""
    callbacks = instantiate_group(cfg.get("callbacks"), "callback")
    loggers = instantiate_group(cfg.get("logger"), "logger")
    log.info("Instantiating trainer <%s>", cfg.trainer._target_)
    return hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)


def fit_and_test(
    cfg: DictConfig,
    datamodule: pl.LightningDataModule,
    model: pl.LightningModule,
    trainer: pl.Trainer,
    ckpt_path: str | None = None,
) -> dict[str, float]:
    """Fit (resuming from ``ckpt_path`` if given) and test the best checkpoint; the metrics."""
    log_hyperparameters(cfg, model, trainer)
    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        if ckpt_path:
            log.info("Resuming from %s", ckpt_path)
        start = time.perf_counter()
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics.update(to_float_metrics(trainer.callback_metrics))
        metrics["time/fit_s"] = time.perf_counter() - start
    if cfg.get("test", True):
        test_ckpt = ckpt_path
        if cfg.get("train", True):
            test_ckpt = best_checkpoint(trainer, resumed_from=ckpt_path)
        log.info("Testing %s", test_ckpt or "the current weights")
        trainer.test(model=model, datamodule=datamodule, ckpt_path=test_ckpt)
        metrics.update(to_float_metrics(trainer.callback_metrics))
    for key in sorted(metrics):
        log.info("%s = %.6g", key, metrics[key])
    return metrics


def train(cfg: DictConfig) -> float | None:
    """Fit, test the best-validation checkpoint and return ``cfg.optimized_metric``.

    Resuming: ``ckpt_path`` (a file, or a run folder whose ``checkpoints/last.ckpt`` is used)
    restores weights, optimizer state and the epoch counter, then training continues to
    ``trainer.max_epochs``.
    """
    validate_run_config(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    log.info("Instantiating datamodule <%s>", cfg.datamodule._target_)
    datamodule = hydra.utils.instantiate(cfg.datamodule)
    model = build_model(cfg, datamodule)
    trainer = build_trainer(cfg)
    metrics = fit_and_test(cfg, datamodule, model, trainer, resolve_ckpt_path(cfg.get("ckpt_path")))
    if trainer.is_global_zero:
        log.info("Wrote %s", update_metrics_json(cfg.paths.output_dir, metrics))
    return optimized_value(metrics, cfg.get("optimized_metric"))


def best_checkpoint(trainer: pl.Trainer, resumed_from: str | None = None) -> str | None:
    """The monitored best checkpoint of the whole training, or None (current weights).

    A resumed run saves into a new folder, so Lightning's checkpoint callback only knows the
    best of the epochs after resuming; the best before is read from the resumed checkpoint.
    """
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") if callback else ""
    if resumed_from and callback is not None and callback.monitor:
        state = torch.load(resumed_from, map_location="cpu", weights_only=False)
        for key, value in state.get("callbacks", {}).items():
            earlier_path, earlier = value.get("best_model_path"), value.get("best_model_score")
            if (
                not key.startswith("ModelCheckpoint")
                or value.get("monitor") != callback.monitor
                or earlier is None
                or not earlier_path
                or not Path(earlier_path).is_file()
            ):
                continue
            current = callback.best_model_score
            better = torch.gt if callback.mode == "max" else torch.lt
            if current is None or better(torch.as_tensor(earlier), current.cpu()):
                log.info("The best epoch was before resuming: %s", earlier_path)
                best = earlier_path
    if not best:
        log.warning("No best checkpoint was saved; testing the current weights.")
        return None
    return best
