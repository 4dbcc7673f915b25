"""Recursive sequences (the Graph of Thought task of arXiv:2308.08614, whose set is not public):
a seeded generator of recurrences with initial terms and a stated closed form, and an exact
checker of a model's closed form.

Indexing: ``a_1`` is the first term; a closed form ``f(n)`` must give ``a_n`` for n = 1, 2, ...
The checker parses the closed form with the whitelisted parser (symbol ``n``; ``2^n``, ``3n``,
``n(n+1)/2`` accepted) and compares it exactly with the recurrence for n = 1..30.

Families (characteristic roots r, s, t are small non-zero integers):

- ``geometric``: a_n = r a_{n-1}; closed form A r^n.
- ``two_roots``: a_n = (r+s) a_{n-1} - rs a_{n-2}; A r^n + B s^n.
- ``double_root``: a_n = 2r a_{n-1} - r^2 a_{n-2}; (A + B n) r^n.
- ``arithmetic``: a_n = 2 a_{n-1} - a_{n-2} (roots 1, 1); A + B n.
- ``three_roots``: order 3 with distinct roots; A r^n + B s^n + C t^n.
- ``quadratic``: a_n = 3 a_{n-1} - 3 a_{n-2} + a_{n-3} (roots 1, 1, 1); A + B n + C n^2.
- ``affine``: a_n = r a_{n-1} + d (r != 1); (a_1 - f) r^(n-1) + f with f = d / (1 - r).
- ``sum_of_squares``: a_n = a_{n-1} + n^2; a_1 - 1 + n(n+1)(2n+1)/6.
- ``sum_of_multiples``: a_n = a_{n-1} + d n; a_1 - d + d n(n+1)/2.
- ``ratio``: a_n = a_{n-1}^2 / a_{n-2} (non-linear); A r^n.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from effml.errors import ConfigError
from llm.reasoning.arith import (
    ExpressionError,
    Verdict,
    evaluate,
    final_answer_line,
    format_fraction,
    parse_expression,
)

CHECK_TERMS = 30
_SYMBOLS = frozenset({"n"})
_PREVIOUS = frozenset({"n", "p1", "p2", "p3"})


@dataclass(frozen=True)
class SeqProblem:
    """One sequence.

    Attributes:
        seed: the generator seed.
        kind: the family (see the module docstring).
        rule: the recurrence in the parser's syntax over ``n`` and the previous terms ``p1``
            (a_{n-1}), ``p2`` (a_{n-2}), ``p3`` (a_{n-3}).
        initial: a_1, ..., a_k.
        closed_form: the stated answer, an expression in ``n``.
    """

    seed: int
    kind: str
    rule: str
    initial: tuple[Fraction, ...]
    closed_form: str

    @property
    def text(self) -> str:
        """The problem as a prompt shows it: ``a_n = 5*a_{n-1} - 6*a_{n-2}, a_1 = 1, a_2 = 5``."""
        shown = re.sub(r"p(\d)", r"a_{n-\1}", self.rule)
        starts = ", ".join(f"a_{i} = {format_fraction(v)}" for i, v in enumerate(self.initial, 1))
        return f"a_n = {shown} for n > {len(self.initial)}, {starts}"

    def terms(self, count: int = CHECK_TERMS) -> list[Fraction]:
        """a_1, ..., a_count from the recurrence, exactly."""
        rule = parse_expression(self.rule, _PREVIOUS)
        values = list(self.initial[:count])
        for n in range(len(values) + 1, count + 1):
            env = {"n": Fraction(n)}
            env.update({f"p{k}": values[-k] for k in range(1, min(3, len(values)) + 1)})
            values.append(evaluate(rule, env))
        return values


def _ints(rng: random.Random, count: int, bound: int = 5, distinct: bool = False) -> list[int]:
    """``count`` non-zero integers in ``[-bound, bound]``."""
    pool = [v for v in range(-bound, bound + 1) if v]
    return rng.sample(pool, count) if distinct else [rng.choice(pool) for _ in range(count)]


def _signed(value: int | Fraction, first: bool = False) -> str:
    """``+ 3`` / ``- 3`` for a term after the first, ``-3`` / ``3`` for the first."""
    text = format_fraction(Fraction(value))
    if first:
        return f"({text})" if "/" in text else text
    sign = "-" if value < 0 else "+"
    magnitude = format_fraction(abs(Fraction(value)))
    return f" {sign} ({magnitude})" if "/" in magnitude else f" {sign} {magnitude}"


def _scaled(coef: int, body: str) -> str:
    """``coef*body`` without a unit coefficient (``2^n``, ``-2^n``, ``3*2^n``)."""
    if body == "1":
        return str(coef)
    return body if coef == 1 else f"-{body}" if coef == -1 else f"{coef}*{body}"


def _plus(coef: int, body: str) -> str:
    """`` + 3*n`` / `` - n``: a term after the first."""
    return f" {'-' if coef < 0 else '+'} {_scaled(abs(coef), body)}"


def _power_sum(coefs: list[int], roots: list[int]) -> str:
    """``A*r^n + B*s^n ...`` with parenthesised negative bases."""
    bodies = ["1" if r == 1 else f"({r})^n" if r < 0 else f"{r}^n" for r in roots]
    parts = [_scaled(c, b) for c, b in zip(coefs, bodies, strict=True)]
    return " + ".join(parts).replace("+ -", "- ")


def _linear_rule(char_coefs: list[int]) -> str:
    """``c1*p1 + c2*p2 ...`` from a_n = c1 a_{n-1} + c2 a_{n-2} + ..."""
    terms = [_scaled(c, f"p{k}") for k, c in enumerate(char_coefs, 1) if c]
    return " + ".join(terms).replace("+ -", "- ") or "0"


def _char_coefs(roots: list[int]) -> list[int]:
    """c_1..c_k with x^k - c_1 x^{k-1} - ... - c_k = prod (x - r)."""
    poly = [1]
    for r in roots:
        poly = [a - r * b for a, b in zip([*poly, 0], [0, *poly], strict=True)]
    return [-c for c in poly[1:]]


def _from_closed(seed: int, kind: str, rule: str, closed: str, order: int) -> SeqProblem:
    """A problem whose initial terms are the closed form's first ``order`` values."""
    tree = parse_expression(closed, _SYMBOLS)
    initial = tuple(evaluate(tree, {"n": Fraction(n)}) for n in range(1, order + 1))
    return SeqProblem(seed, kind, rule, initial, closed)


