"""A checkpoint that cannot be used (junk, truncated, not Lightning's, another model's) gives a
CheckpointError naming the file, and an atomic write never leaves a half-written file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from effml.errors import CheckpointError
from lightning_modules.callbacks import RunCheckpoint
from lightning_modules.checkpoints import (
    AtomicCheckpointIO,
    check_fits,
    load_checkpoint,
    load_module,
    load_weights,
    save_checkpoint_file,
    write_atomically,
)
from tasks.lightning import check_ckpt_path


class TinyModule(pl.LightningModule):
    """A linear classifier on random data, saved by a real trainer."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(width, 2)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class OtherModule(TinyModule):
    """Another model class, with another layout."""

    def __init__(self, width: int = 4) -> None:
        super().__init__(width)
        self.head = nn.Linear(2, 2)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.ckpt`` of a one-epoch run of TinyModule(width=4)."""
    folder = tmp_path_factory.mktemp("run") / "checkpoints"
    data = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,)))
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],
        callbacks=[RunCheckpoint(dirpath=folder, filename="last", monitor=None)],
    )
    trainer.fit(TinyModule(), torch.utils.data.DataLoader(data, batch_size=4))
    return folder / "last.ckpt"


def test_a_trainer_checkpoint_records_its_class_and_leaves_no_temporary(saved: Path) -> None:
    checkpoint = load_checkpoint(saved)
    assert checkpoint["module_class"].endswith("test_checkpoint_errors.TinyModule")
    assert sorted(p.name for p in saved.parent.iterdir()) == ["last.ckpt"]
    # Lightning reads checkpoints back with weights_only=True
    assert "random_state" in torch.load(saved, weights_only=True)


def test_junk_bytes_name_the_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match=r"junk\.ckpt' is not a torch checkpoint") as err:
        load_checkpoint(junk)
    assert "KeyError" not in str(err.value)
    empty = tmp_path / "empty.ckpt"
    empty.touch()
    with pytest.raises(CheckpointError, match=r"empty\.ckpt' is empty"):
        check_ckpt_path(empty)


def test_a_truncated_checkpoint_names_the_file_and_the_fix(saved: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cut\.ckpt' is truncated or corrupt.*last\.ckpt"):
        load_checkpoint(cut)
    # a run folder whose last.ckpt is cut fails the check made before any data is read
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.ckpt").write_bytes(cut.read_bytes())
    with pytest.raises(CheckpointError, match=r"run/checkpoints/last\.ckpt' is truncated"):
        check_ckpt_path(tmp_path / "run")


def test_missing_and_non_lightning_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"ckpt_path=.*nope\.ckpt: no such file"):
        check_ckpt_path(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match="has no checkpoints/last.ckpt"):
        check_ckpt_path(tmp_path)
    plain = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match=r"weights\.pt' is not a Lightning checkpoint"):
        check_ckpt_path(plain)


def test_another_models_checkpoint_names_both_models(saved: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        check_fits(OtherModule(), saved)
    message = str(err.value)
    assert message.startswith(f"checkpoint {str(saved)!r} does not fit the configured model ")
    assert re.search(r"OtherModule: it was saved by \S*TinyModule; 2 missing keys", message)
    with pytest.raises(CheckpointError, match=r"width=4 \(here 6\).*another shape"):
        load_weights(TinyModule(width=6), saved)
    with pytest.raises(CheckpointError, match=r"saved by .*TinyModule, not .*OtherModule"):
        load_module(OtherModule, saved)
    assert check_fits(TinyModule(), saved)["state_dict"].keys() == TinyModule().state_dict().keys()


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    save_checkpoint_file({"state_dict": {"w": torch.ones(2)}}, path)
    (tmp_path / "last.ckpt.tmp").write_bytes(b"stale bytes of a killed save")

    def fail_midway(file) -> None:
        file.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, fail_midway)
    assert load_checkpoint(path)["state_dict"]["w"].tolist() == [1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
