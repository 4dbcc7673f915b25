"""Crash-safe checkpoints: a resume continues exactly where the checkpoint left off and keeps the
best checkpoint across both runs; a run killed during an epoch or during a checkpoint write, or
stopped with Ctrl-C, resumes (``python run.py`` in a subprocess, faults injected by a wrapper)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from conftest import ROOT, assert_ok, require_data, run_cli, run_folder
from torch import nn

from lightning_modules.callbacks import BEST_FILE, RunCheckpoint
from lightning_modules.checkpoints import AtomicCheckpointIO, load_checkpoint

CORA = "Planetoid/Cora/raw/ind.cora.graph"
EPOCHS = 5
SAGE = ["experiment=sage_cora", "trainer=cpu", f"trainer.max_epochs={EPOCHS}", "seed=3"]
PIPELINE = [
    "experiment=lingcn_ntu",
    "datamodule=ntu_synthetic",
    "trainer=cpu",
    "stages=[baseline,linearize]",
    "optimized_metric=linearize/test_acc",
    "datamodule.num_classes=4",
    "datamodule.samples_per_class_per_view=6",
    "datamodule.num_frames=16",
    "datamodule.batch_size=16",
    "lingcn_sizes.ntu_synthetic.channels=[[3,4,1],[4,8,2],[8,8,1]]",
    "lingcn_sizes.ntu_synthetic.epochs.baseline=1",
    "lingcn_sizes.ntu_synthetic.epochs.linearize=3",
]
# Runs run.py with faults: FAULT_SLEEP_S sleeps before each training batch (so a test can
# signal the run mid-epoch) after writing "<run folder of the trainer> <epoch>" to
# FAULT_MARKER; FAULT_KILL_ON_SAVE=N writes half of the N-th last.ckpt and SIGKILLs itself.
WRAPPER = """
import io, os, runpy, signal, sys, time
from pathlib import Path

import pytorch_lightning as pl
import torch

SLEEP = float(os.environ.get("FAULT_SLEEP_S", "0"))
MARKER = os.environ.get("FAULT_MARKER")
KILL_ON_SAVE = int(os.environ.get("FAULT_KILL_ON_SAVE", "0"))


class Slow(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if MARKER:
            Path(MARKER).write_text(f"{trainer.default_root_dir} {trainer.current_epoch}")
        time.sleep(SLEEP)


trainer_init = pl.Trainer.__init__


def init(self, *args, callbacks=None, **kwargs):
    trainer_init(self, *args, callbacks=[*(callbacks or []), Slow()], **kwargs)


pl.Trainer.__init__ = init
torch_save, saves = torch.save, []


def save(obj, f, *args, **kwargs):
    if str(getattr(f, "name", "")).endswith("last.ckpt.tmp"):
        saves.append(f.name)
        if len(saves) == KILL_ON_SAVE:
            buffer = io.BytesIO()
            torch_save(obj, buffer, *args, **kwargs)
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            f.flush()
            os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
    return torch_save(obj, f, *args, **kwargs)


torch.save = save
sys.argv = ["run.py", *sys.argv[1:]]
runpy.run_path(str(Path.cwd() / "run.py"), run_name="__main__")
"""


class ScoreModule(pl.LightningModule):
    """A dropout classifier on shuffled random data whose ``val/score`` follows ``scores``."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = scores
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.log("val/score", torch.tensor(self.scores[self.current_epoch]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(
    folder: Path, scores: list[float], epochs: int, ckpt_path: Path | None = None
) -> pl.Trainer:
    """Fit ScoreModule for ``epochs`` (resuming from ``ckpt_path``) with effml's checkpoints."""
    pl.seed_everything(0)
    data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,)))
    checkpoints = [
        RunCheckpoint(
            dirpath=folder,
            filename="epoch_{epoch:03d}",
            monitor="val/score",
            mode="max",
            auto_insert_metric_name=False,
        ),
        RunCheckpoint(dirpath=folder, filename="last", monitor=None, save_on_exception=True),
    ]
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        plugins=[AtomicCheckpointIO()],
        callbacks=checkpoints,
    )
    train = torch.utils.data.DataLoader(data, batch_size=8, shuffle=True)
    val = torch.utils.data.DataLoader(data, batch_size=8)
    trainer.fit(ScoreModule(scores), train, val, ckpt_path=ckpt_path)
    return trainer


