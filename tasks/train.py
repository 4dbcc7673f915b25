"""The training task: seed, build, fit, test the best checkpoint, write metrics.json."""

from __future__ import annotations

import logging

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig

from tasks.core import optimized_value, update_metrics_json
from tasks.lightning import build_model, build_trainer, fit_and_test, resolve_ckpt_path
from tasks.validation import validate_lightning_config

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float | None:
    """Fit, test the best-validation checkpoint and return ``cfg.optimized_metric``.

    Resuming: ``ckpt_path`` (a file, or a run folder whose ``checkpoints/last.ckpt`` is used)
    restores weights, optimizer state and the epoch counter, then training continues to
    ``trainer.max_epochs``.
    """
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


def check_train(cfg: DictConfig, spec: DictConfig | None = None) -> None:
    """The training task's own checks (run before any data is read)."""
    validate_lightning_config(cfg)


def resume_train(cfg: DictConfig) -> list[str]:
    """The overrides that resume this run from its ``checkpoints/last.ckpt``."""
    return [f"ckpt_path={cfg.paths.output_dir}"]


train.check_config = check_train
train.resume_overrides = resume_train
