"""What every task shares: checks before work starts, instantiation, run folders, metrics.json."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

log = logging.getLogger(__name__)


def run_task(cfg: DictConfig) -> float | None:
    """Instantiate ``cfg.task`` (a callable taking the config) and run it in this run folder."""
    try:
        task = hydra.utils.instantiate(cfg.task)
        return task(cfg)
    finally:
        close_wandb()
        _print_run_folder(cfg.paths.output_dir)


@rank_zero_only
def _print_run_folder(output_dir: str) -> None:
    print(f"Run folder: {output_dir}", flush=True)


def close_wandb() -> None:
    """Finish the W&B run of this job, so the next job of a multirun starts its own."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()


def validate_run_config(cfg: DictConfig) -> None:
    """Fail before any data is read when a top-level value has the wrong type or range."""
    seed = cfg.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed={seed!r}: must be a non-negative integer or null (seed=0)")
    for key in ("train", "test"):
        if not isinstance(cfg.get(key, True), bool):
            raise ValueError(f"{key}={cfg.get(key)!r}: must be true or false")
    if cfg.get("monitor_mode", "max") not in ("min", "max"):
        raise ValueError(f"monitor_mode={cfg.get('monitor_mode')!r}: must be 'min' or 'max'")
    trainer = cfg.get("trainer") or {}
    max_epochs = trainer.get("max_epochs")
    if max_epochs is not None and (not isinstance(max_epochs, int) or max_epochs < -1):
        raise ValueError(
            f"trainer.max_epochs={max_epochs!r}: must be an integer >= -1 (-1 means no limit)"
        )
    if not cfg.get("train", True) and cfg.get("test", True) and cfg.get("ckpt_path") is None:
        raise ValueError("train=false test=true needs ckpt_path=<checkpoint or run folder>")
    if cfg.get("ckpt_path") is not None:
        resolve_ckpt_path(cfg.ckpt_path)


def resolve_ckpt_path(ckpt_path: str | os.PathLike | None) -> str | None:
    """A checkpoint file, or a run folder's ``checkpoints/last.ckpt``; clear errors otherwise."""
    if ckpt_path is None:
        return None
    path = Path(ckpt_path).expanduser()
    if path.is_dir():
        last = path / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise FileNotFoundError(
                f"ckpt_path={ckpt_path}: the folder has no checkpoints/last.ckpt. Pass a run "
                "folder that saved checkpoints (callbacks.model_checkpoint.save_last=true) "
                "or a .ckpt file."
            )
        return str(last)
    if not path.is_file():
        raise FileNotFoundError(
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


def to_float_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Scalar tensors and numbers to plain floats (for JSON)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def update_metrics_json(run_dir: str | os.PathLike, metrics: Mapping[str, float]) -> Path:
    """Merge ``metrics`` into ``run_dir/metrics.json`` atomically (earlier keys stay)."""
    path = Path(run_dir) / "metrics.json"
    merged: dict[str, float] = {}
    if path.is_file():
        merged.update(json.loads(path.read_text()))
    merged.update(
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
    )
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(sorted(merged.items())), indent=2) + "\n")
    tmp.replace(path)
    return path


def optimized_value(metrics: Mapping[str, float], name: str | None) -> float | None:
    """The value sweepers optimise; a clear error if the configured metric was never logged."""
    if name is None:
        return None
    if name not in metrics:
        raise KeyError(
            f"optimized_metric={name!r} was not logged; available: {sorted(metrics)}. "
            "Set optimized_metric to one of them."
        )
    return metrics[name]


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
