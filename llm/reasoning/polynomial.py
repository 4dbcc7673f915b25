"""High-degree polynomial equations (the Graph of Thought task of arXiv:2308.08614, whose set is
not public): a seeded generator of expanded integer polynomials with known rational roots, and
exact checkers of a model's root set.

The answer is the multiset of roots (a double root is written twice). :func:`check_roots`
compares it with the generated roots; :func:`verify_roots` needs only the coefficients: it
divides the polynomial by ``(x - r)`` for each claimed root in turn, exactly, and accepts when
every division leaves no remainder and the claimed roots number the degree.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import gcd

from effml.errors import ConfigError
from llm.reasoning.arith import (
    ExpressionError,
    Verdict,
    evaluate,
    final_answer_line,
    format_fraction,
    parse_expression,
)

DEGREES = range(3, 7)
_MULTIPLICITY_WORDS = {"double": 2, "twice": 2, "triple": 3, "thrice": 3}


@dataclass(frozen=True)
class PolyProblem:
    """One equation ``p(x) = 0``.

    Attributes:
        seed: the generator seed.
        coefficients: integers, highest degree first, content 1, leading coefficient > 0.
        roots: the roots with multiplicity, sorted.
    """

    seed: int
    coefficients: tuple[int, ...]
    roots: tuple[Fraction, ...]

    @property
    def degree(self) -> int:
        """The degree of the polynomial."""
        return len(self.coefficients) - 1

    @property
    def text(self) -> str:
        """The equation as a prompt shows it: ``2x^3 - 3x^2 - 11x + 6 = 0``."""
        return format_polynomial(self.coefficients) + " = 0"

    @property
    def answer_text(self) -> str:
        """The stated answer in the format the checker reads: ``x = -2, 1/2, 3``."""
        return "x = " + ", ".join(format_fraction(r) for r in self.roots)


def format_polynomial(coefficients: Sequence[int]) -> str:
    """``[2, -3, 0, 6]`` -> ``2x^3 - 3x^2 + 6``."""
    degree = len(coefficients) - 1
    terms = []
    for power, c in zip(range(degree, -1, -1), coefficients, strict=True):
        if c == 0:
            continue
        size = "" if abs(c) == 1 and power > 0 else str(abs(c))
        var = "" if power == 0 else "x" if power == 1 else f"x^{power}"
        sign = "-" if c < 0 else "+"
        terms.append((sign, size + var))
    first_sign, first = terms[0]
    return ("-" if first_sign == "-" else "") + first + "".join(f" {s} {t}" for s, t in terms[1:])


def expand(roots: Sequence[Fraction]) -> tuple[int, ...]:
    """The primitive integer polynomial (highest degree first) whose roots are ``roots``."""
    coefficients = [1]
    for root in roots:
        q, p = root.denominator, root.numerator
        shifted = [*coefficients, 0]
        coefficients = [q * a - p * b for a, b in zip(shifted, [0, *coefficients], strict=True)]
    content = 0
    for c in coefficients:
        content = gcd(content, c)
    sign = 1 if coefficients[0] > 0 else -1
    return tuple(sign * c // content for c in coefficients)


def generate(
    seed: int,
    degree: int | None = None,
    rational: bool = False,
    root_bound: int = 9,
) -> PolyProblem:
    """A polynomial equation with known roots, deterministic by ``seed``.

    Args:
        seed: the seed of a private ``random.Random``.
        degree: 3..6; drawn from 3..6 by the seed when None.
        rational: when true, about a third of the roots are fractions ``p/q`` with q in 2..4.
        root_bound: integer roots and numerators are drawn from ``[-root_bound, root_bound]``;
            roots are drawn with replacement, so repeated roots occur.
    """
    rng = random.Random(seed)
    if degree is None:
        degree = rng.choice(DEGREES)
    if degree not in DEGREES:
        raise ConfigError("degree", degree, "must be 3, 4, 5 or 6", example=4)
    if root_bound < 1:
        raise ConfigError("root_bound", root_bound, "must be >= 1", example=9)
    roots = []
    for _ in range(degree):
        if rational and rng.random() < 1 / 3:
            q = rng.randint(2, 4)
            p = rng.choice([v for v in range(-root_bound, root_bound + 1) if v % q])
            roots.append(Fraction(p, q))
        else:
            roots.append(Fraction(rng.randint(-root_bound, root_bound)))
    return PolyProblem(seed, expand(roots), tuple(sorted(roots)))


def parse_roots(answer_text: str) -> list[Fraction]:
    """The roots a reply claims, with multiplicity.

    Reads the text after the last ``Answer:`` (else the last non-empty line); accepts
    ``x = 1, -2, 3/2``, ``{1, -2, 1.5}``, ``x1 = 1, x2 = 1``, ``1 and 2``, ``3 (double)``,
    ``3 (multiplicity 2)``.

    Raises:
        ExpressionError: no roots or a root that is not a number.
    """
    text = final_answer_line(answer_text)
    if not text:
        raise ExpressionError("empty reply")
    text = re.sub(r"\bx\s*_?\s*\{?[0-9₀-₉]*\}?\s*(=|∈|in\b)", " ", text)
    text = re.sub(r"[{}\[\]$`]|\\[{}]", " ", text).strip().rstrip(".")
    roots: list[Fraction] = []
    for piece in re.split(r",|;|\band\b|\bor\b", text):
        piece = piece.strip()
        if not piece:
            continue
        count = 1
        match = re.search(r"\((?:multiplicity|mult\.?|repeated)\s*(\d+)\)|\((\w+)\)$", piece)
        if match:
            word = match.group(2)
            if match.group(1):
                count = int(match.group(1))
            elif word and word.lower() in _MULTIPLICITY_WORDS:
                count = _MULTIPLICITY_WORDS[word.lower()]
            else:
                match = None
            if match:
                piece = piece[: match.start()].strip()
        if not 1 <= count <= 6:
            raise ExpressionError(f"multiplicity {count} refused: at most 6")
        roots.extend([evaluate(parse_expression(piece))] * count)
    if not roots:
        raise ExpressionError(f"no roots found in {text!r}")
    return roots


def check_roots(problem: PolyProblem, answer_text: str) -> Verdict:
    """Whether a reply's root multiset equals the generated one exactly."""
    try:
        claimed = parse_roots(answer_text)
    except ExpressionError as err:
        return Verdict(False, f"malformed: {err}")
    if Counter(claimed) == Counter(problem.roots):
        return Verdict(True, "correct")
    missing = Counter(problem.roots) - Counter(claimed)
    extra = Counter(claimed) - Counter(problem.roots)
    return Verdict(
        False,
        f"root multiset differs: missing [{_show(missing)}], "
        f"not roots or too many [{_show(extra)}]",
    )


def verify_roots(coefficients: Sequence[int], roots: Sequence[Fraction]) -> Verdict:
    """Whether ``roots`` (with multiplicity) are all the roots of the polynomial, by exact
    synthetic division of ``(x - r)`` for each claimed root in turn."""
    if len(roots) != len(coefficients) - 1:
        return Verdict(
            False, f"{len(roots)} roots claimed for a polynomial of degree {len(coefficients) - 1}"
        )
    current = [Fraction(c) for c in coefficients]
    for root in roots:
        quotient, carry = [], Fraction(0)
        for c in current:
            carry = carry * root + c
            quotient.append(carry)
        if quotient.pop() != 0:
            return Verdict(False, f"{format_fraction(root)} is not a root (or not that often)")
        current = quotient
    return Verdict(True, "correct")


def _show(counter: Counter) -> str:
    """A multiset of Fractions as ``1, 1, 3/2``."""
    return ", ".join(format_fraction(v) for v in sorted(counter.elements()))
