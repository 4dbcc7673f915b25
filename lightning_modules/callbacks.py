"""The checkpoint callback of every effml run (``conf/callbacks/model_checkpoint.yaml`` and
``last_checkpoint.yaml``).

On top of Lightning's ``ModelCheckpoint`` it records in each checkpoint the LightningModule
class that saved it and the random generators' state (so a resumed run draws what the
uninterrupted run would have drawn), and it keeps the best checkpoint across a resume: a run
resumed from another run folder copies the earlier best checkpoint into its own folder and
replaces it only with a better one. A monitored callback names its best in
``checkpoints/best.json`` (``{"path", "monitor", "score", "epoch"}``).

The files themselves are written atomically by the trainer's ``AtomicCheckpointIO`` plugin
(``conf/trainer/default.yaml``).
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.trainer.states import TrainerFn

from lightning_modules.checkpoints import (
    MODULE_CLASS_KEY,
    TEMPORARY_SUFFIX,
    copy_checkpoint_file,
    load_checkpoint,
    module_class_path,
    write_atomically,
)

log = logging.getLogger(__name__)
BEST_FILE = "best.json"
RANDOM_STATE_KEY = "random_state"


def random_state() -> dict[str, Any]:
    """The state of Python's, NumPy's and torch's generators, as plain values and tensors (so
    the checkpoint still loads with ``torch.load(weights_only=True)``)."""
    numpy = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {**numpy, "state": {**numpy["state"], "key": numpy["state"]["key"].tolist()}},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


def restore_random_state(state: dict[str, Any]) -> None:
    """Set the generators to ``state`` (from ``random_state``)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    key = np.asarray(numpy["state"]["key"], dtype=np.uint32)
    np.random.set_state({**numpy, "state": {**numpy["state"], "key": key}})
    torch.set_rng_state(state["torch"])
    if state["cuda"] and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that records what saved a checkpoint, resumes the random state, and
    keeps the best checkpoint across a resume into another run folder (see the module doc).

    Takes ``ModelCheckpoint``'s arguments.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.best_epoch: int | None = None
        self._earlier: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        """``ModelCheckpoint``'s key, so checkpoints it saved restore into this callback."""
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Resolve the folder; remove what a save killed midway left there."""
        super().setup(trainer, pl_module, stage)
        if trainer.is_global_zero and stage == "fit" and self.dirpath:
            for stale in Path(self.dirpath).glob(f"*{TEMPORARY_SUFFIX}"):
                log.info("Removing %s, left by a save that did not finish", stale)
                stale.unlink(missing_ok=True)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Record the module class and the random state in the checkpoint."""
        checkpoint[MODULE_CLASS_KEY] = module_class_path(pl_module)
        checkpoint[RANDOM_STATE_KEY] = random_state()

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """When training resumes, continue the random streams where the checkpoint left them."""
        if trainer.state.fn == TrainerFn.FITTING and RANDOM_STATE_KEY in checkpoint:
            restore_random_state(checkpoint[RANDOM_STATE_KEY])

    def state_dict(self) -> dict[str, Any]:
        """Lightning's state, plus the epoch of the best checkpoint."""
        return {**super().state_dict(), "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state saved in this folder; from another folder (a resume into a new
        run), keep the earlier best to carry over when training starts."""
        if state_dict.get("dirpath", self.dirpath) == self.dirpath:
            super().load_state_dict(state_dict)
            self.best_epoch = state_dict.get("best_epoch")
            return
        monitored = self.monitor and state_dict.get("monitor") == self.monitor
        self._earlier = state_dict if monitored else None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Carry the best checkpoints of the run resumed from into this folder."""
        super().on_train_start(trainer, pl_module)
        if self._earlier is not None:
            self._carry_best(trainer, self._earlier)
            self._earlier = None

    def _carry_best(self, trainer: pl.Trainer, earlier: dict[str, Any]) -> None:
        """Copy the earlier run's top-k checkpoints here and rank the new epochs against them."""
        best_k = earlier.get("best_k_models") or {}
        if not best_k and earlier.get("best_model_score") is not None:
            best_k = {earlier["best_model_path"]: earlier["best_model_score"]}
        resumed_dir = Path(trainer.ckpt_path).parent if trainer.ckpt_path else None
        carried = {}
        for old_path, score in best_k.items():
            source = Path(old_path)
            if not source.is_file() and resumed_dir is not None:  # the run folder moved
                source = resumed_dir / source.name
            if not source.is_file():
                log.warning(
                    "The best checkpoint before resuming, %s, is gone: the best is counted "
                    "from the resumed epochs only",
                    old_path,
                )
                continue
            target = Path(self.dirpath) / source.name
            if trainer.is_global_zero:
                copy_checkpoint_file(source, target)
            carried[str(target)] = torch.as_tensor(score).cpu()
        if not carried:
            return
        pick = max if self.mode == "max" else min
        self.best_k_models = carried
        self.best_model_path = pick(carried, key=lambda p: carried[p].item())
        self.best_model_score = carried[self.best_model_path]
        k = len(carried) + 1 if self.save_top_k == -1 else self.save_top_k
        if len(carried) >= k:
            worst = min if self.mode == "max" else max
            self.kth_best_model_path = worst(carried, key=lambda p: carried[p].item())
            self.kth_value = carried[self.kth_best_model_path]
        self.best_epoch = earlier.get("best_epoch")
        if self.best_epoch is None:  # saved before the epoch was recorded
            self.best_epoch = int(load_checkpoint(self.best_model_path).get("epoch", -1))
        log.info(
            "The best checkpoint before resuming (%s = %.6g, epoch %d) carried into %s",
            self.monitor,
            self.best_model_score.item(),
            self.best_epoch,
            self.best_model_path,
        )
        if trainer.is_global_zero:
            self._write_best()

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        """Save (Lightning's way); a new best also updates ``best.json``."""
        new_best = bool(self.monitor) and filepath == self.best_model_path
        if new_best:
            self.best_epoch = trainer.current_epoch  # before saving: it is part of the state
        super()._save_checkpoint(trainer, filepath)
        if new_best and trainer.is_global_zero:
            self._write_best()

    def _write_best(self) -> None:
        """``best.json``: the best checkpoint, its monitored score and epoch."""
        record = {
            "path": str(Path(self.best_model_path).resolve()),
            "monitor": self.monitor,
            "score": float(self.best_model_score),
            "epoch": self.best_epoch,
        }
        text = json.dumps(record, indent=2) + "\n"
        write_atomically(Path(self.dirpath) / BEST_FILE, lambda file: file.write(text.encode()))
