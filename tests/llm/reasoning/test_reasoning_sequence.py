"""Recursive sequences: determinism by seed, every family's stated closed form matches its
recurrence for n = 1..30, and wrong or malicious closed forms are rejected."""

from __future__ import annotations

import time
from fractions import Fraction

import pytest

from effml.errors import ConfigError
from llm.reasoning.sequence import (
    FAMILIES,
    check_closed_form,
    extract_closed_form,
    generate,
)


def test_deterministic_by_seed():
    assert generate(11) == generate(11)
    assert {generate(s).kind for s in range(200)} == set(FAMILIES)


def test_every_generated_problem_passes_its_own_checker():
    start = time.perf_counter()
    for seed in range(2000):
        problem = generate(seed)
        verdict = check_closed_form(problem, f"Answer: a_n = {problem.closed_form}")
        assert verdict.correct, (problem, verdict)
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_each_family_recurrence_and_initial_terms(kind):
    problem = generate(3, kind=kind)
    terms = problem.terms(8)
    assert tuple(terms[: len(problem.initial)]) == problem.initial
    assert all(isinstance(t, Fraction) for t in terms)


def test_known_closed_forms_in_model_spellings():
    problem = generate(0, kind="sum_of_squares")
    a1 = problem.initial[0]
    assert check_closed_form(problem, f"a(n) = {a1 - 1} + n(n+1)(2n+1)/6").correct
    affine = generate(1, kind="affine")
    assert check_closed_form(affine, f"The closed form is a_n = {affine.closed_form}.").correct


def test_wrong_closed_forms_are_rejected():
    problem = generate(5, kind="two_roots")
    for reply, reason in [
        ("a_n = 2^n", "but the recurrence gives"),
        ("", "empty reply"),
        ("a_n = n!", "malformed"),
        ("a_n = __import__('os')", "Call"),
        ("a_n = 10**10**10", "exponent"),
        ("a_n = m + 1", "name 'm'"),
        ("a_n = 1 / (n - 1)", "division by zero"),
    ]:
        verdict = check_closed_form(problem, reply)
        assert not verdict.correct and reason in verdict.reason, (reply, verdict)


def test_closed_form_agreeing_only_on_early_terms_is_rejected():
    problem = generate(0, kind="arithmetic")
    a, b = problem.initial[0], problem.initial[1] - problem.initial[0]
    trap = f"{a - b} + {b}*n + (n-1)*(n-2)*(n-3)*(n-4)*(n-5)*(n-6)*(n-7)*(n-8)*(n-9)*(n-10)"
    verdict = check_closed_form(problem, trap)
    assert not verdict.correct and "a_11" in verdict.reason


def test_extract_closed_form():
    assert extract_closed_form("so\nAnswer: a_n = 3*2^n - 1") == "3*2^n - 1"
    assert extract_closed_form("f(n) = n^2.") == "n^2"
    assert extract_closed_form("a_{n} = 2n") == "2n"


def test_unknown_kind():
    with pytest.raises(ConfigError, match="kind=cubic"):
        generate(0, kind="cubic")