def _geometric(rng: random.Random, seed: int) -> SeqProblem:
    a, r = _ints(rng, 1)[0], rng.choice([-4, -3, -2, 2, 3, 4])
    return _from_closed(seed, "geometric", f"{r}*p1", _power_sum([a], [r]), 1)


def _two_roots(rng: random.Random, seed: int) -> SeqProblem:
    roots, coefs = _ints(rng, 2, 4, distinct=True), _ints(rng, 2)
    return _from_closed(
        seed, "two_roots", _linear_rule(_char_coefs(roots)), _power_sum(coefs, roots), 2
    )


def _double_root(rng: random.Random, seed: int) -> SeqProblem:
    r, (a, b) = rng.choice([-3, -2, -1, 2, 3]), _ints(rng, 2)
    base = f"({r})" if r < 0 else str(r)
    closed = f"({a}{_plus(b, 'n')})*{base}^n"
    return _from_closed(seed, "double_root", _linear_rule(_char_coefs([r, r])), closed, 2)


def _arithmetic(rng: random.Random, seed: int) -> SeqProblem:
    a, b = _ints(rng, 2, 9)
    return _from_closed(seed, "arithmetic", "2*p1 - p2", f"{a}{_plus(b, 'n')}", 2)


def _three_roots(rng: random.Random, seed: int) -> SeqProblem:
    roots, coefs = _ints(rng, 3, 3, distinct=True), _ints(rng, 3)
    return _from_closed(
        seed, "three_roots", _linear_rule(_char_coefs(roots)), _power_sum(coefs, roots), 3
    )


