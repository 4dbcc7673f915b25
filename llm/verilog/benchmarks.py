"""Verilog benchmark loaders: RTLLM v1.1 and v2 (arXiv:2308.05345), VerilogEval v1 Human and
Machine and VerilogEval v2 spec-to-RTL (arXiv:2309.07544).

Every loader returns :class:`Problem` records with the prompt the model gets, the test bench,
the benchmark's own reference design and the extra files the test bench reads, so that the
simulator (``llm.verilog.sim``) needs nothing else.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from effml.errors import ConfigError, DataError, MissingDataError

# benchmark name -> folder under $DATA_DIR/verilog
FOLDERS: dict[str, str] = {
    "rtllm_v1.1": "rtllm-v1.1",
    "rtllm_v2": "rtllm-v2",
    "verilogeval_v1_human": "verilogeval-v1",
    "verilogeval_v1_machine": "verilogeval-v1",
    "verilogeval_v2": "verilogeval-v2-spec-to-rtl",
}


@dataclass(frozen=True)
class Problem:
    """One benchmark problem: what the model is asked and how its answer is checked.

    Args:
        id: the problem's name in its benchmark (RTLLM folder, VerilogEval task id).
        benchmark: the benchmark name (a key of ``FOLDERS``).
        prompt: the natural-language task the model gets.
        module_header: the module header the answer must complete (VerilogEval v1), else None.
        top_module: the module name the test bench instantiates.
        testbench: the test bench source.
        reference: the benchmark's own reference design.
        scoring: ``"rtllm"`` (the test bench prints its pass line) or ``"verilogeval"``
            (``Mismatches: 0 in N samples``).
        files: extra files the test bench reads (name -> text), e.g. ``$readmemh`` data.
        category: the RTLLM v2 category folder (``Arithmetic/Adder``), else None.
    """

    id: str
    benchmark: str
    prompt: str
    module_header: str | None
    top_module: str
    testbench: str
    reference: str
    scoring: Literal["rtllm", "verilogeval"]
    files: dict[str, str] = field(default_factory=dict)
    category: str | None = None


_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_MODULE = re.compile(r"\bmodule\s+([A-Za-z_][\w$]*)")


def strip_comments(text: str) -> str:
    """Verilog source without ``//`` and ``/* */`` comments."""
    return _COMMENT.sub(" ", text)


def module_names(text: str) -> list[str]:
    """The names of the modules a Verilog source defines, in order."""
    return _MODULE.findall(strip_comments(text))


def _instantiated(name: str, text: str) -> bool:
    """Whether ``text`` instantiates module ``name`` (``name [#(...)] inst (``)."""
    pattern = rf"(?<![\w$]){re.escape(name)}\s*(#\s*\(.*?\)\s*)?[A-Za-z_][\w$]*\s*\("
    return re.search(pattern, strip_comments(text), re.S) is not None


_KEYWORDS = {
    "module",
    "begin",
    "end",
    "if",
    "else",
    "for",
    "while",
    "case",
    "always",
    "initial",
    "assign",
    "wire",
    "reg",
    "integer",
    "input",
    "output",
    "inout",
    "task",
    "function",
    "repeat",
    "forever",
    "fork",
    "join",
    "localparam",
    "parameter",
    "genvar",
    "generate",
    "logic",
    "bit",
    "int",
    "return",
    "wait",
    "posedge",
    "negedge",
    "or",
    "and",
    "not",
}
_INSTANCE = re.compile(
    r"(?:^|;|\bend\b|\bbegin\b)\s*([A-Za-z_][\w$]*)\b\s*(?:#\s*\((?:[^()]|\([^()]*\))*\)\s*)?"
    r"([A-Za-z_][\w$]*)\s*\(",
    re.M,
)


def instantiated_modules(text: str) -> list[str]:
    """The module names a Verilog source instantiates and does not define, in order."""
    body = strip_comments(text)
    defined = set(module_names(body))
    seen: list[str] = []
    for m in _INSTANCE.finditer(body):
        name = m.group(1)
        if name in _KEYWORDS or name in defined or name.startswith("$") or name in seen:
            continue
        seen.append(name)
    return seen


def _rtllm_top(reference: str, testbench: str, where: Path) -> tuple[str, str]:
    """The module the test bench instantiates, and the reference renamed to it when the
    reference calls it otherwise (RTLLM names many references ``verified_<name>``)."""
    names = module_names(reference)
    if not names:
        raise DataError(f"{where}: the reference design defines no module")
    used = instantiated_modules(testbench)
    if not used:
        raise DataError(f"{where}: the test bench instantiates no module")
    top = next((u for u in used if u in names), used[0])
    if top in names:
        return top, reference
    # the reference's top: the module no other reference module instantiates
    roots = [
        n
        for n in names
        if not any(n in instantiated_modules(_module_body(reference, m)) for m in names if m != n)
    ]
    if len(roots) != 1:
        raise DataError(
            f"{where}: the test bench instantiates {top} but the reference defines {names}"
        )
    renamed = re.sub(rf"(\bmodule\s+){re.escape(roots[0])}\b", rf"\g<1>{top}", reference)
    return top, renamed


