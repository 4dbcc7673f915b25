"""The error boundary: every user-error class ends the run with exit status 2 and one line on
stderr (what, where, the fix), the same line in ``run.log`` and a ``FAILED`` file, no
traceback; a bug keeps its traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, compose_cfg, require_data, run_cli
from omegaconf import open_dict

from effml.errors import CheckpointError, ConfigError, MissingDataError, UserError
from tasks.boundary import FAILED_FILE, USER_ERROR_EXIT, run_guarded, user_error

CORA = "Planetoid/Cora/raw/ind.cora.graph"
SHORT = ["experiment=sage_cora", "trainer=cpu", "trainer.max_epochs=1"]


def only_run(log_dir: Path) -> Path:
    runs = list(log_dir.glob("*/runs/*"))
    assert len(runs) == 1, runs
    return runs[0]


def assert_user_error(proc: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit 2, one ``Error:`` message (its first line holds every ``expected`` text; a missing
    dataset adds one line per failed download) ending stderr, no traceback; the message."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == USER_ERROR_EXIT, f"exit {proc.returncode}\n{out[-4000:]}"
    assert "Traceback" not in out, out[-4000:]
    lines = proc.stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Error: ")]
    assert len(starts) == 1, proc.stderr[-4000:]
    message = "\n".join(lines[starts[0] :]).removeprefix("Error: ").strip()
    for text in expected:
        assert text in message.splitlines()[0], message
    return message


def assert_recorded(run: Path, message: str) -> None:
    """The run folder says it failed and its log holds the message; nothing else is removed."""
    assert (run / FAILED_FILE).read_text().strip() == message
    assert message in (run / "run.log").read_text()
    assert (run / ".hydra" / "config.yaml").is_file()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("seed=-1", ["seed=-1", "e.g. seed=0"]),
        ("trainer.max_epochs=-7", ["trainer.max_epochs=-7", "e.g. trainer.max_epochs="]),
        ("model.dropout=1.5", ["model.dropout=1.5", "e.g. model.dropout="]),
    ],
)
def test_bad_config_value(
    override: str, expected: list[str], tmp_path: Path, cache_dir: Path
) -> None:
    # an empty data folder: the value is rejected before any data is looked for
    empty = tmp_path / "no-data"
    empty.mkdir()
    proc = run_cli([*SHORT, override], tmp_path / "logs", cache_dir, env={"DATA_DIR": str(empty)})
    message = assert_user_error(proc, *expected)
    run = only_run(tmp_path / "logs")
    assert_recorded(run, message)
    assert not (run / "checkpoints").exists()


def test_unknown_key_suggests_the_nearest(tmp_path: Path, cache_dir: Path) -> None:
    proc = run_cli(["experiment=sage_cora", "model.hidden_chanels=8"], tmp_path / "logs", cache_dir)
    assert_user_error(proc, "model.hidden_chanels", "Did you mean `model.hidden_channels`")
    assert not (tmp_path / "logs").exists()  # nothing was started


def test_unknown_option_suggests_the_nearest(tmp_path: Path, cache_dir: Path) -> None:
    proc = run_cli(["experiment=sage_corx"], tmp_path / "logs", cache_dir)
    assert_user_error(proc, "experiment=sage_corx", "Did you mean experiment=sage_cora")


def test_missing_data(tmp_path: Path) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    proc = run_cli(SHORT, tmp_path / "logs", tmp_path / "cache", env={"DATA_DIR": str(empty)})
    message = assert_user_error(proc, str(empty), "DATA_DIR")
    assert_recorded(only_run(tmp_path / "logs"), message)


@pytest.mark.parametrize("content", [b"not a checkpoint at all", None])
def test_bad_checkpoint(content: bytes | None, tmp_path: Path, cache_dir: Path) -> None:
    ckpt = tmp_path / "model.ckpt"
    if content is not None:
        ckpt.write_bytes(content)
    proc = run_cli([*SHORT, f"ckpt_path={ckpt}"], tmp_path / "logs", cache_dir)
    message = assert_user_error(proc, str(ckpt))
    assert_recorded(only_run(tmp_path / "logs"), message)


def test_unwritable_output_folder(tmp_path: Path, cache_dir: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("runs cannot go under a file\n")
    proc = run_cli(SHORT, blocker / "logs", cache_dir)
    assert_user_error(proc, str(blocker), "paths.log_dir=")


def test_verbose_shows_the_traceback(tmp_path: Path, cache_dir: Path) -> None:
    proc = run_cli([*SHORT, "seed=-1", "verbose=true"], tmp_path / "logs", cache_dir)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "seed=-1" in proc.stderr
    assert (only_run(tmp_path / "logs") / FAILED_FILE).is_file()


def run_patched(patch: str, argv: list[str], data: Path) -> subprocess.CompletedProcess:
    """``python run.py ARGV`` in a process where ``patch`` (Python source) ran first."""
    script = f"import runpy, sys\n{textwrap.dedent(patch)}\nsys.argv = {['run.py', *argv]!r}\n"
    script += 'runpy.run_path("run.py", run_name="__main__")\n'
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DATA_DIR": str(data)},
    )


def test_a_bug_keeps_its_traceback(tmp_path: Path, cache_dir: Path) -> None:
    """A bug (here a ZeroDivisionError in building the model) is not dressed as a user error."""
    data = require_data(CORA)
    argv = [*SHORT, f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={cache_dir}"]
    patch = """
        import tasks.train

        def broken(*args, **kwargs):
            return 1 / 0

        tasks.train.build_model = broken
    """
    proc = run_patched(patch, argv, data)
    assert proc.returncode == 1, proc.stderr[-4000:]
    assert "Traceback" in proc.stderr and "ZeroDivisionError" in proc.stderr
    run = only_run(tmp_path / "logs")
    assert (run / FAILED_FILE).read_text().startswith("bug: ZeroDivisionError")
    assert "ZeroDivisionError" in (run / "run.log").read_text()


def test_missing_tool(tmp_path: Path, cache_dir: Path) -> None:
    """A run whose model needs an optional package that is not installed (SpikingJelly,
    hidden from the import system here) names the package and the command that installs it."""
    data = require_data("MNIST/raw")
    logs = tmp_path / "logs"
    argv = ["experiment=lif_mnist", "trainer=cpu", "+trainer.fast_dev_run=true"]
    argv += [f"paths.log_dir={logs}", f"paths.cache_dir={cache_dir}"]
    # importing SpikingJelly now fails as if it were absent
    proc = run_patched('sys.modules["spikingjelly"] = None', argv, data)
    message = assert_user_error(proc, "SpikingJelly", "pip install -e '.[snn]'")
    assert_recorded(only_run(logs), message)


def test_missing_optional_package_is_a_user_error(tmp_path: Path) -> None:
    missing = ModuleNotFoundError("No module named 'tenseal'", name="tenseal")
    found = user_error(missing)
    assert isinstance(found, UserError) and "pip install -e '.[he]'" in str(found)
    assert user_error(ModuleNotFoundError("No module named 'numpyy'", name="numpyy")) is None


def test_wrapped_user_errors_are_found() -> None:
    try:
        try:
            raise MissingDataError("no Cora in /x")
        except MissingDataError as inner:
            raise RuntimeError("Error in call to target") from inner
    except RuntimeError as outer:
        assert isinstance(user_error(outer), MissingDataError)
    assert user_error(ValueError("a bug's ValueError")) is None


def test_run_guarded_in_python(tmp_path: Path) -> None:
    cfg = compose_cfg([f"paths.output_dir={tmp_path}"])
    with open_dict(cfg):
        cfg.verbose = False

    def fails() -> None:
        raise CheckpointError(f"{tmp_path / 'x.ckpt'}: truncated; train again or pick another")

    with pytest.raises(CheckpointError):  # Python callers get the exception itself
        run_guarded(cfg, fails)
    assert "x.ckpt: truncated" in (tmp_path / FAILED_FILE).read_text()


def test_config_error_text() -> None:
    err = ConfigError("k", 1000, "must be <= hidden_channels=16", example=8)
    assert str(err.with_prefix("model.")) == (
        "model.k=1000: must be <= hidden_channels=16; e.g. model.k=8"
    )
    assert isinstance(err, ValueError)