def _quadratic(rng: random.Random, seed: int) -> SeqProblem:
    a, b, c = _ints(rng, 3, 6)
    closed = f"{a}{_plus(b, 'n')}{_plus(c, 'n^2')}"
    return _from_closed(seed, "quadratic", "3*p1 - 3*p2 + p3", closed, 3)


def _affine(rng: random.Random, seed: int) -> SeqProblem:
    r = rng.choice([-3, -2, 2, 3])
    (d,), (a1,) = _ints(rng, 1), _ints(rng, 1, 9)
    fixed = Fraction(d, 1 - r)
    a1 += 1 if a1 == fixed else 0
    closed = f"{_signed(a1 - fixed, first=True)}*{f'({r})' if r < 0 else r}^(n - 1){_signed(fixed)}"
    rule = f"{r}*p1{_signed(d)}"
    return _from_closed(seed, "affine", rule, closed, 1)


def _sum_of_squares(rng: random.Random, seed: int) -> SeqProblem:
    (a1,) = _ints(rng, 1, 9)
    closed = f"{a1 - 1} + n*(n + 1)*(2*n + 1)/6"
    return _from_closed(seed, "sum_of_squares", "p1 + n^2", closed, 1)


def _sum_of_multiples(rng: random.Random, seed: int) -> SeqProblem:
    (a1,), (d,) = _ints(rng, 1, 9), _ints(rng, 1)
    closed = f"{a1 - d}{_plus(d, 'n*(n + 1)/2')}"
    return _from_closed(seed, "sum_of_multiples", f"p1{_plus(d, 'n')}", closed, 1)


def _ratio(rng: random.Random, seed: int) -> SeqProblem:
    a, r = _ints(rng, 1)[0], rng.choice([-3, -2, 2, 3])
    return _from_closed(seed, "ratio", "p1^2/p2", _power_sum([a], [r]), 2)


FAMILIES: dict[str, Callable[[random.Random, int], SeqProblem]] = {
    "geometric": _geometric,
    "two_roots": _two_roots,
    "double_root": _double_root,
    "arithmetic": _arithmetic,
    "three_roots": _three_roots,
    "quadratic": _quadratic,
    "affine": _affine,
    "sum_of_squares": _sum_of_squares,
    "sum_of_multiples": _sum_of_multiples,
    "ratio": _ratio,
}


def generate(seed: int, kind: str | None = None) -> SeqProblem:
    """A sequence problem, deterministic by ``seed``; ``kind`` is drawn by the seed when None."""
    rng = random.Random(seed)
    if kind is None:
        kind = rng.choice(sorted(FAMILIES))
    if kind not in FAMILIES:
        raise ConfigError("kind", kind, f"must be one of {', '.join(FAMILIES)}", "two_roots")
    return FAMILIES[kind](rng, seed)


def extract_closed_form(answer_text: str) -> str:
    """The closed form of a reply: the text after the last ``Answer:`` (else the last
    non-empty line), after its last ``a_n =`` / ``a(n) =`` / ``f(n) =``."""
    text = final_answer_line(answer_text)
    text = re.split(r"\b(?:a_?\{?n\}?|a\(n\)|f\(n\))\s*=", text)[-1]
    return text.strip().strip("`$").rstrip(".").strip()


def check_closed_form(problem: SeqProblem, answer_text: str, count: int = CHECK_TERMS) -> Verdict:
    """Whether a reply's closed form equals the recurrence exactly for n = 1..count."""
    expression = extract_closed_form(answer_text)
    if not expression:
        return Verdict(False, "empty reply")
    try:
        tree = parse_expression(expression, _SYMBOLS)
        for n, expected in enumerate(problem.terms(count), 1):
            value = evaluate(tree, {"n": Fraction(n)})
            if value != expected:
                return Verdict(
                    False,
                    f"gives a_{n} = {format_fraction(value)} but the recurrence gives "
                    f"{format_fraction(expected)}",
                )
    except ExpressionError as err:
        return Verdict(False, f"malformed: {err}")
    return Verdict(True, "correct")
