"""The whitelisted arithmetic: exact values, model spellings, and every refused construct."""

from __future__ import annotations

from fractions import Fraction

import pytest

from llm.reasoning.arith import (
    MAX_NODES,
    MAX_TEXT_CHARS,
    ExpressionError,
    evaluate,
    numbers_used,
    operators_used,
    parse_expression,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("(6 - 4) * (3 + 9)", 24),
        ("8 / (3 - 8 / 3)", 24),
        ("1.5 * 16", 24),
        (".25 * 96", 24),
        ("(4 x 6) x 1", 24),
        ("4 × 6 ÷ 1", 24),
        ("(7 − 1) * 4", 24),
        ("2^3 * 3", 24),
        ("-(-24)", 24),
        ("2**-1", Fraction(1, 2)),
    ],
)
def test_exact_values_and_model_spellings(text, value):
    assert evaluate(parse_expression(text)) == Fraction(value)


def test_decimals_are_exact_not_floats():
    assert evaluate(parse_expression("0.1 + 0.2")) == Fraction(3, 10)


def test_numbers_and_operators_used():
    tree = parse_expression("(6 - 4) * (3 + -9)")
    assert numbers_used(tree) == [6, 4, 3, 9]
    assert operators_used(tree) == {"-", "*", "+", "neg"}


def test_symbols_and_implicit_multiplication():
    tree = parse_expression("3n^2 + 2(n + 1) + n(n - 1) + 2^n", {"n"})
    assert evaluate(tree, {"n": 3}) == 27 + 8 + 6 + 8
    tree = parse_expression("2x^3 - x", {"x"})
    assert evaluate(tree, {"x": Fraction(1, 2)}) == Fraction(-1, 4)


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("__import__('os').system('true')", "Call"),
        ("().__class__", "Attribute"),
        ("(1).__class__.__bases__", "Attribute"),
        ("lambda: 24", "Lambda"),
        ("[24][0]", "Subscript"),
        ("24 == 24", "Compare"),
        ("'24'", "literal"),
        ("True * 24", "literal"),
        ("2j * 12", "literal"),
        ("1e3", "number 1e3"),
        ("1_0 + 14", "number 1_0"),
        ("n + 1", "name 'n'"),
        ("24 if 1 else 0", "IfExp"),
        ("24 // 1", "BinOp"),
        ("24 % 25", "BinOp"),
        ("2**10**10", "exponent 10000000000"),
        ("2**0.5", "exponent 1/2"),
        ("4 * 6)", "cannot parse"),
        ("", "empty"),
    ],
)
def test_refused_constructs_name_what_was_refused(text, refused):
    with pytest.raises(ExpressionError, match=refused.replace("(", r"\(")):
        parse_expression(text)


def test_size_limits():
    with pytest.raises(ExpressionError, match=f"limit is {MAX_TEXT_CHARS}"):
        parse_expression("1+" * 300 + "1")
    with pytest.raises(ExpressionError, match=f"limit is {MAX_NODES}"):
        parse_expression("1+" * 100 + "1")


def test_division_by_zero_and_unbound_symbol():
    with pytest.raises(ExpressionError, match="division by zero"):
        evaluate(parse_expression("24 / (3 - 3)"))
    with pytest.raises(ExpressionError, match="division by zero"):
        evaluate(parse_expression("0 ** -1"))
    with pytest.raises(ExpressionError, match="symbol 'n' has no value"):
        evaluate(parse_expression("n", {"n"}))


def test_symbolic_exponents_are_bounded_when_evaluated():
    tree = parse_expression("3**n", {"n"})
    assert evaluate(tree, {"n": 30}) == 3**30
    with pytest.raises(ExpressionError, match="exponent 100"):
        evaluate(tree, {"n": 100})
    huge = parse_expression("((9**16)**n)**n", {"n"})
    with pytest.raises(ExpressionError, match="bits"):
        evaluate(huge, {"n": 30})
