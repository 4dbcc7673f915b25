"""Send what a run wrote to its dashboards: every plot (``*.png``) as a W&B image and a
TensorBoard image, every table (``*.csv``) as a W&B table, every clip (``*.gif``, ``*.mp4``)
as a W&B video, ``metrics.json`` as the W&B run
summary, with the run's config and tags.

``run_task`` publishes each run into the loggers its config selects (``logger=wandb``,
``logger=tensorboard``, ``logger=many``; CSV alone has nothing to receive), so the plots and
tables of every method reach the dashboard with its curves. ``scripts/report.py`` and
``scripts/lingcn_frontier.py`` publish the sweep tables and plots they write into a W&B run
in the multirun folder (``--wandb``).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
PLOT_SUFFIX = ".png"
TABLE_SUFFIX = ".csv"
VIDEO_SUFFIXES = (".gif", ".mp4")
# folders whose files are not the run's results: weights, the loggers' own files, Hydra's
SKIPPED_FOLDERS = frozenset({"checkpoints", "csv", "tensorboard", "wandb", ".hydra"})


@dataclass(frozen=True)
class WandbTarget:
    """The W&B run to publish into: the ``wandb.init`` fields of ``conf/logger/wandb.yaml``."""

    project: str = "effml"
    entity: str | None = None
    name: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()
    job_type: str | None = None
    offline: bool = True
    id: str | None = None

    @classmethod
    def from_logger_config(cls, conf: Mapping[str, Any]) -> WandbTarget:
        """The target a resolved ``logger.wandb`` config names (other keys are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in conf.items() if key in known}
        values["tags"] = tuple(values.get("tags") or ())
        return cls(**values)

    @classmethod
    def for_folder(cls, config: Mapping[str, Any], job_type: str, offline: bool) -> WandbTarget:
        """A script's run for a run or multirun folder whose (unresolved) config is
        ``config``: named and grouped by its ``task_name``, with its tags and W&B project."""
        logger = (config.get("logger") or {}).get("wandb") or {}
        task_name = config.get("task_name")
        return cls(
            project=logger.get("project") or cls.project,
            entity=logger.get("entity"),
            name=task_name,
            group=task_name,
            tags=tuple(config.get("tags") or ()),
            job_type=job_type,
            offline=offline,
        )


def run_outputs(run_dir: Path) -> list[Path]:
    """The plots, tables and clips a run wrote, outside checkpoints and the loggers' own
    folders."""
    return [
        path
        for path in sorted(run_dir.rglob("*"))
        if path.suffix in (PLOT_SUFFIX, TABLE_SUFFIX, *VIDEO_SUFFIXES)
        and path.is_file()
        and not SKIPPED_FOLDERS.intersection(path.relative_to(run_dir).parts[:-1])
    ]


def publish_run(cfg: DictConfig) -> None:
    """Send what this run wrote to the loggers ``cfg.logger`` selects: W&B and TensorBoard."""
    loggers = cfg.get("logger") or {}
    wandb_conf, tensorboard_conf = loggers.get("wandb"), loggers.get("tensorboard")
    if not wandb_conf and not tensorboard_conf:
        return
    run_dir = Path(cfg.paths.output_dir)
    files = run_outputs(run_dir)
    if wandb_conf:
        target = WandbTarget.from_logger_config(OmegaConf.to_container(wandb_conf, resolve=True))
        publish_to_wandb(run_dir, files, target, OmegaConf.to_container(cfg, resolve=True))
    if tensorboard_conf:
        publish_to_tensorboard(run_dir, files, Path(tensorboard_conf.save_dir))


def media_key(path: Path, folder: Path) -> str:
    """A file's dashboard name: its path in ``folder`` without suffix (``he/gate_map``)."""
    inside = path.relative_to(folder) if path.is_relative_to(folder) else Path(path.name)
    return inside.with_suffix("").as_posix()


def read_summary(folder: Path) -> dict[str, Any]:
    """``folder/metrics.json``, or nothing when the folder has none (a multirun folder)."""
    path = folder / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def publish_to_wandb(
    folder: Path,
    files: Iterable[Path],
    target: WandbTarget,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Log ``files`` (plots as ``images/<key>``, tables as ``tables/<key>``, clips as
    ``videos/<key>``) and
    ``folder/metrics.json`` as the summary into the open W&B run (Lightning's), else a new one
    in ``folder`` as ``target`` says; the W&B run's own folder."""
    import wandb

    run = wandb.run
    if run is None:
        run = wandb.init(
            project=target.project,
            entity=target.entity,
            name=target.name,
            group=target.group,
            tags=list(target.tags),
            job_type=target.job_type,
            id=target.id,
            dir=str(folder),
            mode="offline" if target.offline else "online",
            config=dict(config or {}),
        )
    else:
        if config:
            run.config.update(dict(config), allow_val_change=True)
        if target.tags:
            run.tags = tuple(dict.fromkeys([*run.tags, *target.tags]))
    media = {}
    for path in files:
        if path.suffix == PLOT_SUFFIX:
            media[f"images/{media_key(path, folder)}"] = wandb.Image(str(path))
        elif path.suffix == TABLE_SUFFIX:
            media[f"tables/{media_key(path, folder)}"] = wandb_table(path)
        elif path.suffix in VIDEO_SUFFIXES:
            media[f"videos/{media_key(path, folder)}"] = wandb.Video(str(path))
    if media:
        run.log(media)
    run.summary.update(read_summary(folder))
    log.info("Published %d plots and tables to W&B run %s", len(media), run.id)
    return Path(run.dir).parent


def wandb_table(path: Path) -> Any:
    """A CSV file as a ``wandb.Table``."""
    import pandas as pd
    import wandb

    return wandb.Table(dataframe=pd.read_csv(path))


def publish_to_tensorboard(folder: Path, files: Iterable[Path], log_dir: Path) -> None:
    """Write the plots among ``files`` as TensorBoard images into ``log_dir``."""
    plots = [path for path in files if path.suffix == PLOT_SUFFIX]
    if not plots:
        return
    import numpy as np
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(log_dir)) as writer:
        for path in plots:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            writer.add_image(media_key(path, folder), pixels, dataformats="HWC")
    log.info("Published %d plots to TensorBoard in %s", len(plots), log_dir)


def publish_folder(
    folder: Path, files: Iterable[Path], target: WandbTarget, config: Mapping[str, Any]
) -> Path:
    """Publish ``files`` into a new W&B run in ``folder`` and finish it; its folder."""
    import wandb

    if wandb.run is not None:
        raise RuntimeError(
            f"W&B run {wandb.run.id} is open; publish {folder} from a process without one"
        )
    try:
        return publish_to_wandb(folder, files, target, config)
    finally:
        wandb.finish()


def add_wandb_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """The ``--wandb [offline|online]`` flag of the scripts that publish ``what`` to W&B."""
    parser.add_argument(
        "--wandb",
        nargs="?",
        const="offline",
        choices=("offline", "online"),
        default=None,
        help=f"also publish {what} (default: offline)",
    )
