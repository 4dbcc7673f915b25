"""What every task shares, Lightning or not: checks before work starts, running the task,
publishing what it wrote, closing W&B, metrics.json.

Nothing here imports PyTorch Lightning, so a task that trains nothing (a benchmark) loads
neither it nor a trainer config.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import torch
from lightning_utilities.core.rank_zero import rank_zero_only
from omegaconf import DictConfig

log = logging.getLogger(__name__)
# where launchers put the process rank when Lightning has not set it (its own order)
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def run_task(cfg: DictConfig) -> float | None:
    """Check ``cfg``, instantiate ``cfg.task`` (a callable taking the config) and run it in
    this run folder; publish what it wrote to the configured loggers.

    Returns:
        The task's return value: what sweepers optimise (``cfg.optimized_metric``).
    """
    from tasks.boundary import run_guarded
    from tasks.quiet import silence_known_warnings
    from tasks.validation import resolve_target, validate_config

    silence_known_warnings()  # again here: launchers may run the job in another process

    def run() -> float | None:
        try:
            validate_config(cfg)
            task = hydra.utils.instantiate(cfg.task)
            value = task(cfg)
            if is_global_zero():
                from tasks.publish import publish_run

                publish_run(cfg)
            return value
        finally:
            close_wandb()
            if is_global_zero():
                print_run_folder(cfg.paths.output_dir)

    def resume() -> list[str] | None:
        target = resolve_target(cfg.task._target_, "task._target_")
        overrides = getattr(target, "resume_overrides", None)
        return overrides(cfg) if overrides is not None else None

    return run_guarded(cfg, run, resume)


def is_global_zero() -> bool:
    """Whether this is the job's first process (the one that writes shared files)."""
    rank = getattr(rank_zero_only, "rank", None)
    if rank is None:
        rank = next((int(os.environ[k]) for k in RANK_VARIABLES if k in os.environ), 0)
    return rank == 0


def print_run_folder(output_dir: str) -> None:
    """Print the run folder last, for the user and for scripts that read it back."""
    print(f"Run folder: {output_dir}", flush=True)


def close_wandb() -> None:
    """Finish the W&B run of this job, so the next job of a multirun starts its own."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()


def to_float_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Scalar tensors and numbers to plain floats (for JSON); other values are left out."""
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
