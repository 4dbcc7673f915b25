"""Whitelisted exact arithmetic for checking model answers: parse with ``ast``, evaluate with
``fractions.Fraction``, never ``eval``.

Rules (anything else raises :class:`ExpressionError` naming what was refused):

- numbers: integer and plain decimal literals (``7``, ``1.5``, ``.25``), read exactly from
  their text as Fractions; no scientific notation, underscores, complex or boolean literals;
- operators: binary ``+ - * /``, unary ``-`` and ``+``, parentheses, ``**`` with an integer
  exponent; a constant exponent must satisfy ``|e| <= MAX_CONST_EXPONENT`` (16); an exponent
  holding a symbol (``2**n``) is checked when evaluated (``|e| <= max_exponent``, 64 by
  default), and every power whose result would exceed ``MAX_RESULT_BITS`` bits is refused;
- names: only the symbols passed in ``allow_symbols`` (``x``, ``n``); calls, attributes,
  subscripts, comparisons, lambdas, strings and every other node are refused;
- size: at most ``MAX_TEXT_CHARS`` characters and ``MAX_NODES`` tree nodes.

Model spellings accepted by :func:`normalize` before parsing: ``×`` ``·`` ``∗`` for ``*``,
``÷`` for ``/``, ``−`` ``–`` for ``-``, ``^`` for ``**`` (polynomial and sequence answers),
``x``/``X`` between two operands as multiplication when ``x`` is not a symbol (24-game text
``(4 x 6)``), and implicit multiplication (``3n``, ``2(n+1)``, ``)(``) when symbols are allowed.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction

from effml.errors import UserError

MAX_TEXT_CHARS = 500
MAX_NODES = 200
MAX_CONST_EXPONENT = 16
MAX_RESULT_BITS = 20_000

_DECIMAL = re.compile(r"^(\d+(\.\d*)?|\.\d+)$")
_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_SPELLINGS = {"×": "*", "·": "*", "∗": "*", "÷": "/", "−": "-", "–": "-", "^": "**"}


class ExpressionError(UserError, ValueError):
    """An answer expression that is malformed or uses something outside the whitelist."""


@dataclass(frozen=True)
class Verdict:
    """A checker's decision and why."""

    correct: bool
    reason: str


def final_answer_line(reply: str) -> str:
    """The text after the last ``Answer:`` of a reply (ToT's format; Markdown ``**Answer:**``
    and ``# Answer:`` too), else its last non-empty line; ``""`` for an empty reply."""
    lines = [line.strip().lstrip("*#> ").strip() for line in reply.strip().splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    answers = [line for line in lines if line.lower().startswith("answer:")]
    if not answers:
        return lines[-1]
    return answers[-1][len("answer:") :].lstrip("* ").strip()


@dataclass(frozen=True)
class Number:
    """A literal, exact."""

    value: Fraction


@dataclass(frozen=True)
class Symbol:
    """A named symbol from the allowed set."""

    name: str


@dataclass(frozen=True)
class Negate:
    """Unary minus."""

    operand: Node


@dataclass(frozen=True)
class BinOp:
    """A binary operation; ``op`` is one of ``+ - * / **``."""

    op: str
    left: Node
    right: Node


Node = Number | Symbol | Negate | BinOp


def normalize(text: str, allow_symbols: frozenset[str] | set[str] = frozenset()) -> str:
    """The usual model spellings rewritten to Python arithmetic (see the module docstring)."""
    for spelling, python in _SPELLINGS.items():
        text = text.replace(spelling, python)
    if "x" not in allow_symbols:
        text = re.sub(r"(?<=[\d.)])\s*[xX]\s*(?=[\d.(])", " * ", text)
    if allow_symbols:
        names = "|".join(sorted((re.escape(s) for s in allow_symbols), key=len, reverse=True))
        text = re.sub(rf"(\d|\))\s*(?=\(|(?:{names})\b)", r"\1*", text)
        text = re.sub(rf"\b({names})\s*(?=\()", r"\1*", text)
    return text


def parse_expression(text: str, allow_symbols: frozenset[str] | set[str] = frozenset()) -> Node:
    """Parse ``text`` into a whitelisted arithmetic tree.

    Args:
        text: the expression as the model wrote it (normalized first, see :func:`normalize`).
        allow_symbols: names that may appear (``{"n"}``); any other name is refused.

    Returns:
        the tree of :class:`Number`, :class:`Symbol`, :class:`Negate` and :class:`BinOp`.

    Raises:
        ExpressionError: malformed text, a refused construct, or a size limit exceeded.
    """
    if len(text) > MAX_TEXT_CHARS:
        raise ExpressionError(
            f"expression of {len(text)} characters refused: the limit is {MAX_TEXT_CHARS}"
        )
    source = normalize(text, allow_symbols).strip()
    if not source:
        raise ExpressionError("empty expression")
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError) as err:
        raise ExpressionError(
            f"cannot parse {text.strip()!r}: {getattr(err, 'msg', err)}"
        ) from None
    count = sum(1 for _ in ast.walk(tree))
    if count > MAX_NODES:
        raise ExpressionError(f"expression of {count} nodes refused: the limit is {MAX_NODES}")
    return _convert(tree.body, source, frozenset(allow_symbols))


