"""The run's error boundary: a user error ends the run with one clear message and exit status
2; a bug keeps its traceback; Ctrl-C stops gracefully and prints the command that resumes.

A user error is an :class:`effml.errors.UserError` (raised anywhere, possibly wrapped by
Hydra's ``instantiate``), a missing optional package, or a config Hydra cannot compose. Its
message goes to stderr and to the run's ``run.log``, and the run folder gets a ``FAILED`` file
holding it; nothing else in the folder is touched. ``HYDRA_FULL_ERROR=1`` or ``verbose=true``
shows the full traceback instead.

This module imports neither torch nor Lightning: ``run.py`` installs the composition-error
report before Hydra starts.
"""

from __future__ import annotations

import difflib
import errno
import logging
import os
import shlex
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from effml.errors import OutputDirError, UserError

log = logging.getLogger(__name__)
FAILED_FILE = "FAILED"
INTERRUPTED_FILE = "INTERRUPTED"
USER_ERROR_EXIT = 2
INTERRUPT_EXIT = 130
# optional packages and the extra of setup.cfg that installs each
# what creating the run folder raises when it cannot be written
OUTPUT_ERRORS = (PermissionError, NotADirectoryError, FileExistsError)
OPTIONAL_PACKAGES = {"tenseal": "he", "spikingjelly": "snn", "transformers": "llm", "gguf": "llm"}


class _Cli:
    """Whether ``run.py`` installed the report (a CLI run: user errors exit 2)."""

    active = False


class _Interrupt:
    """Whether SIGINT arrived during the run (Lightning turns Ctrl-C into ``sys.exit(1)``)."""

    seen = False


def full_errors(cfg: Any = None) -> bool:
    """Whether the user asked for full tracebacks (``HYDRA_FULL_ERROR=1`` or ``verbose=true``)."""
    if os.environ.get("HYDRA_FULL_ERROR", "") not in ("", "0"):
        return True
    return bool(cfg is not None and cfg.get("verbose", False))


def causes(err: BaseException) -> Iterator[BaseException]:
    """``err`` and the exceptions it was raised from or during, innermost last."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def user_error(err: BaseException) -> UserError | None:
    """The user error ``err`` is or wraps (Hydra wraps constructor errors); None for a bug."""
    for inner in causes(err):
        if isinstance(inner, UserError):
            return inner
        if isinstance(inner, ModuleNotFoundError) and inner.name in OPTIONAL_PACKAGES:
            extra = OPTIONAL_PACKAGES[inner.name]
            return UserError(
                f"the optional package {inner.name} is not installed; install it with "
                f"pip install -e '.[{extra}]' (or make setup, which installs every extra)"
            )
    return None


def run_guarded(
    cfg: Any, run: Callable[[], Any], resume: Callable[[], list[str] | None] | None = None
) -> Any:
    """Call ``run()`` inside the boundary.

    Args:
        cfg: the run config (its ``paths.output_dir`` gets the FAILED/INTERRUPTED file).
        run: the whole run.
        resume: gives the overrides that resume this run (``["ckpt_path=<folder>"]``),
            printed after Ctrl-C; it (or what it returns) is None when the run cannot resume.
    """
    run_dir = Path(cfg.paths.output_dir)
    previous = _install_sigint_flag()
    try:
        return run()
    except BaseException as err:
        if _Interrupt.seen and isinstance(err, (KeyboardInterrupt, SystemExit)):
            _report_interrupt(run_dir, resume)
            raise SystemExit(INTERRUPT_EXIT) from None
        if isinstance(err, (SystemExit, KeyboardInterrupt)):
            raise
        found = user_error(err)
        if found is None:
            _mark_failed(run_dir, f"bug: {type(err).__name__}: {err}\nThe traceback is in run.log.")
            _log_to_files(logging.ERROR, "The run failed with a bug", exc_info=err)
            err.effml_reported = True  # the CLI report must not reclassify it
            raise
        message = str(found)
        _mark_failed(run_dir, message)
        _log_to_files(logging.ERROR, f"Error: {message}", exc_info=err)
        err.effml_user_message = message
        err.effml_full_traceback = full_errors(cfg)
        if not _Cli.active or err.effml_full_traceback:
            raise  # Python callers get the exception; verbose CLI runs its traceback
        sys.stderr.write(f"Error: {message}\n")
        sys.stderr.flush()
        raise SystemExit(USER_ERROR_EXIT) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def resume_command(overrides: list[str]) -> str:
    """``python run.py`` with this run's overrides, the ``overrides`` given replacing theirs."""
    try:
        from hydra.core.hydra_config import HydraConfig

        given = list(HydraConfig.get().overrides.task)
    except ValueError:  # no Hydra run (called from Python)
        given = []
    replaced = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    kept = [o for o in given if o.split("=", 1)[0].lstrip("+~") not in replaced]
    return " ".join(["python", "run.py", *(shlex.quote(o) for o in kept + overrides)])


