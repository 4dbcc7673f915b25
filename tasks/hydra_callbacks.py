"""Hydra callbacks (registered under ``hydra.callbacks`` in conf/hydra/default.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class PrintMultirunFolder(Callback):
    """Print ``Multirun folder: <hydra.sweep.dir>`` once every job of a multirun has returned.

    A single run prints its own ``Run folder:`` line; a multirun's jobs each print theirs, and
    this line names the folder that holds them all (what ``scripts/report.py`` takes).
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Print the sweep folder as an absolute path."""
        print(f"Multirun folder: {Path(config.hydra.sweep.dir).absolute()}", flush=True)