def _convert(node: ast.AST, source: str, symbols: frozenset[str]) -> Node:
    """One ``ast`` node converted, or refused."""
    if isinstance(node, ast.Constant):
        literal = ast.get_source_segment(source, node) or repr(node.value)
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ExpressionError(f"literal {literal} refused: only numbers are allowed")
        if not _DECIMAL.match(literal):
            raise ExpressionError(
                f"number {literal} refused: write integers or plain decimals (1.5)"
            )
        return Number(Fraction(literal))
    if isinstance(node, ast.Name):
        if node.id not in symbols:
            allowed = ", ".join(sorted(symbols)) or "none"
            raise ExpressionError(f"name {node.id!r} refused: allowed symbols are {allowed}")
        return Symbol(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _convert(node.operand, source, symbols)
        return Negate(operand) if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        op = _BINOPS[type(node.op)]
        left = _convert(node.left, source, symbols)
        right = _convert(node.right, source, symbols)
        if op == "**" and not symbols_used(right):
            exponent = evaluate(right)
            if exponent.denominator != 1 or abs(exponent) > MAX_CONST_EXPONENT:
                raise ExpressionError(
                    f"exponent {exponent} refused: powers need an integer exponent with "
                    f"|exponent| <= {MAX_CONST_EXPONENT}"
                )
        return BinOp(op, left, right)
    shown = ast.get_source_segment(source, node) or type(node).__name__
    raise ExpressionError(
        f"{type(node).__name__} {shown!r} refused: only numbers, + - * / ** and parentheses "
        "are allowed"
    )


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children, left before right."""
    yield node
    if isinstance(node, Negate):
        yield from walk(node.operand)
    elif isinstance(node, BinOp):
        yield from walk(node.left)
        yield from walk(node.right)


def numbers_used(node: Node) -> list[Fraction]:
    """The literals of the tree, left to right (a negated literal counts as itself)."""
    return [n.value for n in walk(node) if isinstance(n, Number)]


def symbols_used(node: Node) -> set[str]:
    """The names of the symbols in the tree."""
    return {n.name for n in walk(node) if isinstance(n, Symbol)}


def operators_used(node: Node) -> set[str]:
    """The operators of the tree: ``+ - * / **`` and ``neg`` for unary minus."""
    ops = {n.op for n in walk(node) if isinstance(n, BinOp)}
    return ops | ({"neg"} if any(isinstance(n, Negate) for n in walk(node)) else set())


def evaluate(
    node: Node, env: Mapping[str, Fraction | int] | None = None, max_exponent: int = 64
) -> Fraction:
    """The exact value of the tree.

    Args:
        node: a tree from :func:`parse_expression`.
        env: values of the symbols.
        max_exponent: the largest ``|exponent|`` a power may have once evaluated.

    Raises:
        ExpressionError: division by zero, an unbound symbol, a non-integer or too large
            exponent, or a power whose result would exceed ``MAX_RESULT_BITS`` bits.
    """
    env = env or {}
    if isinstance(node, Number):
        return node.value
    if isinstance(node, Symbol):
        if node.name not in env:
            raise ExpressionError(f"symbol {node.name!r} has no value")
        return Fraction(env[node.name])
    if isinstance(node, Negate):
        return -evaluate(node.operand, env, max_exponent)
    left = evaluate(node.left, env, max_exponent)
    right = evaluate(node.right, env, max_exponent)
    if node.op == "+":
        return left + right
    if node.op == "-":
        return left - right
    if node.op == "*":
        return left * right
    if node.op == "/":
        if right == 0:
            raise ExpressionError("division by zero")
        return left / right
    return _power(left, right, max_exponent)


def _power(base: Fraction, exponent: Fraction, max_exponent: int) -> Fraction:
    """``base ** exponent`` within the exponent and result-size limits."""
    if exponent.denominator != 1 or abs(exponent) > max_exponent:
        raise ExpressionError(
            f"exponent {exponent} refused: powers need an integer exponent with "
            f"|exponent| <= {max_exponent}"
        )
    if base == 0 and exponent < 0:
        raise ExpressionError("division by zero (0 to a negative power)")
    bits = max(base.numerator.bit_length(), base.denominator.bit_length()) * abs(int(exponent))
    if bits > MAX_RESULT_BITS:
        raise ExpressionError(
            f"power {base}**{exponent} refused: its result would need about {bits} bits "
            f"(limit {MAX_RESULT_BITS})"
        )
    return base ** int(exponent)


def format_fraction(value: Fraction) -> str:
    """``3``, ``-3/2``: a Fraction as the parser reads it back."""
    return (
        str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    )