def _module_body(text: str, name: str) -> str:
    """The source of module ``name`` in ``text`` (up to its ``endmodule``), or ''."""
    m = re.search(rf"\bmodule\s+{re.escape(name)}\b.*?\bendmodule\b", strip_comments(text), re.S)
    return m.group(0) if m else ""


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _default_path(name: str) -> Path:
    root = os.environ.get("DATA_DIR")
    if not root:
        raise MissingDataError(
            f"benchmark {name}: DATA_DIR is not set; set DATA_DIR to the data folder "
            f"(it holds verilog/{FOLDERS[name]}) or give benchmark.path=/path/to/{FOLDERS[name]}"
        )
    return Path(root) / "verilog" / FOLDERS[name]


def _rtllm_problem(folder: Path, benchmark: str, category: str | None) -> Problem:
    """One RTLLM problem folder: design_description.txt, testbench.v, verified_*.v, data."""
    verified = sorted(folder.glob("verified_*.v"))
    if len(verified) != 1:
        raise DataError(
            f"{folder}: expected one verified_<name>.v reference design, found "
            f"{[p.name for p in verified] or 'none'}"
        )
    testbench = _read(folder / "testbench.v")
    top, reference = _rtllm_top(_read(verified[0]), testbench, folder)
    files = {
        p.name: _read(p)
        for p in sorted(folder.iterdir())
        if p.is_file()
        and p.name not in ("design_description.txt", "testbench.v")
        and p != verified[0]
        and p.suffix in (".txt", ".dat", ".hex", ".mem", ".bin")
    }
    prompt = _read(folder / "design_description.txt").strip() + "\n"
    named = re.search(r"[Mm]odule name:?\s*([A-Za-z_][\w$]*)", prompt)
    if named and named.group(1) != top:
        # the description names the module otherwise than the test bench (RTLLM v2
        # freq_divbyeven, fixed_point_substractor): say the name the test bench needs
        prompt += f"\nNote: the test bench instantiates this module as `{top}`; name it so.\n"
    return Problem(
        id=folder.name,
        benchmark=benchmark,
        prompt=prompt,
        module_header=None,
        top_module=top,
        testbench=testbench,
        reference=reference,
        scoring="rtllm",
        files=files,
        category=category,
    )


def _is_rtllm_folder(p: Path) -> bool:
    return (p / "design_description.txt").is_file() and (p / "testbench.v").is_file()


def load_rtllm(path: Path, benchmark: str) -> list[Problem]:
    """RTLLM v1.1 (flat problem folders) or v2 (problem folders under category folders)."""
    found = sorted(
        {p.parent for p in path.rglob("design_description.txt") if _is_rtllm_folder(p.parent)}
    )
    # archived model outputs (_chatgpt4/...) are answers, not problems
    found = [
        p for p in found if not any(part.startswith("_") for part in p.relative_to(path).parts)
    ]
    if not found:
        raise DataError(
            f"benchmark.path={path}: expected RTLLM problem folders holding "
            f"design_description.txt, testbench.v and verified_<name>.v; found "
            f"{sorted(p.name for p in path.iterdir())[:10]}"
        )
    problems = []
    for folder in found:
        rel = folder.relative_to(path)
        category = str(rel.parent) if len(rel.parts) > 1 else None
        problems.append(_rtllm_problem(folder, benchmark, category))
    ids = [p.id for p in problems]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise DataError(f"benchmark.path={path}: problem names appear twice: {dup}")
    return problems


