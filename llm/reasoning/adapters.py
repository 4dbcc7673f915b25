"""Task adapters: what the operations need to know about one problem of a task.

An adapter turns a thought into prompt fields, a reply into child states, and answers into
verdicts; the exact checks are those of :mod:`llm.reasoning.game24`, ``polynomial`` and
``sequence`` (model output is never evaluated as Python).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from llm.reasoning import game24, polynomial, sequence
from llm.reasoning.arith import Verdict, final_answer_line, format_fraction
from llm.reasoning.operations import Thought
from llm.reasoning.prompts import number, parse_steps, parse_value

OPS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b if b else None,
}


def apply_op(op: str, a: Fraction, b: Fraction) -> Fraction | None:
    """``a op b`` exactly; None for division by zero or an unknown operator."""
    fn = OPS.get(op)
    return fn(a, b) if fn else None


def show(values: list[Fraction]) -> str:
    """``4 5 6 10``."""
    return " ".join(format_fraction(v) for v in values)


class Adapter:
    """The task-independent part; subclasses set ``task`` and the problem-specific methods."""

    task = ""
    answer_format = ""

    def __init__(self, problem: Any) -> None:
        self.problem = problem

    @property
    def problem_id(self) -> str:
        """A file-safe id: ``game24-901``, ``polynomial-7``, ``sequence-3``."""
        raise NotImplementedError

    @property
    def problem_text(self) -> str:
        """The problem as prompts show it."""
        raise NotImplementedError

    def root(self) -> tuple[dict, str]:
        """The root thought's state and text."""
        return {}, self.problem_text

    def fields(self, prompt: str, thought: Thought) -> dict[str, str]:
        """The prompt's fields for this thought."""
        if prompt == "improve":
            return {
                "problem": self.problem_text,
                "answer": thought.text,
                "reason": thought.reason or "it may be wrong",
                "answer_format": self.answer_format,
            }
        return self.problem_fields()

    def problem_fields(self) -> dict[str, str]:
        raise NotImplementedError

    def list_fields(self, thoughts: list[Thought]) -> dict[str, str]:
        """Fields of the vote and aggregate prompts: the problem and numbered candidates."""
        lines = "\n".join(f"{i}. {t.text}" for i, t in enumerate(thoughts, 1))
        return {
            "problem": self.problem_text,
            "candidates": lines,
            "answer_format": self.answer_format,
        }

    def children(self, prompt: str, thought: Thought, reply: str) -> list[tuple[dict, str, str]]:
        """``(state, text, kind)`` of the thoughts a reply makes: by default one answer."""
        answer = self.extract(reply)
        if not answer:
            return []
        return [({"answer": answer}, answer, "answer")]

    def extract(self, reply: str) -> str:
        """The final answer text of a reply (``""`` when none)."""
        return final_answer_line(reply)

    def answer(self, thought: Thought) -> str | None:
        """The answer a thought states, or None when it is not an answer."""
        return thought.state.get("answer")

    def label(self, reply: str) -> str | None:
        """The label of a value reply."""
        return parse_value(reply)

    def check(self, checker: str, thought: Thought) -> tuple[bool, str]:
        """Exact validity of a thought: ``oracle`` applies the benchmark's checker to an
        answer; ``step`` has nothing to check outside Game of 24."""
        answer = self.answer(thought)
        if checker != "oracle":
            return True, "no steps to check"
        if answer is None:
            return True, "not an answer"
        verdict = self.ground_truth(answer)
        return verdict.correct, verdict.reason

    def ground_truth(self, answer: str) -> Verdict:
        """The benchmark's verdict on an answer."""
        raise NotImplementedError


