"""tasks/quiet.py silences exactly the known irrelevant warnings and tips, from their real
sources, and nothing else."""

from __future__ import annotations

import configparser
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from conftest import ROOT

from tasks.quiet import KNOWN_LOG_LINES, KNOWN_WARNINGS, DropLogLines, silence_known_warnings


class Collect(logging.Handler):
    """Keep the messages of the records that reach it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def silenced() -> Iterator[list[warnings.WarningMessage]]:
    """Only quiet.py's filters (every other warning recorded); the global state restored."""
    names = {name for name, _ in KNOWN_LOG_LINES}
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        silence_known_warnings()
        yield caught
    for name in names:
        logger = logging.getLogger(name)
        for log_filter in [f for f in logger.filters if isinstance(f, DropLogLines)]:
            logger.removeFilter(log_filter)


@contextmanager
def collect(name: str) -> Iterator[Collect]:
    """Collect the INFO-and-above records that pass the filters of logger ``name``."""
    handler, logger = Collect(), logging.getLogger(name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def add_one(x: torch.Tensor) -> torch.Tensor:
    return x + 1


def test_torch_jit_script_deprecation_is_silenced(silenced: list) -> None:
    torch.jit.script(add_one)  # what torch_geometric does to a class when it is imported
    warnings.warn("`torch.jit.script` is fine", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in silenced] == ["`torch.jit.script` is fine"]


def test_lightning_leafspec_deprecation_is_silenced_from_lightning_only(silenced: list) -> None:
    from pytorch_lightning.utilities.combined_loader import CombinedLoader

    CombinedLoader([1, 2], "sequential")
    assert silenced == []
    torch.utils._pytree.LeafSpec()  # the same deprecation, raised outside Lightning
    assert len(silenced) == 1 and "LeafSpec" in str(silenced[0].message)


def test_lightning_tips_are_dropped_and_its_run_lines_kept(silenced: list, tmp_path: Path) -> None:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelSummary
    from pytorch_lightning.loggers import CSVLogger

    with collect("pytorch_lightning.utilities.rank_zero") as handler:
        pl.Trainer(
            logger=CSVLogger(tmp_path),
            callbacks=[ModelSummary()],
            accelerator="cpu",
            enable_progress_bar=False,
        )
    assert not [m for m in handler.messages if "litlogger" in m or "model summary" in m]
    assert any(m.startswith("GPU available:") for m in handler.messages), handler.messages


def test_cpp_extension_cuda_home_warning_is_dropped(
    silenced: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torch.utils import cpp_extension

    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with collect("torch.utils.cpp_extension") as handler:
        assert cpp_extension._find_cuda_home() == str(tmp_path)
        logging.getLogger("torch.utils.cpp_extension").warning("No CUDA toolkit at %s", tmp_path)
    assert handler.messages == [f"No CUDA toolkit at {tmp_path}"]


def test_other_warnings_of_the_same_categories_still_show(silenced: list) -> None:
    for _, category, _ in KNOWN_WARNINGS:
        warnings.warn(f"something about this run ({category.__name__})", category, stacklevel=1)
    assert len(silenced) == len(KNOWN_WARNINGS)


def test_calling_twice_installs_each_filter_once(silenced: list) -> None:
    before = list(warnings.filters)
    silence_known_warnings()
    assert warnings.filters == before
    for name, _ in KNOWN_LOG_LINES:
        drops = [f for f in logging.getLogger(name).filters if isinstance(f, DropLogLines)]
        assert len(drops) == 1


def test_setup_cfg_filters_the_same_warnings() -> None:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "setup.cfg")
    in_setup = set()
    for line in config["tool:pytest"]["filterwarnings"].strip().splitlines():
        _, message, category, *module = line.split(":")
        in_setup.add((message, category, module[0] if module else ""))
    for message, category, module in KNOWN_WARNINGS:
        assert (message, category.__name__, module) in in_setup, message