def _jsonl(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(_read(path).splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not a JSON line ({e})") from e
    return rows


def load_verilogeval_v1(path: Path, benchmark: str) -> list[Problem]:
    """VerilogEval v1: ``data/VerilogEval_<Set>.jsonl`` (task_id, prompt, canonical_solution,
    test) and ``descriptions/VerilogDescription_<Set>.jsonl`` (task_id, detail_description)."""
    which = "Human" if benchmark.endswith("human") else "Machine"
    data = path / "data" / f"VerilogEval_{which}.jsonl"
    desc = path / "descriptions" / f"VerilogDescription_{which}.jsonl"
    if not data.is_file() or not desc.is_file():
        raise DataError(
            f"benchmark.path={path}: expected VerilogEval v1 files data/VerilogEval_{which}.jsonl"
            f" and descriptions/VerilogDescription_{which}.jsonl; found "
            f"{sorted(str(p.relative_to(path)) for p in path.rglob('*.jsonl')) or 'no .jsonl'}"
        )
    descriptions = {}
    for row in _jsonl(desc):
        descriptions[row["task_id"]] = row["detail_description"]
    problems = []
    for row in _jsonl(data):
        missing = {"task_id", "prompt", "canonical_solution", "test"} - set(row)
        if missing:
            raise DataError(f"{data}: a row lacks {sorted(missing)}: {str(row)[:120]}")
        tid = row["task_id"]
        if tid not in descriptions:
            raise DataError(f"{desc}: no description for task {tid}")
        header = row["prompt"]
        problems.append(
            Problem(
                id=tid,
                benchmark=benchmark,
                prompt=descriptions[tid].strip() + "\n\n" + header,
                module_header=header,
                top_module=(module_names(header) or ["top_module"])[0],
                testbench=row["test"],
                reference=header + row["canonical_solution"],
                scoring="verilogeval",
            )
        )
    return problems


def load_verilogeval_v2(path: Path, benchmark: str) -> list[Problem]:
    """VerilogEval v2 spec-to-RTL: ``ProbNNN_<name>_{prompt.txt,ref.sv,test.sv}``."""
    folder = path / "dataset_spec-to-rtl" if (path / "dataset_spec-to-rtl").is_dir() else path
    prompts = sorted(folder.glob("Prob*_prompt.txt"))
    if not prompts:
        raise DataError(
            f"benchmark.path={path}: expected VerilogEval v2 files ProbNNN_<name>_prompt.txt, "
            f"_ref.sv and _test.sv (in it or in dataset_spec-to-rtl/); found "
            f"{sorted(p.name for p in path.iterdir())[:10]}"
        )
    problems = []
    for p in prompts:
        pid = p.name[: -len("_prompt.txt")]
        ref, test = folder / f"{pid}_ref.sv", folder / f"{pid}_test.sv"
        if not ref.is_file() or not test.is_file():
            raise DataError(f"{folder}: {pid} lacks {ref.name} or {test.name}")
        problems.append(
            Problem(
                id=pid,
                benchmark=benchmark,
                prompt=_read(p).strip() + "\n",
                module_header=None,
                top_module="TopModule",
                testbench=_read(test),
                reference=_read(ref),
                scoring="verilogeval",
            )
        )
    return problems


LOADERS = {
    "rtllm_v1.1": load_rtllm,
    "rtllm_v2": load_rtllm,
    "verilogeval_v1_human": load_verilogeval_v1,
    "verilogeval_v1_machine": load_verilogeval_v1,
    "verilogeval_v2": load_verilogeval_v2,
}


def load_benchmark(
    name: str,
    path: str | Path | None = None,
    problems: list[str] | None = None,
    limit: int | None = None,
) -> list[Problem]:
    """The problems of a benchmark, optionally a chosen subset.

    Args:
        name: one of ``rtllm_v1.1``, ``rtllm_v2``, ``verilogeval_v1_human``,
            ``verilogeval_v1_machine``, ``verilogeval_v2``.
        path: the benchmark folder; default ``$DATA_DIR/verilog/<folder>``.
        problems: problem ids to keep (in the benchmark's order); None keeps all.
        limit: keep at most this many problems (after ``problems``).

    Returns:
        the problems, in a stable order.
    """
    if name not in LOADERS:
        raise ConfigError(
            "benchmark.name",
            name,
            f"is not a known benchmark ({', '.join(LOADERS)})",
            example="rtllm_v1.1",
        )
    root = Path(path).expanduser() if path is not None else _default_path(name)
    if not root.is_dir():
        raise MissingDataError(
            f"benchmark {name}: {root} does not exist or is not a folder; set DATA_DIR so that "
            f"$DATA_DIR/verilog/{FOLDERS[name]} exists, or give benchmark.path=/path/to/"
            f"{FOLDERS[name]}"
        )
    items = LOADERS[name](root, name)
    if problems is not None:
        by_id = {p.id: p for p in items}
        unknown = [i for i in problems if i not in by_id]
        if unknown:
            hints = {u: difflib.get_close_matches(u, list(by_id), n=3) for u in unknown}
            raise ConfigError(
                "benchmark.problems",
                problems,
                f"unknown problem ids in {name}: "
                + "; ".join(f"{u} (close: {', '.join(h) or 'none'})" for u, h in hints.items()),
                fix=f"{name} has {len(items)} problems, e.g. {', '.join(list(by_id)[:5])}",
            )
        wanted = set(problems)
        items = [p for p in items if p.id in wanted]
    if limit is not None:
        if limit < 1:
            raise ConfigError(
                "benchmark.limit", limit, "must be a positive integer or null", example=5
            )
        items = items[:limit]
    return items


def reference_answer(problem: Problem) -> str:
    """The benchmark's reference design as a candidate answer: its top module named as the
    test bench instantiates it (VerilogEval v2's ``RefModule`` becomes ``TopModule``)."""
    names = module_names(problem.reference)
    if problem.top_module in names:
        return problem.reference
    tb_uses = set(instantiated_modules(problem.testbench))
    source = next((n for n in names if n in tb_uses), names[0] if names else None)
    if source is None:
        raise DataError(f"{problem.benchmark}/{problem.id}: the reference defines no module")
    return re.sub(
        rf"(\bmodule\s+){re.escape(source)}\b", rf"\g<1>{problem.top_module}", problem.reference
    )
