"""A harness check, not a model: ``SolverClient`` answers the reasoning prompts with the exact
solvers, so every strategy's graph can be run end to end in seconds (the smoke tests).
Its results measure the pipeline, never a method: a correct strategy scores 100% with it.

It recognises which prompt of :data:`llm.reasoning.prompts.TEMPLATES` a request is, reads the
template's fields back from the text, and answers in the format the parsers read:
Game of 24 by the exhaustive solver (any state, including the partial ones of ToT and GoT),
polynomials and sequences by looking the problem up in the configured set (their stated
answers), recomputations exactly.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from llm.base import LLMClient, LLMError, check_request
from llm.reasoning import game24
from llm.reasoning.adapters import apply_op, load_problems
from llm.reasoning.arith import evaluate, format_fraction, parse_expression
from llm.reasoning.prompts import TEMPLATES, number


def _pattern(template: str) -> re.Pattern:
    """A regex that matches the template's rendering and captures its fields."""
    parts, seen = [], set()
    for literal, field, _, _ in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field is not None:
            parts.append(f"(?P={field})" if field in seen else f"(?P<{field}>.*?)")
            seen.add(field)
    return re.compile("".join(parts), re.DOTALL)


_PATTERNS = {key: _pattern(text) for key, text in TEMPLATES.items()}


class SolverClient(LLMClient):
    """Answers every reasoning prompt exactly (a harness check, see the module docstring).

    Args:
        task: the run's ``reason.task`` block (the polynomial and sequence answers are looked
            up in the problems it selects).
    """

    def __init__(self, task: Mapping[str, Any]) -> None:
        super().__init__()
        self.task = dict(task)
        self.answers = {a.problem_text: a.problem for a in load_problems(self.task)}

    def identity(self) -> dict:
        return {"kind": "solver", "task": self.task}

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
        check_request(messages, n, temperature, max_tokens, stop)
        text = messages[-1]["content"]
        for (task, name), pattern in _PATTERNS.items():
            match = pattern.fullmatch(text) if task in (self.task["name"], "any") else None
            if match:
                reply = self.reply(task, name, match.groupdict())
                self.usage.add(
                    calls=1,
                    prompt_tokens=len(text.split()),
                    completion_tokens=n * len(reply.split()),
                )
                return [reply] * n
        raise LLMError(f"SolverClient: no reasoning prompt matches {text[:80]!r}")

    def reply(self, task: str, name: str, fields: dict[str, str]) -> str:
        """The exact reply to prompt ``name`` of ``task``."""
        if name == "vote":
            return "Best: 1"
        if name in ("aggregate", "improve"):
            return self.reply(self.task["name"], "io", self.problem_fields(fields["problem"]))
        if task == "game24":
            return self.game24(name, fields)
        if task == "polynomial":
            return self.polynomial(name, fields)
        return self.sequence(name, fields)

    def problem_fields(self, text: str) -> dict[str, str]:
        key = {"game24": "numbers", "polynomial": "equation", "sequence": "sequence"}
        return {key[self.task["name"]]: text}

    def game24(self, name: str, fields: dict[str, str]) -> str:
        if name == "rederive":
            return format_fraction(
                apply_op(fields["op"], number(fields["left"]), number(fields["right"]))
            )
        values = [number(v) for v in fields["numbers"].split()]
        if name in ("io", "cot", "finish"):
            return f"Answer: {game24.solve(values)}"
        if name in ("value", "judge"):
            return "sure" if game24.solve(values) is not None else "impossible"
        return "\n".join(good_steps(values)) or "no step"

    def polynomial(self, name: str, fields: dict[str, str]) -> str:
        if name == "rederive":
            tree = parse_expression(fields["polynomial"], {"x"})
            return format_fraction(evaluate(tree, {"x": number(fields["root"])}))
        roots = self.answers[fields["equation"]].roots
        if name == "crossroad":
            known = [number(r) for r in fields["known"].split(",") if r.strip() != "none"]
            left = sorted((Counter(roots) - Counter(known)).elements())
            return "\n".join(f"x = {format_fraction(r)}" for r in left[:1]) or "none"
        return "Answer: x = " + ", ".join(format_fraction(r) for r in roots)

    def sequence(self, name: str, fields: dict[str, str]) -> str:
        if name == "rederive":
            tree = parse_expression(fields["formula"], {"n"})
            return format_fraction(evaluate(tree, {"n": number(fields["n"])}))
        return f"Answer: a_n = {self.answers[fields['sequence']].closed_form}"


def good_steps(values: list[Fraction]) -> list[str]:
    """Up to three steps after which 24 is still reachable, as ``a op b = c (left: ...)``."""
    steps = []
    for i in range(len(values)):
        for j in range(len(values)):
            if i == j:
                continue
            rest = [v for k, v in enumerate(values) if k not in (i, j)]
            for op in "+-*/":
                result = apply_op(op, values[i], values[j])
                if result is None or game24.solve([*rest, result]) is None:
                    continue
                left = " ".join(format_fraction(v) for v in [*rest, result])
                steps.append(
                    f"{format_fraction(values[i])} {op} {format_fraction(values[j])} "
                    f"= {format_fraction(result)} (left: {left})"
                )
                if len(steps) == 3:
                    return steps
    return steps
