"""The Lightning helpers of the tasks that train: config checks, building the model and the
trainer, fit then test the best checkpoint."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from effml.errors import CheckpointError
from lightning_modules.checkpoints import check_fits, load_checkpoint
from tasks.core import to_float_metrics

log = logging.getLogger(__name__)


def check_ckpt_path(ckpt_path: str | os.PathLike) -> None:
    """Fail before work when ``ckpt_path`` names no usable checkpoint: the file (or the run
    folder's ``checkpoints/last.ckpt``) exists, reads, and is a Lightning checkpoint."""
    load_checkpoint(resolve_ckpt_path(ckpt_path))


def resolve_ckpt_path(ckpt_path: str | os.PathLike | None) -> str | None:
    """A checkpoint file, or a run folder's ``checkpoints/last.ckpt``; CheckpointError when
    there is none."""
    if ckpt_path is None:
        return None
    path = Path(ckpt_path).expanduser()
    if path.is_dir():
        last = path / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise CheckpointError(
                f"ckpt_path={ckpt_path}: the folder has no checkpoints/last.ckpt. Pass a run "
                "folder that saved checkpoints (callbacks.last_checkpoint, in the default "
                "callbacks) or a .ckpt file."
            )
        return str(last)
    if not path.is_file():
        raise CheckpointError(
            f"ckpt_path={ckpt_path}: no such file. Pass a .ckpt file or a run folder "
            "(outputs/<task_name>/runs/<time>)."
        )
    return str(path)


def instantiate_group(cfg_group: DictConfig | None, kind: str) -> list[Any]:
    """Instantiate every entry of a dict-of-configs group (callbacks, loggers)."""
    if not cfg_group:
        return []
    if not isinstance(cfg_group, DictConfig):
        raise TypeError(f"{kind} config must be a mapping of name -> config, got {cfg_group!r}")
    objects = []
    for name, conf in cfg_group.items():
        if isinstance(conf, DictConfig) and "_target_" in conf:
            log.info("Instantiating %s %s <%s>", kind, name, conf._target_)
            objects.append(hydra.utils.instantiate(conf))
    return objects


def log_hyperparameters(cfg: DictConfig, model: pl.LightningModule, trainer: pl.Trainer) -> None:
    """Send the resolved config and parameter counts to every logger."""
    if not trainer.loggers:
        return
    hparams = OmegaConf.to_container(cfg, resolve=True)
    hparams["model/params/total"] = sum(p.numel() for p in model.parameters())
    hparams["model/params/trainable"] = sum(
        p.numel() for p in model.parameters() if p.requires_grad
    )
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)


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
    ckpt_fix: str | None = None,
) -> dict[str, float]:
    """Fit (resuming from ``ckpt_path`` if given) and test the best checkpoint; the metrics.

    A ``ckpt_path`` that does not fit ``model`` raises CheckpointError (with ``ckpt_fix`` as
    its fix, when given) before anything runs.
    """
    log_hyperparameters(cfg, model, trainer)
    if ckpt_path:
        check_fits(model, ckpt_path, fix=ckpt_fix)
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
            test_ckpt = best_checkpoint(trainer)
        log.info("Testing %s", test_ckpt or "the current weights")
        trainer.test(model=model, datamodule=datamodule, ckpt_path=test_ckpt)
        metrics.update(to_float_metrics(trainer.callback_metrics))
    for key in sorted(metrics):
        log.info("%s = %.6g", key, metrics[key])
    return metrics


def best_checkpoint(trainer: pl.Trainer) -> str | None:
    """The monitored best checkpoint of the whole training, or None (current weights).

    After a resume from another run folder this is the best across both runs: the checkpoint
    callback (``RunCheckpoint``) carried the earlier best into this folder.
    """
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") if callback else ""
    if not best:
        log.warning("No best checkpoint was saved; testing the current weights.")
        return None
    return best
