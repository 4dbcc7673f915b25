"""Shared test set-up: project root, data location, and a helper that runs ``run.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Triton kernels must see this before any @triton.jit runs (CPU interpreter).
os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parents[1]
os.environ["EFFML_ROOT"] = str(ROOT)
# no W&B network traffic or prompts from any test
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import pytest  # noqa: E402


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
