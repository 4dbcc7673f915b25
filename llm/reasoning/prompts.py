"""Prompts and reply parsers of the reasoning strategies, per task (our own wording).

Every prompt is a template of ``TEMPLATES[(task, name)]`` filled with ``str.format`` fields;
:func:`render` makes the chat messages. The parsers read the model's reply leniently and never
evaluate it as Python: numbers and expressions go through :mod:`llm.reasoning.arith`.

Prompt names (what each strategy uses):

- ``io``, ``cot``: the whole problem in one reply (direct answer / step by step).
- Game of 24, Tree of Thoughts (arXiv:2305.10601, Sec. 4.1): ``propose`` (next steps of a
  partial solution), ``value`` (sure / likely / impossible), ``finish`` (the expression from
  the steps).
- Graph of Thought (arXiv:2308.08614, Sec. 3): ``crossroad`` (a new fact from the current
  conditions), ``judge`` and ``rederive`` (the model's inspectors).
"""

from __future__ import annotations

import re
from fractions import Fraction

from llm.reasoning.arith import ExpressionError, evaluate, parse_expression

SYSTEM = "You are a careful mathematician. Follow the reply format exactly."

TEMPLATES: dict[tuple[str, str], str] = {
    ("game24", "io"): (
        "Combine the numbers {numbers} with + - * / and parentheses so that the result is 24. "
        "Use every number exactly once.\n"
        "Example: numbers 2 3 4 6 -> Answer: (3 - 2) * 4 * 6\n"
        "Example: numbers 1 5 5 5 -> Answer: (5 - 1 / 5) * 5\n"
        "Reply with one line 'Answer: <expression>'."
    ),
    ("game24", "cot"): (
        "Combine the numbers {numbers} with + - * / and parentheses so that the result is 24. "
        "Use every number exactly once. Work in three steps, each joining two numbers.\n"
        "Example for 3 4 6 8:\n8 - 6 = 2 (left: 2 3 4)\n3 * 4 = 12 (left: 2 12)\n"
        "2 * 12 = 24 (left: 24)\nAnswer: (8 - 6) * (3 * 4)\n"
        "Finish with one line 'Answer: <expression>' using each of {numbers} once."
    ),
    ("game24", "propose"): (
        "Numbers: {numbers}\n"
        "Suggest possible next steps. Each step joins two of the numbers with + - * or / and "
        "lists what is left, one step per line, like:\n"
        "8 - 2 = 6 (left: 6 ...)\n"
        "Reply with steps only."
    ),
    ("game24", "value"): (
        "Numbers: {numbers}\n"
        "Can these numbers, each used once with + - * /, make 24? Try one or two combinations "
        "briefly, then end with one word on its own line: sure, likely or impossible."
    ),
    ("game24", "finish"): (
        "Puzzle: {numbers}\nSteps:\n{steps}\n"
        "Write the steps as one expression that uses each number of the puzzle once and "
        "equals 24. Reply with one line 'Answer: <expression>'."
    ),
    ("game24", "crossroad"): (
        "Known numbers: {numbers}\nSteps ruled out: {rejected}\nAttempt {attempt}.\n"
        "Join two of the known numbers with + - * or / to get a new number that brings 24 "
        "closer. Reply with up to three lines like '8 - 2 = 6'."
    ),
    ("game24", "judge"): (
        "Numbers: {numbers}\n"
        "Can these numbers, each used once with + - * /, make 24? "
        "Reply with one word: sure, likely or impossible."
    ),
    ("game24", "rederive"): ("Compute {left} {op} {right}. Reply with the number only."),
    ("polynomial", "io"): (
        "Find every root of the equation {equation}, each as often as its multiplicity.\n"
        "Example: x^3 - 2x^2 - x + 2 = 0 -> Answer: x = -1, 1, 2\n"
        "Reply with one line 'Answer: x = <roots separated by commas>'."
    ),
    ("polynomial", "cot"): (
        "Find every root of the equation {equation}, each as often as its multiplicity.\n"
        "Try rational candidates p/q (p divides the constant term, q the leading "
        "coefficient), divide out each root you find, and repeat on the quotient.\n"
        "Finish with one line 'Answer: x = <roots separated by commas>'."
    ),
    ("polynomial", "crossroad"): (
        "Equation: {equation}\nRoots found so far: {known}\nRejected guesses: {rejected}\n"
        "Attempt {attempt}.\n"
        "Suggest up to three more roots of the equation, one per line, like 'x = 3'."
    ),
    ("polynomial", "rederive"): (
        "Let p(x) = {polynomial}. Compute p({root}). Reply with the number only."
    ),
    ("sequence", "io"): (
        "The sequence {sequence}. Give a closed form for a_n (n = 1, 2, ...).\n"
        "Example: a_n = 2*a_{{n-1}} for n > 1, a_1 = 3 -> Answer: a_n = 3*2^(n-1)\n"
        "Reply with one line 'Answer: a_n = <expression in n>'."
    ),
    ("sequence", "cot"): (
        "The sequence {sequence}. Give a closed form for a_n (n = 1, 2, ...).\n"
        "Write the first terms, find the characteristic equation and its roots, fit the "
        "constants to the first terms, and check the formula.\n"
        "Finish with one line 'Answer: a_n = <expression in n>'."
    ),
    ("sequence", "crossroad"): (
        "The sequence {sequence}.\nIts first terms: {terms}\nRejected formulas: {rejected}\n"
        "Attempt {attempt}.\n"
        "Give a closed form for a_n (n = 1, 2, ...). Reply with one line "
        "'Answer: a_n = <expression in n>'."
    ),
    ("sequence", "rederive"): ("Compute {formula} for n = {n}. Reply with the number only."),
    ("any", "vote"): (
        "Problem: {problem}\nCandidates:\n{candidates}\n"
        "Which candidate is most likely right? Reply with one line 'Best: <number>'."
    ),
    ("any", "aggregate"): (
        "Problem: {problem}\nPartial results:\n{candidates}\n"
        "Combine what is right in them into one final answer. {answer_format}"
    ),
    ("any", "improve"): (
        "Problem: {problem}\nA proposed answer: {answer}\nA check found: {reason}\n"
        "Write a corrected answer. {answer_format}"
    ),
}

