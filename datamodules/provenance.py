"""Where a datamodule's data came from: raw-file fingerprints, the record kept next to a cache,
and the plain word when a run reads a cache that was not built from ``DATA_DIR``.

A cache built from raw files keeps ``<cache>.source.json`` beside it: the folder (or URL) it
was built from and a fingerprint of the raw files (name, size, mtime). A loader compares the
record with the raw files it is about to use and rebuilds the cache when they differ; when the
data folder lacks the dataset but a cache built from another folder exists, it warns naming
both folders, or raises :class:`MissingDataError` with ``require_source=true``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from effml.errors import MissingDataError

log = logging.getLogger(__name__)

RECORD_SUFFIX = ".source.json"
# relative file name -> [size in bytes, mtime in ns]
Fingerprint = dict[str, list[int]]


def fingerprint(folder: Path, files: Iterable[Path] | None = None) -> Fingerprint:
    """Names (relative to ``folder``), sizes and mtimes of ``files``, links followed.

    Args:
        folder: the folder the names are relative to.
        files: the raw files; default every file under ``folder``.
    """
    paths = sorted(folder.rglob("*")) if files is None else sorted(files)
    prints: Fingerprint = {}
    for path in paths:
        if path.is_file():
            stat = path.stat()
            prints[path.relative_to(folder).as_posix()] = [stat.st_size, stat.st_mtime_ns]
    return prints


@dataclass(frozen=True)
class SourceRecord:
    """What a cache was built from: a folder or URL, and the raw files' fingerprint."""

    source: str
    files: Fingerprint


def record_path(cache: Path) -> Path:
    """The record of ``cache`` (a file or folder): ``<cache>.source.json`` beside it."""
    return cache.with_name(cache.name + RECORD_SUFFIX)


def read_record(cache: Path) -> SourceRecord | None:
    """The record of ``cache``, or None when there is none or it cannot be read."""
    try:
        stored = json.loads(record_path(cache).read_text())
        return SourceRecord(str(stored["source"]), dict(stored["files"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_record(cache: Path, source: str | Path, files: Fingerprint) -> None:
    """Write the record of ``cache`` atomically (a reader never sees half a file)."""
    path = record_path(cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps({"source": str(source), "files": files}, indent=1) + "\n")
    os.replace(partial, path)


def changed_files(old: Fingerprint, new: Fingerprint) -> str | None:
    """What differs between two fingerprints, in words, or None when they match."""
    if old == new:
        return None
    changes = []
    for name in sorted(old.keys() | new.keys()):
        if name not in old:
            changes.append(f"{name} is new")
        elif name not in new:
            changes.append(f"{name} is gone")
        elif old[name][0] != new[name][0]:
            changes.append(f"{name} changed size ({old[name][0]} -> {new[name][0]} bytes)")
        elif old[name] != new[name]:
            changes.append(f"{name} was modified")
    shown = ", ".join(changes[:3])
    return shown + (f" and {len(changes) - 3} more" if len(changes) > 3 else "")


def rebuild_reason(
    record: SourceRecord | None, source: str | Path, files: Fingerprint
) -> str | None:
    """Why a cache must be rebuilt from ``source`` with raw ``files``, or None if it is current."""
    if record is None:
        return "it has no source record"
    if record.source != str(source):
        return f"it was built from {record.source}"
    changes = changed_files(record.files, files)
    return f"the raw files changed since it was built: {changes}" if changes else None


def check_cache_source(
    dataset: str,
    data_dir: Path,
    expected: Path,
    cache: Path,
    built_from: str,
    require_source: bool,
) -> None:
    """Say that ``data_dir`` lacks ``dataset`` and the run reads ``cache`` instead.

    One WARNING naming both folders, or with ``require_source`` a MissingDataError naming
    both and the fix.

    Args:
        dataset: the dataset's name as the user knows it.
        data_dir: the data folder (``DATA_DIR`` / ``paths.data_dir``).
        expected: where in ``data_dir`` the dataset was looked for.
        cache: the cache the run would read.
        built_from: the folder or URL the cache was built from.
        require_source: raise instead of warning.
    """
    if require_source:
        raise MissingDataError(
            f"{dataset}: DATA_DIR={data_dir} has no {dataset} (looked in {expected}), and "
            f"datamodule.require_source=true forbids the cache {cache} built from {built_from}. "
            f"Fix: point DATA_DIR (or paths.data_dir) at the folder that holds {dataset} "
            f"(the cache came from {built_from}), or set datamodule.require_source=false "
            f"to use the cache."
        )
    log.warning(
        "%s: DATA_DIR=%s has no %s; using the cache %s built from %s "
        "(set datamodule.require_source=true to make this an error)",
        dataset,
        data_dir,
        dataset,
        cache,
        built_from,
    )


def failure_line(url: str, err: BaseException) -> str:
    """One line for a failed download: ``url: ErrorType: first line of the message``."""
    text = (str(err).strip().splitlines() or [""])[0]
    return f"{url}: {type(err).__name__}" + (f": {text}" if text else "")


def download_error(message: str, failures: list[tuple[str, BaseException]]) -> MissingDataError:
    """``message`` followed by one line per failed download (``url: reason``).

    Raise it ``from None``: the failures are in the message, not in chained tracebacks.
    """
    lines = "\n".join(f"  {failure_line(url, err)}" for url, err in failures)
    return MissingDataError(f"{message}\nDownloads tried:\n{lines}")