def _install_sigint_flag() -> Any:
    """Note Ctrl-C, then let Python raise KeyboardInterrupt as usual (main thread only)."""
    _Interrupt.seen = False
    if sys.platform == "win32" or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return None

    def note(signum: int, frame: Any) -> None:
        _Interrupt.seen = True
        signal.default_int_handler(signum, frame)

    try:
        return signal.signal(signal.SIGINT, note)
    except ValueError:  # not the main thread
        return None


def _report_interrupt(run_dir: Path, resume: Callable[[], list[str] | None] | None) -> None:
    try:
        overrides = resume() if resume is not None else None
    except Exception:  # the interrupt is what to report; a resume hint is a courtesy
        overrides = None
    if overrides is None:
        text = "Interrupted (Ctrl-C). This task does not resume; run it again."
    else:
        text = f"Interrupted (Ctrl-C). Resume with:\n  {resume_command(overrides)}"
    _write_marker(run_dir / INTERRUPTED_FILE, text)
    _log_to_files(logging.WARNING, text)
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _mark_failed(run_dir: Path, message: str) -> None:
    _write_marker(run_dir / FAILED_FILE, message)


def _write_marker(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.rstrip("\n") + "\n")
    except OSError as err:  # an unwritable folder must not hide the error being reported
        sys.stderr.write(f"(could not write {path}: {err.strerror})\n")


def _log_to_files(level: int, message: str, exc_info: BaseException | None = None) -> None:
    """Write to the log files (``run.log``) only; the console gets the one-line message."""
    record = log.makeRecord(log.name, level, __file__, 0, message, (), None)
    if exc_info is not None:
        record.exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
            handler.flush()


def install_cli_report() -> None:
    """Make Hydra report config-composition errors as user errors: the message with the
    nearest valid keys or options, exit status 2, no traceback."""
    from hydra._internal import utils as hydra_utils

    original = hydra_utils.run_and_report

    def run_and_report(func: Callable[[], Any]) -> Any:
        try:
            return func()
        except Exception as err:
            if getattr(err, "effml_full_traceback", False):  # verbose=true: a user error in full
                traceback.print_exception(err)
                sys.exit(USER_ERROR_EXIT)
            message = getattr(err, "effml_user_message", None)
            if message is None and not full_errors():
                message = cli_error_message(err)
            if message is None:
                return original(lambda error=err: _reraise(error))
            sys.stderr.write(f"Error: {message}\n")
            sys.stderr.flush()
            sys.exit(USER_ERROR_EXIT)

    hydra_utils.run_and_report = run_and_report
    _Cli.active = True


def _reraise(err: BaseException) -> Any:
    raise err


def cli_error_message(err: BaseException) -> str | None:
    """The user-facing message of an error raised before or around the task; None for a bug
    (or an error the task's boundary has reported already)."""
    from hydra.errors import (
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
    )

    if getattr(err, "effml_reported", False):
        return None
    if isinstance(err, MissingConfigException) and err.options:
        group, _, name = (err.missing_cfg_file or "").rpartition("/")
        near = difflib.get_close_matches(name, err.options, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(f'{group}={n}' for n in near)}?" if near else ""
        return f"{group}={name}: no such option.{hint} Options: {', '.join(err.options)}"
    if isinstance(err, ConfigCompositionException):
        return _composition_message(err)
    if isinstance(err, OverrideParseException):
        return f"{str(err).strip()} (see `python run.py --help` for the override syntax)"
    if isinstance(err, OUTPUT_ERRORS) or getattr(err, "errno", None) in (errno.EROFS, errno.ENOSPC):
        target = err.filename or "the run folder"
        return str(
            OutputDirError(
                f"cannot write {target}: {err.strerror}. Point the runs at a writable folder: "
                "paths.log_dir=<folder> (or hydra.run.dir=<folder>)"
            )
        )
    found = user_error(err)
    return str(found) if found is not None else None


def _composition_message(err: BaseException) -> str:
    cause = err.__cause__
    first = str(err).strip().splitlines()[0]
    full_key = getattr(cause, "full_key", None)
    parent = getattr(cause, "parent_node", None)
    if full_key and parent is not None and hasattr(parent, "keys"):
        key = str(getattr(cause, "key", full_key))
        prefix = full_key[: -len(key)] if full_key.endswith(key) else ""
        valid = [str(k) for k in parent]
        near = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
        text = f"{full_key}: no such key in the config."
        if near:
            text += f" Did you mean {' or '.join(f'`{prefix}{n}`' for n in near)}?"
        text += f" To add a new key, use +{full_key}=<value>."
        return text
    detail = str(cause).strip().splitlines()[0] if cause is not None else ""
    return f"{first} {detail}".strip()
