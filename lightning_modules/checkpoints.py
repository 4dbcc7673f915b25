"""Checkpoint files, the one way effml writes and reads them: written atomically (a killed save
leaves the previous file whole), read back with an error that names the file and the fix
(missing, truncated, corrupt, not a Lightning checkpoint, or of another model): a network's
state for a teacher or a next stage's start, a whole module's state, or the module rebuilt for
inference."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import fsspec
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins import TorchCheckpointIO

from effml.errors import CheckpointError

log = logging.getLogger(__name__)
ModuleT = TypeVar("ModuleT", bound=pl.LightningModule)
# where a file is written before it replaces the real one
TEMPORARY_SUFFIX = ".tmp"
# the checkpoint key naming the LightningModule class that saved it (written by RunCheckpoint)
MODULE_CLASS_KEY = "module_class"
READ_FIX = (
    "Use another checkpoint of the run (its checkpoints/last.ckpt or an epoch_*.ckpt), or copy "
    "the file again"
)
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOL_BYTE = 0x80


def write_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write(file)`` so a reader sees the old file or the whole new one.

    The bytes go to ``<path>.tmp`` in the same folder (created if needed; a stale temporary
    file from a killed save is overwritten), are flushed to disk, and then the temporary file
    replaces ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if os.name == "posix":  # make the rename itself durable
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def save_checkpoint_file(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` ``checkpoint`` to ``path`` atomically."""
    write_atomically(path, lambda file: torch.save(checkpoint, file))


def copy_checkpoint_file(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copy ``source`` to ``target`` atomically."""
    with open(source, "rb") as read:
        write_atomically(target, lambda file: shutil.copyfileobj(read, file))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing local files atomically (``write_atomically``).

    The trainer's strategy calls it on the process that writes (rank 0 under DDP), for every
    checkpoint: the callbacks' and ``trainer.save_checkpoint``'s.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        """Save ``checkpoint`` to ``path``; a remote path is written as Lightning writes it."""
        if storage_options is not None or fsspec.utils.get_protocol(str(path)) != "file":
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        save_checkpoint_file(checkpoint, path)


def module_class_path(module: pl.LightningModule) -> str:
    """The import path of ``module``'s class (``lightning_modules.gnn.module.GNNModule``)."""
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def unreadable(path: Path, err: Exception) -> CheckpointError:
    """The error for a file ``torch.load`` cannot read: what the file is, not torch's internals."""
    with open(path, "rb") as file:
        head = file.read(8)
    if not head:
        what = "is empty"
    elif head.startswith(ZIP_MAGIC):
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
        what = f"is truncated or corrupt (a zip archive torch cannot read: {detail})"
    elif head[0] == PICKLE_PROTOCOL_BYTE:
        what = f"is truncated or corrupt (an old-format torch file: {type(err).__name__})"
    else:
        what = f"is not a torch checkpoint (it starts with the bytes {head.hex(' ')})"
    return CheckpointError(f"checkpoint {str(path)!r} {what}. {READ_FIX}")


def load_checkpoint(ckpt_path: str | os.PathLike) -> dict:
    """The checkpoint's dict on the CPU; CheckpointError naming the file when it is missing,
    unreadable, or holds no ``state_dict`` (not a Lightning checkpoint)."""
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {str(path)!r}: no such file; give the .ckpt file a training run saved "
            "(<run>/checkpoints/*.ckpt, or <run>/<stage>/checkpoints/*.ckpt in a pipeline)"
        )
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # any failure to decode the file is the file's fault
        raise unreadable(path, err) from err
    if not isinstance(saved, dict) or "state_dict" not in saved:
        found = sorted(map(str, saved)) if isinstance(saved, dict) else type(saved).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a Lightning checkpoint (no 'state_dict'; found "
            f"{found}); give a .ckpt file saved by a Lightning trainer"
        )
    return saved


def simple_hparams(hparams: Any) -> dict[str, Any]:
    """The hyperparameters whose values print on one line (numbers, strings, flags, lists)."""
    plain = (int, float, str, bool, type(None))
    return {
        str(k): v
        for k, v in dict(hparams or {}).items()
        if isinstance(v, plain)
        or (isinstance(v, (list, tuple)) and all(isinstance(x, plain) for x in v))
    }


def saved_by(saved: dict, module: pl.LightningModule) -> str:
    """What saved a checkpoint, as far as it records: its module class and the
    hyperparameters that differ from ``module``'s."""
    text = saved.get(MODULE_CLASS_KEY) or "a module whose class it does not record"
    ours, theirs = (
        simple_hparams(getattr(module, "hparams", {})),
        simple_hparams(saved.get("hyper_parameters")),
    )
    differ = [
        f"{k}={theirs[k]!r} (here {ours[k]!r})"
        for k in theirs
        if k in ours and theirs[k] != ours[k]
    ]
    if differ:
        text += f" with {', '.join(differ[:5])}" + (" ..." if len(differ) > 5 else "")
    return text


