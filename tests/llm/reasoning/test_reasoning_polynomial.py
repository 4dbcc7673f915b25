"""Polynomial equations: determinism by seed, every generated answer passes both checkers,
root-set parsing and rejection of wrong root multisets."""

from __future__ import annotations

import time
from fractions import Fraction

import pytest

from effml.errors import ConfigError
from llm.reasoning.arith import ExpressionError
from llm.reasoning.polynomial import (
    PolyProblem,
    check_roots,
    expand,
    format_polynomial,
    generate,
    parse_roots,
    verify_roots,
)


def test_deterministic_by_seed():
    assert generate(7, rational=True) == generate(7, rational=True)
    assert [generate(s).coefficients for s in range(20)] != [
        generate(s + 1).coefficients for s in range(20)
    ]


def test_every_generated_problem_passes_its_own_checkers():
    start = time.perf_counter()
    degrees = set()
    for seed in range(2000):
        for rational in (False, True):
            problem = generate(seed, rational=rational)
            degrees.add(problem.degree)
            assert problem.coefficients[0] > 0
            assert all(isinstance(c, int) for c in problem.coefficients)
            assert check_roots(problem, problem.answer_text).correct, problem
            assert verify_roots(problem.coefficients, problem.roots).correct, problem
    assert degrees == {3, 4, 5, 6}
    assert time.perf_counter() - start < 10


def test_expand_and_format():
    assert expand([Fraction(1), Fraction(-2), Fraction(3, 2)]) == (2, -1, -7, 6)
    assert format_polynomial([2, -3, 0, 6]) == "2x^3 - 3x^2 + 6"
    assert format_polynomial([1, 0, -1, 0]) == "x^3 - x"


@pytest.mark.parametrize(
    "reply",
    [
        "x = 1, -2, 3/2",
        "The roots are\nAnswer: {1, -2, 1.5}",
        "x1 = 1, x2 = -2, x3 = 3/2",
        "x ∈ {-2, 1, 3/2}",
        "-2 and 1 and 1.5.",
        "**Answer:** x = -2, 1, 3/2",
    ],
)
def test_root_set_spellings(reply):
    roots = (Fraction(-2), Fraction(1), Fraction(3, 2))
    problem = PolyProblem(0, expand(roots), roots)
    assert check_roots(problem, reply).correct


def test_multiplicity_spellings():
    assert parse_roots("x = 3 (double), -1") == [3, 3, -1]
    assert parse_roots("Answer: 2 (multiplicity 3)") == [2, 2, 2]
    with pytest.raises(ExpressionError, match="multiplicity 9"):
        parse_roots("2 (multiplicity 9)")


def test_wrong_root_sets_are_rejected():
    roots = (Fraction(-2), Fraction(1), Fraction(1), Fraction(3))
    coefficients = expand(roots)
    problem = PolyProblem(0, coefficients, roots)
    for reply, reason in [
        ("x = -2, 1, 3", "missing [1]"),
        ("x = -2, 1, 1, 1, 3", "too many [1]"),
        ("x = -2, 1, 1, 4", "missing [3]"),
        ("", "empty reply"),
        ("x = sqrt(2)", "Call"),
        ("x = __import__('os')", "refused"),
    ]:
        verdict = check_roots(problem, reply)
        assert not verdict.correct and reason in verdict.reason, (reply, verdict)
    assert not verify_roots(coefficients, [-2, 1, 3]).correct
    assert "not a root" in verify_roots(coefficients, [-2, 1, 3, 3]).reason
    assert verify_roots(coefficients, [3, 1, -2, 1]).correct


def test_bad_degree():
    with pytest.raises(ConfigError, match="degree=7"):
        generate(0, degree=7)