class Game24Adapter(Adapter):
    """Game of 24; ToT states are ``{"numbers": [...], "steps": [...]}`` (numbers as text)."""

    task = "game24"
    answer_format = "Reply with one line 'Answer: <expression>'."

    @property
    def problem_id(self) -> str:
        return f"game24-{self.problem.rank}"

    @property
    def problem_text(self) -> str:
        return self.problem.text

    def root(self) -> tuple[dict, str]:
        return {"numbers": [str(n) for n in self.problem.numbers], "steps": []}, self.problem.text

    def problem_fields(self) -> dict[str, str]:
        return {"numbers": self.problem.text}

    def fields(self, prompt: str, thought: Thought) -> dict[str, str]:
        if prompt in ("propose", "value", "judge") and "numbers" in thought.state:
            return {"numbers": " ".join(thought.state["numbers"])}
        if prompt == "finish":
            return {"numbers": self.problem.text, "steps": "\n".join(thought.state["steps"])}
        return super().fields(prompt, thought)

    def children(self, prompt: str, thought: Thought, reply: str) -> list[tuple[dict, str, str]]:
        if prompt != "propose":
            return super().children(prompt, thought, reply)
        out = []
        for step in parse_steps(reply):
            remaining = step["remaining"]
            if remaining is None:  # the model left out "(left: ...)": compute what it implies
                rest = Counter(number(n) for n in thought.state["numbers"])
                rest -= Counter([step["left"], step["right"]])
                remaining = [*rest.elements(), step["result"]]
            state = {
                "numbers": [format_fraction(v) for v in remaining],
                "steps": [*thought.state["steps"], step["text"]],
            }
            out.append((state, step["text"], "thought"))
        return out

    def extract(self, reply: str) -> str:
        return game24.extract_expression(reply)

    def check(self, checker: str, thought: Thought) -> tuple[bool, str]:
        if checker == "oracle" or "steps" not in thought.state:
            return super().check(checker, thought)
        available = Counter(Fraction(n) for n in self.problem.numbers)
        for text in thought.state["steps"]:
            steps = parse_steps(text)
            if not steps:
                return False, f"step {text!r} is not 'a op b = c'"
            step = steps[0]
            used = Counter([step["left"], step["right"]])
            if used - available:
                return False, f"step {text!r} uses a number that is not available"
            if apply_op(step["op"], step["left"], step["right"]) != step["result"]:
                return False, f"step {text!r} is wrong arithmetic"
            available = available - used + Counter([step["result"]])
        claimed = Counter(number(n) for n in thought.state["numbers"])
        if claimed != available:
            return False, f"numbers left should be {show(sorted(available.elements()))}"
        return True, "every step is exact"

    def ground_truth(self, answer: str) -> Verdict:
        return game24.check_answer(self.problem.numbers, f"Answer: {answer}")


class PolynomialAdapter(Adapter):
    """Polynomial equations; an answer is the root list ``x = -2, 1/2, 3``."""

    task = "polynomial"
    answer_format = "Reply with one line 'Answer: x = <roots separated by commas>'."

    @property
    def problem_id(self) -> str:
        return f"polynomial-{self.problem.seed}"

    @property
    def problem_text(self) -> str:
        return self.problem.text

    def problem_fields(self) -> dict[str, str]:
        return {"equation": self.problem.text}

    def ground_truth(self, answer: str) -> Verdict:
        return polynomial.check_roots(self.problem, f"Answer: {answer}")


class SequenceAdapter(Adapter):
    """Recursive sequences; an answer is a closed form ``a_n = 3*2^(n-1)``."""

    task = "sequence"
    answer_format = "Reply with one line 'Answer: a_n = <expression in n>'."

    @property
    def problem_id(self) -> str:
        return f"sequence-{self.problem.seed}"

    @property
    def problem_text(self) -> str:
        return self.problem.text

    def problem_fields(self) -> dict[str, str]:
        return {"sequence": self.problem.text}

    def extract(self, reply: str) -> str:
        form = sequence.extract_closed_form(reply)
        return f"a_n = {form}" if form else ""

    def ground_truth(self, answer: str) -> Verdict:
        return sequence.check_closed_form(self.problem, f"Answer: {answer}")


ADAPTERS: dict[str, type[Adapter]] = {
    "game24": Game24Adapter,
    "polynomial": PolynomialAdapter,
    "sequence": SequenceAdapter,
}


def load_problems(task: Mapping[str, Any]) -> list[Adapter]:
    """The adapters of the problems a ``reason.task`` block selects.

    ``game24``: ``path`` (null: ``$DATA_DIR/game24/24.csv``), ``ranks: [first, last]``;
    ``polynomial``: ``seed``, ``count``, ``degree`` (null: drawn), ``rational``;
    ``sequence``: ``seed``, ``count``, ``kind`` (null: drawn). All: ``limit`` (the first N).
    """
    name = task["name"]
    if name == "game24":
        problems: list = game24.load_puzzles(task.get("path"), tuple(task["ranks"]))
    elif name == "polynomial":
        problems = [
            polynomial.generate(s, task.get("degree"), bool(task.get("rational")))
            for s in range(task["seed"], task["seed"] + task["count"])
        ]
    else:
        problems = [
            sequence.generate(s, task.get("kind"))
            for s in range(task["seed"], task["seed"] + task["count"])
        ]
    if task.get("limit"):
        problems = problems[: task["limit"]]
    return [ADAPTERS[name](p) for p in problems]