def test_a_resume_continues_exactly(tmp_path: Path) -> None:
    scores = [0.1, 0.2, 0.3, 0.4]
    whole = fit(tmp_path / "whole", scores, 4).lightning_module
    fit(tmp_path / "first", scores, 2)
    resumed = fit(tmp_path / "second", scores, 4, tmp_path / "first" / "last.ckpt")
    # dropout and shuffling drew what the uninterrupted run drew
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(
            resumed.lightning_module.state_dict()[key], value, rtol=0, atol=0
        )


@pytest.mark.parametrize(("last_score", "best_epoch"), [(0.5, 1), (0.95, 3)])
def test_the_best_counts_across_a_resume(
    tmp_path: Path, last_score: float, best_epoch: int
) -> None:
    scores = [0.1, 0.9, 0.2, last_score]
    first = tmp_path / "first"
    fit(first, scores, 3)
    before = sorted(p.name for p in first.iterdir())
    trainer = fit(tmp_path / "second", scores, 4, first / "last.ckpt")
    second = tmp_path / "second"
    best = second / f"epoch_{best_epoch:03d}.ckpt"
    assert trainer.checkpoint_callback.best_model_path == str(best)
    assert sorted(p.name for p in second.iterdir()) == sorted([BEST_FILE, best.name, "last.ckpt"])
    assert load_checkpoint(best)["epoch"] == best_epoch
    record = json.loads((second / BEST_FILE).read_text())
    assert record == {
        "path": str(best.resolve()),
        "monitor": "val/score",
        "score": pytest.approx(scores[best_epoch]),
        "epoch": best_epoch,
    }
    assert sorted(p.name for p in first.iterdir()) == before  # the earlier run is untouched


