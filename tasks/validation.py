"""Validation before work: every constraint the config alone decides, checked before any data
is read or any file written beyond the run folder's config and log.

Each configurable class declares its rules once, in a ``check_config`` classmethod (see
``effml/checks.py``); tasks and function stages carry a ``check_config(cfg, spec)`` attribute.
This module walks the composed config and calls them, adding the group to the key in the error
(``model.dropout=1.5: …``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from effml.errors import ConfigError

log = logging.getLogger(__name__)
# groups whose `_target_` class may declare check_config
CHECKED_GROUPS = ("datamodule", "model")


def validate_config(cfg: DictConfig) -> None:
    """Check the whole run config; ConfigError (a user error) on the first bad value."""
    validate_run_config(cfg)
    for group in CHECKED_GROUPS:
        check_component(cfg.get(group), group)
    task = cfg.get("task")
    if task is not None and "_target_" in task:
        target = resolve_target(task._target_, "task._target_")
        check = getattr(target, "check_config", None)
        if check is not None:
            check(cfg, None)
    if "pipeline" in cfg and cfg.get("stages"):
        validate_stages(cfg)


def validate_stages(cfg: DictConfig) -> None:
    """Each pipeline stage's patched model/datamodule and each function stage's own checks."""
    from tasks.pipeline import stage_config  # Lightning loads only for a pipeline

    for name in cfg.stages:
        spec = cfg.pipeline.get(name)
        if spec is None:
            continue  # check_pipeline names the unknown stage
        if spec.get("kind", "train") == "train":
            stage_cfg = stage_config(cfg, name, cfg.paths.output_dir, {})
            for group in CHECKED_GROUPS:
                if group in spec:
                    check_component(stage_cfg.get(group), f"pipeline.{name}.{group}")
        elif "_target_" in spec:
            target = resolve_target(spec._target_, f"pipeline.{name}._target_")
            check = getattr(target, "check_config", None)
            if check is not None:
                check(cfg, spec)


def resolve_target(path: str, key: str) -> Callable[..., Any]:
    """The class or function a ``_target_`` names; ConfigError when no module or attribute of
    that name exists (an import error inside an existing module is a bug and propagates)."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            target: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name is not None and module_name.startswith(err.name):
                continue  # no such module: try a shorter one (a class attribute path)
            raise
        for attr in parts[split:]:
            if not hasattr(target, attr):
                break
            target = getattr(target, attr)
        else:
            return target
        break
    raise ConfigError(
        key, path, "names no importable class or function", fix="Check the module path"
    )


def check_component(node: DictConfig | None, group: str) -> None:
    """Call the ``check_config`` of the class ``node._target_`` names on ``node``'s values."""
    if node is None or "_target_" not in node:
        return
    target = resolve_target(node._target_, f"{group}._target_")
    check = getattr(target, "check_config", None)
    if check is None:
        return
    values = OmegaConf.to_container(node, resolve=True)
    values = {k: v for k, v in values.items() if not k.startswith("_")}
    try:
        check(values)
    except ConfigError as err:
        raise err.with_prefix(f"{group}.") from None


def validate_run_config(cfg: DictConfig) -> None:
    """The top-level keys every task has."""
    seed = cfg.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ConfigError("seed", seed, "must be a non-negative integer or null", example=0)


def validate_lightning_config(cfg: DictConfig) -> None:
    """The training keys: flags, monitor mode, epochs, what test without training needs."""
    from tasks.lightning import check_ckpt_path

    for key in ("train", "test"):
        if not isinstance(cfg.get(key, True), bool):
            raise ConfigError(key, cfg.get(key), "must be true or false", example=True)
    if cfg.get("monitor_mode", "max") not in ("min", "max"):
        raise ConfigError("monitor_mode", cfg.get("monitor_mode"), "must be min or max", "max")
    trainer = cfg.get("trainer") or {}
    max_epochs = trainer.get("max_epochs")
    if max_epochs is not None and (
        isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < -1
    ):
        raise ConfigError(
            "trainer.max_epochs", max_epochs, "must be an integer >= -1 (-1: no limit)", 10
        )
    if not cfg.get("train", True) and cfg.get("test", True) and cfg.get("ckpt_path") is None:
        raise ConfigError(
            "ckpt_path",
            None,
            "train=false test=true has nothing to test",
            fix="Set ckpt_path=<checkpoint or run folder>",
        )
    if cfg.get("ckpt_path") is not None:
        check_ckpt_path(cfg.ckpt_path)
