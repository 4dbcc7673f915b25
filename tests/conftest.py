"""Shared test set-up: project root, data location, composing the config, running ``run.py``,
reading back what a W&B run received."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Triton kernels must see this before any @triton.jit runs (CPU interpreter).
os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
os.environ["EFFML_ROOT"] = str(ROOT)
# no W&B network traffic or prompts from any test
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402


def compose_cfg(overrides: list[str]) -> DictConfig:
    """The composed config, as run.py would see it (``hydra:`` interpolations resolvable)."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def data_dir() -> Path | None:
    """``DATA_DIR`` resolved, or None when unset."""
    value = os.environ.get("DATA_DIR")
    return Path(value).resolve() if value else None


def require_data(*relative: str) -> Path:
    """The data folder, or skip the test naming what is missing and how to provide it."""
    root = data_dir()
    if root is None:
        pytest.skip("DATA_DIR is not set (CI sets DATA_DIR=../shared/data)")
    for rel in relative:
        if not (root / rel).exists():
            pytest.skip(f"{root / rel} is absent: point DATA_DIR at a folder that has it")
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One processed-data cache for the whole session (never inside DATA_DIR)."""
    return tmp_path_factory.mktemp("cache")


def run_cli(
    args: list[str],
    log_dir: Path,
    cache: Path,
    timeout: int = 600,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python run.py ARGS`` with runs under ``log_dir``; fail with its output on error."""
    cmd = [
        sys.executable,
        str(ROOT / "run.py"),
        *args,
        f"paths.log_dir={log_dir}",
        f"paths.cache_dir={cache}",
    ]
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return proc


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    """Fail with the command's output when it did not exit 0."""
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}\n"
        f"--- stderr ---\n{proc.stderr[-8000:]}"
    )


def run_folder(proc: subprocess.CompletedProcess) -> Path:
    """The run folder ``run.py`` printed last."""
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("Run folder: ")]
    assert lines, f"no 'Run folder:' line in\n{proc.stdout[-3000:]}"
    return Path(lines[-1].removeprefix("Run folder: "))


# The LevelDB-style log a W&B run writes (run-<id>.wandb): a 7-byte file header, then 32 KiB
# blocks of chunks, each with a 7-byte header (CRC32, length, type); a block's tail shorter
# than a header is padding.
WANDB_BLOCK = 32768
WANDB_HEADER = struct.Struct("<IHB")
WANDB_FULL, WANDB_LAST = 1, 4


def wandb_records(path: Path) -> list[Any]:
    """The protobuf records of a W&B run file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    records, pending, pos = [], b"", 7
    while pos + WANDB_HEADER.size <= len(data):
        left = WANDB_BLOCK - pos % WANDB_BLOCK
        _, length, kind = WANDB_HEADER.unpack_from(data, pos)
        if left < WANDB_HEADER.size or (length == 0 and kind == 0):
            pos += left
            continue
        start = pos + WANDB_HEADER.size
        if start + length > len(data):
            break  # the writer is still at it
        pending += data[start : start + length]
        pos = start + length
        if kind in (WANDB_FULL, WANDB_LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def read_wandb_run(run_dir: Path) -> dict[str, Any]:
    """What the one W&B run under ``run_dir`` received: ``summary`` (top-level key -> value
    or {nested key: value}), ``files`` (paths it saved), ``tags`` and ``config`` (key -> value)."""
    runs = list(run_dir.rglob("wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == 1, f"expected one offline W&B run under {run_dir}, found {runs}"
    # wandb.finish() returns before W&B's writer process has written the run's last records
    deadline = time.monotonic() + 60
    records = wandb_records(runs[0])
    while not any(r.WhichOneof("record_type") == "exit" for r in records):
        assert time.monotonic() < deadline, f"{runs[0]} has no exit record after 60 s"
        time.sleep(0.1)
        records = wandb_records(runs[0])
    seen: dict[str, Any] = {"summary": {}, "files": [], "tags": [], "config": {}}
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            seen["tags"] = list(record.run.tags)
            for item in record.run.config.update:
                seen["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                seen["config"][item.key] = json.loads(item.value_json)
        elif kind == "files":
            seen["files"] += [f.path for f in record.files.files]
        elif kind == "summary":
            for item in record.summary.update:
                keys = [item.key] if item.key else list(item.nested_key)
                value = json.loads(item.value_json)
                if len(keys) == 1:
                    seen["summary"][keys[0]] = value
                else:
                    seen["summary"].setdefault(keys[0], {})[".".join(keys[1:])] = value
    return seen