def test_a_stale_temporary_file_is_removed(tmp_path: Path) -> None:
    # a name no save of this run writes again: only the clean-up at the start removes it
    (tmp_path / "epoch_007.ckpt.tmp").write_bytes(b"half a checkpoint")
    fit(tmp_path, [0.1, 0.2], 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [BEST_FILE, "epoch_001.ckpt", "last.ckpt"]


# ---- run.py killed and resumed (slow) ----


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    """The metrics of sage_cora trained without a fault (the reference of the resumed runs)."""
    require_data(CORA)
    logs = tmp_path_factory.mktemp("reference")
    proc = run_cli(SAGE, logs, logs / "cache")
    assert_ok(proc)
    return json.loads((run_folder(proc) / "metrics.json").read_text())


def start_faulty(args: list[str], tmp_path: Path, **faults: str) -> subprocess.Popen:
    """``run.py ARGS`` through the fault wrapper, running in the background."""
    wrapper = tmp_path / "faulty_run.py"
    wrapper.write_text(WRAPPER)
    env = {**os.environ, **faults, "FAULT_MARKER": str(tmp_path / "marker")}
    cmd = [sys.executable, str(wrapper), *args, f"paths.cache_dir={tmp_path / 'cache'}"]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_epoch(proc: subprocess.Popen, tmp_path: Path, folder: str, epoch: int) -> int:
    """Wait until the run trains ``epoch`` (or later) of the trainer in ``folder``."""
    marker, deadline = tmp_path / "marker", time.monotonic() + 300
    while True:
        assert proc.poll() is None, proc.communicate()[1][-4000:]
        assert time.monotonic() < deadline, "the run did not reach the epoch within 300 s"
        seen = marker.read_text().rsplit(" ", 1) if marker.is_file() else ["", "-1"]
        if seen[0].endswith(folder) and int(seen[1]) >= epoch:
            return int(seen[1])
        time.sleep(0.05)


def resume(run: Path, tmp_path: Path, args: list[str]) -> tuple[dict[str, float], Path]:
    """Resume ``run`` with plain ``run.py``: its metrics and run folder."""
    proc = run_cli([*args, f"ckpt_path={run}"], tmp_path / "resumed", tmp_path / "cache")
    assert_ok(proc)
    resumed = run_folder(proc)
    assert not list(resumed.rglob("*.tmp"))
    return json.loads((resumed / "metrics.json").read_text()), resumed


def assert_same_training(resumed: dict[str, float], reference: dict[str, float]) -> None:
    for key in ("test/acc", "val/acc", "val/acc_best", "train/loss", "test/loss"):
        assert resumed[key] == pytest.approx(reference[key], abs=1e-6), key


@pytest.mark.slow
def test_killed_during_an_epoch(tmp_path: Path, uninterrupted: dict[str, float]) -> None:
    run = tmp_path / "run"
    proc = start_faulty([*SAGE, f"hydra.run.dir={run}"], tmp_path, FAULT_SLEEP_S="1")
    killed_in = wait_for_epoch(proc, tmp_path, str(run), 2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    # at most the epoch in progress is lost
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] in (killed_in - 1, killed_in)
    metrics, resumed = resume(run, tmp_path, SAGE)
    assert_same_training(metrics, uninterrupted)
    assert json.loads((resumed / "checkpoints" / BEST_FILE).read_text())["score"] == (
        pytest.approx(metrics["val/acc_best"])
    )


@pytest.mark.slow
def test_killed_while_writing_a_checkpoint(tmp_path: Path, uninterrupted: dict[str, float]) -> None:
    run = tmp_path / "run"
    proc = start_faulty([*SAGE, f"hydra.run.dir={run}"], tmp_path, FAULT_KILL_ON_SAVE="3")
    proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL
    # the third last.ckpt (epoch 2) was half written: the second (epoch 1) is still whole
    assert (run / "checkpoints" / "last.ckpt.tmp").is_file()
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 1
    metrics, _ = resume(run, tmp_path, SAGE)
    assert_same_training(metrics, uninterrupted)


@pytest.mark.slow
def test_ctrl_c_prints_the_command_that_resumes(tmp_path: Path) -> None:
    require_data(CORA)
    logs = tmp_path / "logs"
    args = [*SAGE, f"paths.log_dir={logs}"]
    proc = start_faulty(args, tmp_path, FAULT_SLEEP_S="1")
    wait_for_epoch(proc, tmp_path, "", 2)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # never leave a run spinning (SIGINT ignored under nohup)
            proc.kill()
    assert proc.returncode == 130, err[-4000:]
    run = next(logs.glob("sage_cora/runs/*"))
    assert (run / "INTERRUPTED").is_file()
    lines = err.splitlines()
    command = lines[lines.index("Interrupted (Ctrl-C). Resume with:") + 1].strip()
    assert command.startswith("python run.py ") and command.endswith(f"ckpt_path={run}")
    interrupted_at = load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"]
    resumed_proc = subprocess.run(
        [sys.executable, *shlex.split(command)[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert_ok(resumed_proc)
    resumed = run_folder(resumed_proc)
    assert resumed != run and "test/acc" in json.loads((resumed / "metrics.json").read_text())
    curves = pd.read_csv(resumed / "csv" / "metrics.csv").dropna(subset=["train/loss"])
    assert interrupted_at <= curves["epoch"].min() <= interrupted_at + 1
    assert curves["epoch"].max() == EPOCHS - 1


@pytest.mark.slow
def test_an_interrupted_stage_resumes_in_its_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [*PIPELINE, f"paths.log_dir={tmp_path}", f"hydra.run.dir={run}"]
    proc = start_faulty(args, tmp_path, FAULT_SLEEP_S="0.5")
    wait_for_epoch(proc, tmp_path, str(run / "linearize"), 1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    last = run / "linearize" / "checkpoints" / "last.ckpt"
    interrupted_at = load_checkpoint(last)["epoch"]
    assert not (run / "linearize" / "stage.json").exists()

    rerun = run_cli(args, tmp_path, tmp_path / "cache")
    assert_ok(rerun)
    out = rerun.stdout + rerun.stderr
    assert "Stage baseline finished earlier: skipped" in out
    assert f"Stage linearize was interrupted: resuming from {last}" in out
    assert f"Restoring states from the checkpoint path at {last}" in out
    assert json.loads((run / "linearize" / "stage.json").read_text())["metrics"]
    assert load_checkpoint(last)["epoch"] == 2 > interrupted_at
