"""The one way effml reads weights back from a Lightning checkpoint: a network's state for a
teacher or a next stage's start, a whole module's state, or the module rebuilt for inference."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TypeVar

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)
ModuleT = TypeVar("ModuleT", bound=pl.LightningModule)


def load_checkpoint(ckpt_path: str | os.PathLike) -> dict:
    """The checkpoint's dict on the CPU; an error naming the file when it is missing or holds
    no ``state_dict`` (not a Lightning checkpoint)."""
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {str(path)!r}: no such file; give the .ckpt file a training stage saved "
            "(<run>/<stage>/checkpoints/*.ckpt)"
        )
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(saved, dict) or "state_dict" not in saved:
        found = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
        raise ValueError(
            f"checkpoint {str(path)!r} is not a Lightning checkpoint (no 'state_dict'; found "
            f"{found}); give a .ckpt file saved by a Lightning trainer"
        )
    return saved


def load_state(ckpt_path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The whole LightningModule's ``state_dict`` saved in ``ckpt_path``."""
    return load_checkpoint(ckpt_path)["state_dict"]


def load_net_state(ckpt_path: str | os.PathLike, prefix: str = "net.") -> dict[str, torch.Tensor]:
    """The weights of one submodule (``prefix``, e.g. the module's ``net``), prefix removed.

    Raises:
        ValueError: the checkpoint has no key starting with ``prefix``.
    """
    state = load_state(ckpt_path)
    net = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    if not net:
        tops = sorted({k.split(".", 1)[0] for k in state})
        raise ValueError(
            f"checkpoint {str(ckpt_path)!r} has no weights under {prefix!r} (it has {tops}): "
            "is it a checkpoint of this method?"
        )
    return net


def load_weights(module: ModuleT, ckpt_path: str | os.PathLike) -> ModuleT:
    """Load ``ckpt_path``'s weights into ``module`` (built as its training stage built it),
    strictly; returns the module in eval mode."""
    module.load_state_dict(load_state(ckpt_path))
    return module.eval()


def load_module(cls: type[ModuleT], ckpt_path: str | os.PathLike, **overrides: object) -> ModuleT:
    """``cls`` rebuilt from the checkpoint's hyperparameters (with ``overrides``) and loaded,
    for inference: no optimizer is built, and the state of submodules the overrides leave out
    (``teacher_ckpt=None``: no teacher) is skipped. Returns the module in eval mode.

    Args:
        cls: the LightningModule class that saved the checkpoint (``save_hyperparameters``).
        ckpt_path: the checkpoint.
        overrides: constructor arguments that replace the saved ones.
    """
    saved = load_checkpoint(ckpt_path)
    if "hyper_parameters" not in saved:
        raise ValueError(
            f"checkpoint {str(ckpt_path)!r} has no hyper_parameters: {cls.__name__} must call "
            "save_hyperparameters() for load_module to rebuild it"
        )
    module = cls(**{"optimizer": None, **saved["hyper_parameters"], **overrides})
    own = {k.split(".", 1)[0] for k in module.state_dict()}
    state = {k: v for k, v in saved["state_dict"].items() if k.split(".", 1)[0] in own}
    skipped = sorted({k.split(".", 1)[0] for k in saved["state_dict"]} - own)
    if skipped:
        log.info("%s: skipped the state of %s (not in the rebuilt module)", ckpt_path, skipped)
    module.load_state_dict(state)
    return module.eval()