VALUE_LABELS = ("sure", "likely", "impossible")
_STEP = re.compile(
    r"(-?\d+(?:\.\d+)?(?:/\d+)?)\s*([-+*/x×÷−])\s*(-?\d+(?:\.\d+)?(?:/\d+)?)\s*=\s*"
    r"(-?\d+(?:\.\d+)?(?:/\d+)?)"
)
_LEFT = re.compile(r"\(\s*left\s*:\s*([^)]*)\)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")


def render(task: str, name: str, **fields: str) -> list[dict]:
    """The chat messages of prompt ``name`` of ``task`` (or the task-free ``("any", name)``)
    with its fields filled."""
    template = TEMPLATES.get((task, name)) or TEMPLATES[("any", name)]
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": template.format(**fields)},
    ]


def number(text: str) -> Fraction:
    """A number as the model wrote it (``3``, ``-1.5``, ``7/2``), exactly.

    Raises:
        ExpressionError: not a number.
    """
    return evaluate(parse_expression(text.strip()))


def first_number(reply: str) -> Fraction | None:
    """The first number of a reply (``p(2) = 0`` gives 2: so the last after ``=`` wins)."""
    line = reply.strip().splitlines()[0] if reply.strip() else ""
    if "=" in line:
        line = line.rsplit("=", 1)[1]
    found = _NUMBER.search(line)
    if not found:
        return None
    try:
        return number(found.group(0))
    except ExpressionError:
        return None


def parse_choice(reply: str, count: int) -> int | None:
    """The 0-based candidate a vote reply picks (``Best: 2`` -> 1), or None."""
    found = re.search(r"best\s*:?\s*#?(\d+)", reply, re.IGNORECASE) or re.search(r"\d+", reply)
    if not found:
        return None
    index = int(found.group(found.lastindex or 0)) - 1
    return index if 0 <= index < count else None


def parse_value(reply: str) -> str | None:
    """The last of sure / likely / impossible a value reply names, or None."""
    words = re.findall(r"\b(sure|likely|impossible)\b", reply.lower())
    return words[-1] if words else None


def parse_steps(reply: str) -> list[dict]:
    """Steps ``a op b = c (left: ...)`` of a propose or crossroad reply, in order.

    Returns:
        dicts with ``left``/``right``/``result`` (Fractions as written), ``op`` (``+ - * /``),
        ``remaining`` (the numbers after ``left:``, or None when the line has none) and
        ``text`` (the line).
    """
    steps = []
    for line in reply.splitlines():
        match = _STEP.search(line)
        if not match:
            continue
        op = {"x": "*", "×": "*", "÷": "/", "−": "-"}.get(match.group(2), match.group(2))
        try:
            a, b, c = (number(match.group(i)) for i in (1, 3, 4))
        except ExpressionError:
            continue
        left = _LEFT.search(line)
        remaining = None
        if left:
            try:
                remaining = [number(t) for t in _NUMBER.findall(left.group(1))]
            except ExpressionError:
                remaining = None
        steps.append(
            {
                "left": a,
                "op": op,
                "right": b,
                "result": c,
                "remaining": remaining,
                "text": line.strip(),
            }
        )
    return steps


def parse_root_guesses(reply: str) -> list[Fraction]:
    """Candidate roots of a crossroad reply: numbers after ``x =`` (else every number)."""
    found = re.findall(r"x\s*=\s*(-?\d+(?:\.\d+)?(?:/\d+)?)", reply)
    if not found:
        found = _NUMBER.findall(reply)
    guesses = []
    for text in found:
        try:
            value = number(text)
        except ExpressionError:
            continue
        if value not in guesses:
            guesses.append(value)
    return guesses