def state_mismatch(module: torch.nn.Module, state: dict[str, torch.Tensor], strict: bool) -> str:
    """How ``state`` fails to load into ``module`` (empty when it loads)."""
    own = module.state_dict()
    problems = []
    if strict:
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        for label, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                problems.append(
                    f"{len(keys)} {label} keys ({', '.join(keys[:3])}{' ...' * (len(keys) > 3)})"
                )
    shapes = [
        f"{k}: saved {list(state[k].shape)}, here {list(v.shape)}"
        for k, v in own.items()
        if k in state
        and not isinstance(v, torch.nn.parameter.UninitializedTensorMixin)
        and hasattr(state[k], "shape")
        and state[k].shape != v.shape
    ]
    if shapes:
        problems.append(
            f"{len(shapes)} of another shape ({'; '.join(shapes[:3])}{' ...' * (len(shapes) > 3)})"
        )
    return "; ".join(problems)


def check_fits(
    module: pl.LightningModule,
    ckpt_path: str | os.PathLike,
    saved: dict | None = None,
    fix: str | None = None,
) -> dict:
    """The checkpoint's dict, after checking its ``state_dict`` loads into ``module`` (the keys
    and shapes Lightning's load checks); CheckpointError naming the file, what saved it, what
    the config builds and ``fix`` otherwise.

    Args:
        module: the model the config builds.
        ckpt_path: the checkpoint.
        saved: the checkpoint's dict when already loaded.
        fix: what the user should do (default: pass a checkpoint of this model).
    """
    saved = saved if saved is not None else load_checkpoint(ckpt_path)
    mismatch = state_mismatch(module, saved["state_dict"], getattr(module, "strict_loading", True))
    if mismatch:
        raise CheckpointError(
            f"checkpoint {str(ckpt_path)!r} does not fit the configured model "
            f"{module_class_path(module)}: it was saved by {saved_by(saved, module)}; {mismatch}. "
            + (
                fix
                or "Pass a checkpoint this model saved, or run with the config that trained it "
                "(<run folder>/.hydra/config.yaml)"
            )
        )
    return saved


def load_state(ckpt_path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The whole LightningModule's ``state_dict`` saved in ``ckpt_path``."""
    return load_checkpoint(ckpt_path)["state_dict"]


def load_net_state(ckpt_path: str | os.PathLike, prefix: str = "net.") -> dict[str, torch.Tensor]:
    """The weights of one submodule (``prefix``, e.g. the module's ``net``), prefix removed.

    Raises:
        CheckpointError: the checkpoint has no key starting with ``prefix``.
    """
    saved = load_checkpoint(ckpt_path)
    state = saved["state_dict"]
    net = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    if not net:
        tops = sorted({k.split(".", 1)[0] for k in state})
        by = saved.get(MODULE_CLASS_KEY) or "a module whose class it does not record"
        raise CheckpointError(
            f"checkpoint {str(ckpt_path)!r} has no weights under {prefix!r} (it has {tops}; saved "
            f"by {by}): give a checkpoint of this method"
        )
    return net


def load_weights(module: ModuleT, ckpt_path: str | os.PathLike) -> ModuleT:
    """Load ``ckpt_path``'s weights into ``module`` (built as its training stage built it),
    strictly; returns the module in eval mode."""
    module.load_state_dict(check_fits(module, ckpt_path)["state_dict"])
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
    wanted = f"{cls.__module__}.{cls.__qualname__}"
    if saved.get(MODULE_CLASS_KEY, wanted) != wanted:
        raise CheckpointError(
            f"checkpoint {str(ckpt_path)!r} was saved by {saved[MODULE_CLASS_KEY]}, not {wanted}: "
            "give a checkpoint of this method"
        )
    if "hyper_parameters" not in saved:
        raise CheckpointError(
            f"checkpoint {str(ckpt_path)!r} has no hyper_parameters: {cls.__name__} must call "
            "save_hyperparameters() for load_module to rebuild it"
        )
    module = cls(**{"optimizer": None, **saved["hyper_parameters"], **overrides})
    own = {k.split(".", 1)[0] for k in module.state_dict()}
    state = {k: v for k, v in saved["state_dict"].items() if k.split(".", 1)[0] in own}
    skipped = sorted({k.split(".", 1)[0] for k in saved["state_dict"]} - own)
    if skipped:
        log.info("%s: skipped the state of %s (not in the rebuilt module)", ckpt_path, skipped)
    module.load_state_dict(
        check_fits(module, ckpt_path, {**saved, "state_dict": state})["state_dict"]
    )
    return module.eval()
