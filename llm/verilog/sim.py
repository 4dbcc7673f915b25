"""Compile and simulate a candidate design against its benchmark's test bench with Icarus
Verilog, in a fresh temporary folder, under a time limit, with forged pass lines detected.

Scoring conventions:

- RTLLM (arXiv:2308.05345): every test bench of v1.1 and v2 prints
  ``===========Your Design Passed===========`` (some with spaces around the words) when the
  design is right, and an ``Error``/``Failed``/``Test completed with N failures`` line
  otherwise. Pass = the test bench printed its pass line. Compiled with
  ``iverilog -g2012 -s <tb> -o sim testbench.v design.v``.
- VerilogEval (arXiv:2309.07544): ``iverilog -Wall -Winfloop -Wno-timescale -g2012 -s tb -o
  sim test.sv [ref.sv] design.sv``, ``vvp -n sim``; pass = ``Mismatches: 0 in N samples``.

Forgery: a design can ``$display`` the pass line itself. Before compiling, the harness
rewrites the test bench's own pass/summary string literal to begin with a random per-run
nonce; only a line carrying that nonce counts, so a line the design prints never passes. A
design whose source or output carries a pass line without the nonce is flagged
``forged=True`` (and never ``passed``). The test bench source is deleted before ``vvp``
runs, and ``-s <tb>`` keeps extra top-level modules of the design from being elaborated.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from effml.errors import DataError

from .benchmarks import Problem, instantiated_modules, module_names, strip_comments
from .tools import die_with_parent, find_tool

LOG_HEAD = 2_000  # characters kept from the start of a log
LOG_TAIL = 4_000  # characters kept from the end of a log
OUTPUT_LIMIT = 8_000_000  # bytes of simulator output before the run is stopped

_RTLLM_PASS = re.compile(r"=+\s*Your Design Passed\s*=+", re.I)
_VE_SUMMARY = re.compile(r"Mismatches:\s*(\d+)\s+in\s+(\d+)\s+samples")
_RTLLM_FAILS = re.compile(r"Test completed with\s*(\d+)\s*(?:/\s*(\d+))?\s*failures", re.I)
_PASS_TEXT = re.compile(r"Your\s+Design\s+Passed|Mismatches\s*:", re.I)


@dataclass
class SimResult:
    """The outcome of one simulation.

    Args:
        compiled: iverilog accepted the design with the test bench.
        passed: the test bench's own pass line was printed (never True when forged).
        forged: the design prints (or contains) a pass line of its own.
        timed_out: compile or simulation ran past the time limit and was killed.
        mismatches: VerilogEval mismatching samples, or RTLLM failures when the test bench
            reports a count; None when not reported.
        samples: VerilogEval samples (or RTLLM test count when reported), else None.
        compile_log: iverilog's output (truncated).
        sim_log: vvp's output (head and tail, a few KB).
        reason: why it did not pass, None when it passed.
        seconds: wall time of compile plus simulation.
        vcd_path: the VCD of the design's signals when asked for (``vcd=True``).
    """

    compiled: bool
    passed: bool
    forged: bool
    timed_out: bool
    mismatches: int | None
    samples: int | None
    compile_log: str
    sim_log: str
    reason: str | None
    seconds: float
    vcd_path: Path | None = None

    def as_dict(self) -> dict:
        """A JSON-ready dict (the VCD path as a string)."""
        d = dict(self.__dict__)
        d["vcd_path"] = str(self.vcd_path) if self.vcd_path else None
        return d


def _clip(text: str) -> str:
    if len(text) <= LOG_HEAD + LOG_TAIL:
        return text
    cut = len(text) - LOG_HEAD - LOG_TAIL
    return text[:LOG_HEAD] + f"\n... [{cut} characters cut] ...\n" + text[-LOG_TAIL:]


def _run(cmd: list[str], cwd: Path, timeout_s: float) -> tuple[int | None, str, bool, bool]:
    """Run ``cmd`` in its own process group with a minimal environment.

    Returns:
        (exit status or None when killed, output head+tail, timed out, output over the limit)
    """
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd), "LC_ALL": "C"}
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    head = bytearray()
    tail = bytearray()
    total = [0]
    over = [False]

    def reader() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(65536):
            total[0] += len(chunk)
            if len(head) < 65536:
                head.extend(chunk[: 65536 - len(head)])
            tail.extend(chunk)
            del tail[:-262144]
            if total[0] > OUTPUT_LIMIT and not over[0]:
                over[0] = True
                _kill(proc)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill(proc)
        proc.wait()
    except BaseException:  # Ctrl-C: its own process group never sees the SIGINT
        _kill(proc)
        raise
    thread.join(timeout=5)
    if total[0] <= len(head):
        text = head.decode("utf-8", "replace")
    else:
        text = (
            head.decode("utf-8", "replace")
            + f"\n... [{total[0] - len(head) - len(tail)} bytes not kept] ...\n"
            + tail.decode("utf-8", "replace")
        )
    rc = None if (timed_out or over[0]) else proc.returncode
    return rc, text, timed_out, over[0]


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _mark_testbench(problem: Problem, nonce: str) -> str:
    """The test bench with its pass (RTLLM) or summary (VerilogEval) literal nonce-tagged."""
    tb = problem.testbench
    if problem.scoring == "rtllm":
        pattern = re.compile(r'"([^"\n]*Your\s+Design\s+Passed[^"\n]*)"', re.I)
    else:
        pattern = re.compile(r'"(Mismatches:\s*%\d*d\s+in\s+%\d*d\s+samples[^"\n]*)"')
    marked, count = pattern.subn(lambda m: f'"{nonce} {m.group(1)}"', tb)
    if count == 0:
        raise DataError(
            f"{problem.benchmark}/{problem.id}: the test bench prints no "
            f"{'pass line' if problem.scoring == 'rtllm' else 'Mismatches summary'}; the harness "
            "cannot score it (check the benchmark files)"
        )
    return marked


def _dut_instance(problem: Problem) -> str | None:
    """The instance name of the design in the test bench (``top_module [#(..)] NAME (``)."""
    m = re.search(
        rf"(?<![\w$]){re.escape(problem.top_module)}\s*(?:#\s*\((?:[^()]|\([^()]*\))*\)\s*)?"
        r"([A-Za-z_][\w$]*)\s*\(",
        strip_comments(problem.testbench),
    )
    return m.group(1) if m else None


def _needs_reference(problem: Problem) -> bool:
    """Whether the test bench instantiates a module only the reference file defines
    (VerilogEval v2's ``RefModule``)."""
    wanted = set(instantiated_modules(problem.testbench)) - {problem.top_module}
    return bool(wanted & set(module_names(problem.reference)))


def forged_source(code: str) -> bool:
    """Whether a design's source (comments stripped) contains a pass line of its own."""
    return bool(_PASS_TEXT.search(strip_comments(code)))


def simulate(
    problem: Problem,
    code: str,
    timeout_s: float = 30.0,
    keep_dir: Path | None = None,
    vcd: bool = False,
) -> SimResult:
    """Compile ``code`` with the problem's test bench and simulate it.

    Args:
        problem: the benchmark problem (test bench, data files, scoring convention).
        code: the candidate design's Verilog source (model output: never run outside the
            simulator).
        timeout_s: time limit for compiling and for simulating (each).
        keep_dir: when given, the run folder (sources, logs, ``dump.vcd``) is copied here.
        vcd: dump the design's signals to ``dump.vcd`` (``$dumpvars`` of the design instance);
            needs ``keep_dir`` (the VCD is returned as ``keep_dir/dump.vcd``).

    Returns:
        the SimResult; ``passed`` only when the test bench's own pass line was printed.
    """
    iverilog, vvp = find_tool("iverilog"), find_tool("vvp")
    if vcd and keep_dir is None:
        raise ValueError("simulate(vcd=True) needs keep_dir: the VCD is kept there")
    start = time.monotonic()
    nonce = "EFFML" + secrets.token_hex(8)
    testbench = _mark_testbench(problem, nonce)
    tb_top = module_names(testbench)
    forged = forged_source(code)
    with tempfile.TemporaryDirectory(prefix="effml_sim_") as tmp:
        work = Path(tmp)
        for name, text in problem.files.items():
            (work / name).write_text(text)
        if problem.scoring == "rtllm":
            tb_name, top = "testbench.v", (tb_top[0] if tb_top else "tb")
            sources = [tb_name, "design.v"]
            flags = ["-g2012"]
        else:
            tb_name, top = "test.sv", "tb"
            sources = [tb_name] + (["ref.sv"] if _needs_reference(problem) else []) + ["design.sv"]
            flags = ["-Wall", "-Winfloop", "-Wno-timescale", "-g2012"]
            if "ref.sv" in sources:
                (work / "ref.sv").write_text(problem.reference)
        (work / tb_name).write_text(testbench)
        (work / sources[-1]).write_text(code)
        tops = ["-s", top]
        if vcd:
            inst = _dut_instance(problem)
            scope = f"{top}.{inst}" if inst else top
            (work / "effml_dump.v").write_text(
                'module effml_dump;\n  initial begin\n    $dumpfile("dump.vcd");\n'
                f"    $dumpvars(0, {scope});\n  end\nendmodule\n"
            )
            sources.append("effml_dump.v")
            tops += ["-s", "effml_dump"]
        rc, clog, c_to, _ = _run([iverilog, *flags, *tops, "-o", "sim", *sources], work, timeout_s)
        compiled = rc == 0 and (work / "sim").is_file()
        slog, s_to, over = "", False, False
        if compiled:
            # the design must not be able to read the nonce from the test bench source
            (work / tb_name).unlink()
            _, slog, s_to, over = _run([vvp, "-n", "sim"], work, timeout_s)
            (work / tb_name).write_text(testbench)
        vcd_path = None
        if keep_dir is not None:
            keep_dir = Path(keep_dir)
            keep_dir.mkdir(parents=True, exist_ok=True)
            (work / "compile.log").write_text(clog)
            (work / "sim.log").write_text(slog)
            for p in work.iterdir():
                if p.is_file() and p.name != "sim":
                    shutil.copy2(p, keep_dir / p.name)
            if vcd and (keep_dir / "dump.vcd").is_file():
                vcd_path = keep_dir / "dump.vcd"
    seconds = time.monotonic() - start
    return _score(
        problem, nonce, compiled, forged, c_to or s_to, over, clog, slog, seconds, vcd_path
    )


def _score(
    problem: Problem,
    nonce: str,
    compiled: bool,
    forged: bool,
    timed_out: bool,
    over: bool,
    clog: str,
    slog: str,
    seconds: float,
    vcd_path: Path | None,
) -> SimResult:
    """Read the pass line (the nonce-tagged one only) and say why a run did not pass."""
    mismatches = samples = None
    tb_pass = False
    for line in slog.splitlines():
        if nonce in line:
            if problem.scoring == "rtllm":
                tb_pass = tb_pass or bool(_RTLLM_PASS.search(line))
            elif m := _VE_SUMMARY.search(line):
                mismatches, samples = int(m.group(1)), int(m.group(2))
                tb_pass = mismatches == 0 and samples > 0
        elif _PASS_TEXT.search(line) or "EFFML" in line:
            forged = True
        if problem.scoring == "rtllm" and (m := _RTLLM_FAILS.search(line)) and nonce not in line:
            mismatches = int(m.group(1))
            samples = int(m.group(2)) if m.group(2) else None
    if compiled and tb_pass and problem.scoring == "rtllm" and mismatches is None:
        mismatches = 0
    clean = slog.replace(nonce + " ", "")
    passed = compiled and tb_pass and not forged and not timed_out and not over
    reason = None
    if not passed:
        if not compiled and timed_out:
            reason = "compile timed out"
        elif not compiled:
            errs = [
                ln.strip()
                for ln in clog.splitlines()
                if re.search(r"error|sorry|syntax", ln, re.I)
                and not re.match(r"\s*\d+ error\(s\)", ln)
            ]
            reason = "compile failed: " + (
                "; ".join(dict.fromkeys(errs[:3])) or clog.strip()[:300] or "iverilog failed"
            )
        elif forged:
            reason = "forged pass line: the design prints the test bench's pass line itself"
        elif timed_out:
            reason = "simulation timed out (killed)"
        elif over:
            reason = f"simulation output exceeded {OUTPUT_LIMIT} bytes (killed)"
        elif mismatches:
            reason = f"functional mismatch: {mismatches} failing" + (
                f" of {samples} samples" if samples else ""
            )
        else:
            reason = "the test bench did not print its pass line"
    return SimResult(
        compiled=compiled,
        passed=passed,
        forged=forged,
        timed_out=timed_out,
        mismatches=mismatches,
        samples=samples,
        compile_log=_clip(clog),
        sim_log=_clip(clean),
        reason=reason,
        seconds=seconds,
        vcd_path=vcd_path,
    )
