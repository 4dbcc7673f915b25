"""Clients that answer Verilog problems from files instead of a model, keyed by problem id.

- :class:`ReferenceClient` answers with the benchmark's own reference design (it validates
  the harness: every answer should pass unless the simulator cannot run the test bench).
- :class:`ReplayClient` serves RTLLM v1.1's archived GPT-4 / GPT-3.5 outputs
  (``_chatgpt4/t1..t5/<design>.v``, arXiv:2308.05345), so the published figures can be re-run.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from llm.base import LLMClient, LLMError, check_request

from .benchmarks import FOLDERS, Problem, load_benchmark, reference_answer

TRIALS = 5
MODELS = {"gpt4": "_chatgpt4", "gpt35": "_chatgpt35"}


def _key(key: str | None, known: list[str], who: str) -> str:
    if key is None:
        raise LLMError(
            f"{who} answers by problem id: call complete(..., key=<problem id>), "
            f"e.g. key={known[0]!r}"
        )
    if key not in known:
        close = difflib.get_close_matches(key, known, n=3)
        raise LLMError(
            f"{who}: no answer for problem {key!r}"
            + (f" (close: {', '.join(close)})" if close else "")
            + f"; it knows {len(known)} problems, e.g. {', '.join(known[:5])}"
        )
    return key


class ReferenceClient(LLMClient):
    """Answers each problem with its benchmark's reference design in a ```verilog fence.

    Args:
        benchmark: the benchmark name (``rtllm_v1.1``, ``verilogeval_v2``, ...).
        path: the benchmark folder; default ``$DATA_DIR/verilog/<folder>``.
    """

    def __init__(self, benchmark: str = "rtllm_v1.1", path: str | Path | None = None) -> None:
        super().__init__()
        self.benchmark = benchmark
        self.path = str(path) if path is not None else None
        self._problems: dict[str, Problem] | None = None

    def _load(self) -> dict[str, Problem]:
        if self._problems is None:
            self._problems = {p.id: p for p in load_benchmark(self.benchmark, self.path)}
        return self._problems

    def complete(
        self,
        messages: list[dict],
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 512,
        stop: list[str] | None = None,
        *,
        key: str | None = None,
    ) -> list[str]:
        """``n`` copies of the reference design of problem ``key``."""
        check_request(messages, n, temperature, max_tokens, stop)
        problems = self._load()
        problem = problems[_key(key, list(problems), f"reference client ({self.benchmark})")]
        self.usage.add(calls=1)
        return [f"```verilog\n{reference_answer(problem).strip()}\n```"] * n

    def identity(self) -> dict:
        """Kind, benchmark and path."""
        return {"kind": "reference", "benchmark": self.benchmark, "path": self.path}


class ReplayClient(LLMClient):
    """Serves RTLLM v1.1's archived model outputs: answer ``i`` of a problem is trial ``t<i>``.

    Args:
        model: ``gpt4`` (``_chatgpt4/``) or ``gpt35`` (``_chatgpt35/``).
        path: the RTLLM v1.1 folder; default ``$DATA_DIR/verilog/rtllm-v1.1``.
        names: ``exact``: an archived file counts for the problem of its exact name, as the
            benchmark's own scripts read them (GPT-3.5's ``calender.v`` then answers nothing
            for ``calendar``, and those trials fail: the published figures); ``closest``:
            a misspelt file is matched to the closest problem name.

    A trial with no archived file for a problem answers with an empty reply (scored as a
    sample with no code).
    """

    def __init__(
        self, model: str = "gpt4", path: str | Path | None = None, names: str = "exact"
    ) -> None:
        super().__init__()
        if names not in ("exact", "closest"):
            raise LLMError(f"llm.names={names}: choose exact or closest; e.g. llm.names=exact")
        self.names = names
        if model not in MODELS:
            raise LLMError(
                f"llm.model={model}: replay holds only {', '.join(MODELS)} "
                "(RTLLM v1.1's _chatgpt4/ and _chatgpt35/); e.g. llm.model=gpt4"
            )
        self.model = model
        if path is None:
            root = os.environ.get("DATA_DIR")
            if not root:
                raise LLMError(
                    "replay client: DATA_DIR is not set and llm.path is null; set DATA_DIR (it "
                    f"holds verilog/{FOLDERS['rtllm_v1.1']}) or llm.path=/path/to/rtllm-v1.1"
                )
            path = Path(root) / "verilog" / FOLDERS["rtllm_v1.1"]
        self.path = Path(path).expanduser()
        self.folder = self.path / MODELS[model]
        if not (self.folder / "t1").is_dir():
            raise LLMError(
                f"replay client: {self.folder}/t1 does not exist; llm.path must be an RTLLM v1.1 "
                f"folder holding {MODELS[model]}/t1..t{TRIALS}/<design>.v"
            )
        self._files = self._index()

    def _index(self) -> dict[str, list[Path | None]]:
        """problem id -> the archived file of each trial (None where a trial lacks it).

        Archived names can differ from the problem folders (``calender.v`` for ``calendar``);
        with ``names="closest"`` each file is matched to the closest problem name.
        """
        problems = sorted(
            p.name
            for p in self.path.iterdir()
            if p.is_dir() and not p.name.startswith("_") and (p / "testbench.v").is_file()
        )
        files: dict[str, list[Path | None]] = {p: [None] * TRIALS for p in problems}
        for t in range(TRIALS):
            trial = self.folder / f"t{t + 1}"
            if not trial.is_dir():
                continue
            for f in sorted(trial.glob("*.v")):
                name = f.stem if f.stem in files or self.names == "exact" else next(
                    iter(difflib.get_close_matches(f.stem, problems, n=1, cutoff=0.8)), None
                )  # fmt: skip
                if name not in files:
                    continue
                if name is not None:
                    files[name][t] = f
        return files

    def complete(
        self,
        messages: list[dict],
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 512,
        stop: list[str] | None = None,
        *,
        key: str | None = None,
    ) -> list[str]:
        """The first ``n`` archived answers to problem ``key`` (trials t1..tn)."""
        check_request(messages, n, temperature, max_tokens, stop)
        limits = (
            f"replay holds the {TRIALS} first answers per RTLLM v1.1 problem and no "
            "refinement replies"
        )
        if any(m.get("role") == "assistant" for m in messages):
            raise LLMError(
                f"replay_{self.model}: a follow-up turn was asked; {limits} "
                "(use refine.max_rounds=0 with replay)"
            )
        if n > TRIALS:
            raise LLMError(f"replay_{self.model}: n={n} answers asked; {limits} (n <= {TRIALS})")
        name = _key(key, sorted(self._files), f"replay_{self.model}")
        answers = []
        for f in self._files[name][:n]:
            answers.append("" if f is None else f.read_text(encoding="utf-8", errors="replace"))
        self.usage.add(calls=1)
        return answers

    def identity(self) -> dict:
        """Kind, model and path."""
        return {"kind": "replay", "model": self.model, "path": str(self.path), "names": self.names}
