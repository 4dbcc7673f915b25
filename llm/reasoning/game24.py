"""Game of 24: the puzzles of Tree of Thoughts (arXiv:2305.10601), an exact checker and an exact
solver.

A reply is correct when its final expression uses every input number exactly once (as a
multiset), only ``+ - * /`` and parentheses, and equals 24 exactly (Fractions). The final
expression is the text after the last ``Answer:`` (ToT's format) or else the last non-empty
line, up to its first ``=`` (``(6 - 4) * (3 + 9) = 24``).
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from effml.errors import ConfigError, DataError, MissingDataError
from llm.reasoning.arith import (
    ExpressionError,
    Verdict,
    evaluate,
    final_answer_line,
    format_fraction,
    numbers_used,
    operators_used,
    parse_expression,
)

TARGET = Fraction(24)
DEFAULT_RANKS = (901, 1000)


@dataclass(frozen=True)
class Puzzle:
    """One puzzle: its 1-based rank in ``24.csv`` (by human solving time) and its numbers."""

    rank: int
    numbers: tuple[int, ...]

    @property
    def text(self) -> str:
        """The numbers as ToT's prompts show them: ``4 5 6 10``."""
        return " ".join(str(n) for n in self.numbers)


def default_path() -> Path:
    """``$DATA_DIR/game24/24.csv``."""
    root = os.environ.get("DATA_DIR")
    if not root:
        raise MissingDataError(
            "DATA_DIR is not set, so the Game of 24 puzzles cannot be found: set DATA_DIR to "
            "the shared data folder (it holds game24/24.csv) or pass the csv path"
        )
    return Path(root) / "game24" / "24.csv"


def load_puzzles(
    path: str | Path | None = None, ranks: tuple[int, int] = DEFAULT_RANKS
) -> list[Puzzle]:
    """The puzzles whose rank lies in ``ranks`` (1-based, inclusive, the file's Rank column).

    Args:
        path: the csv (``Rank,Puzzles,...``); ``$DATA_DIR/game24/24.csv`` when None.
        ranks: ``(first, last)``; the default (901, 1000) is ToT's hard test set.
    """
    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        raise MissingDataError(
            f"Game of 24 puzzles not found at {path}: it is 24.csv of the Tree of Thoughts "
            "repository (princeton-nlp/tree-of-thought-llm, src/tot/data/24/24.csv)"
        )
    first, last = ranks
    if not 1 <= first <= last:
        raise ConfigError("ranks", list(ranks), "needs 1 <= first <= last", example=[901, 1000])
    puzzles = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                rank, numbers = int(row["Rank"]), tuple(int(v) for v in row["Puzzles"].split())
            except (KeyError, TypeError, ValueError) as err:
                raise DataError(
                    f"{path}: row {row} is not 'Rank,Puzzles,...' with four integers ({err}); "
                    "download 24.csv again"
                ) from None
            if first <= rank <= last:
                puzzles.append(Puzzle(rank, numbers))
    if not puzzles:
        raise ConfigError("ranks", list(ranks), f"selects no puzzle of {path}", example=[901, 1000])
    return puzzles


def extract_expression(answer_text: str) -> str:
    """The final expression of a reply (see the module docstring); ``""`` when there is none."""
    line = final_answer_line(answer_text)
    parts = [part.strip() for part in line.strip().strip("`$.").split("=")]
    if len(parts) > 1 and parts[0] == "24":
        return parts[1]
    return parts[0]


def check_answer(puzzle_numbers: Sequence[int], answer_text: str) -> Verdict:
    """Whether a reply solves the puzzle: every number once, ``+ - * /`` only, exactly 24."""
    if not answer_text.strip():
        return Verdict(False, "empty reply")
    expression = extract_expression(answer_text)
    if not expression:
        return Verdict(False, "no expression found")
    try:
        tree = parse_expression(expression)
    except ExpressionError as err:
        return Verdict(False, f"malformed: {err}")
    refused = operators_used(tree) - {"+", "-", "*", "/"}
    if refused:
        return Verdict(False, f"operator(s) {sorted(refused)} not allowed: only + - * /")
    used = numbers_used(tree)
    if Counter(used) != Counter(Fraction(n) for n in puzzle_numbers):
        shown = " ".join(format_fraction(v) for v in used)
        return Verdict(
            False,
            f"uses the numbers [{shown}] but the puzzle is "
            f"[{' '.join(str(n) for n in puzzle_numbers)}]: each once",
        )
    try:
        value = evaluate(tree)
    except ExpressionError as err:
        return Verdict(False, str(err))
    if value != TARGET:
        return Verdict(False, f"evaluates to {format_fraction(value)}, not 24")
    return Verdict(True, "correct")


def solve(numbers: Sequence[int], target: int = 24) -> str | None:
    """An expression reaching ``target`` with every number once, or None when none exists.

    Exhaustive over every pair and the six operations (``+ *``, both orders of ``- /``) with
    Fractions; states whose sorted values were already explored are skipped.
    """
    seen: set[tuple[Fraction, ...]] = set()

    def search(items: list[tuple[Fraction, str]]) -> str | None:
        if len(items) == 1:
            return items[0][1] if items[0][0] == target else None
        key = tuple(sorted(value for value, _ in items))
        if key in seen:
            return None
        seen.add(key)
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                (a, ea), (b, eb) = items[i], items[j]
                rest = [items[k] for k in range(len(items)) if k not in (i, j)]
                options = [(a + b, f"({ea} + {eb})"), (a * b, f"({ea} * {eb})"),
                           (a - b, f"({ea} - {eb})"), (b - a, f"({eb} - {ea})")]  # fmt: skip
                if b != 0:
                    options.append((a / b, f"({ea} / {eb})"))
                if a != 0:
                    options.append((b / a, f"({eb} / {ea})"))
                for value, text in options:
                    found = search([*rest, (value, text)])
                    if found is not None:
                        return found
        return None

    found = search([(Fraction(n), str(n)) for n in numbers])
    if found is None:
        return None
    return found[1:-1] if found.startswith("(") and len(numbers) > 1 else found
