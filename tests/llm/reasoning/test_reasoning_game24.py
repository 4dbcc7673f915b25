"""Game of 24: the puzzle file, the checker (wrong, malformed, reused or omitted numbers,
division by zero, code injection) and the exact solver on every puzzle."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from effml.errors import ConfigError, MissingDataError
from llm.reasoning.game24 import check_answer, extract_expression, load_puzzles, solve
from tests.conftest import require_data


@pytest.mark.parametrize(
    "reply",
    [
        "Answer: (6 - 4) * (3 + 9) = 24",
        "Steps:\n6 - 4 = 2 (left: 2 3 9)\n3 + 9 = 12 (left: 2 12)\nAnswer: (6 - 4) * (3 + 9) = 24",
        "(3 + 9) × (6 − 4)",
        "answer: 24 = (9 + 3) * (6 - 4)",
        "Answer: (6 - 4) x (3 + 9) = 24.",
        "Let me think.\n**Answer:** (6 - 4) * (3 + 9) = 24",
    ],
)
def test_correct_replies(reply):
    verdict = check_answer([4, 6, 3, 9], reply)
    assert verdict.correct, verdict.reason


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "empty reply"),
        ("   \n ", "empty reply"),
        ("Answer: None", "malformed"),
        ("Answer: There is no solution.", "malformed"),
        ("Answer: (6 + 4) * (3 + 9) = 24", "evaluates to 120"),
        ("Answer: (6 - 4) * (3 + 9 = 24", "malformed"),
        ("Answer: (6 - 4) * (9 + 3) * 1 = 24", "each once"),
        ("Answer: (6 - 4) * 12 = 24", "each once"),
        ("Answer: 6 * 4 = 24", "each once"),
        ("Answer: (6 - 4) * (9 + 9) / 3 * 2 = 24", "each once"),
        ("Answer: 4 * 6 + 3 * 9 / (3 - 3) = 24", "each once"),
        ("Answer: __import__('os').system('echo hi') = 24", "Call"),
        ("Answer: ().__class__ = 24", "Attribute"),
        ("Answer: (lambda: 24)() = 24", "refused"),
        ("Answer: 2**10**10 = 24", "exponent"),
        ("Answer: " + "(" * 300 + "24" + ")" * 300, "limit"),
        ("Answer: (6 - 4) ** 3 * 3 = 24", "not allowed"),
        ("Answer: -(4 - 6) * (3 + 9) = 24", "not allowed"),
    ],
)
def test_rejected_replies_say_why(reply, reason):
    verdict = check_answer([4, 6, 3, 9], reply)
    assert not verdict.correct
    assert reason in verdict.reason


def test_division_by_zero_is_rejected():
    verdict = check_answer([1, 1, 4, 6], "Answer: 4 * 6 / (1 - 1) = 24")
    assert not verdict.correct and verdict.reason == "division by zero"


def test_fractional_intermediates_are_exact():
    assert check_answer([3, 3, 8, 8], "Answer: 8 / (3 - 8 / 3) = 24").correct
    assert not check_answer([3, 3, 8, 8], "Answer: 8 / (3 - 8 / 3.0001) = 24").correct


def test_extract_takes_the_last_answer_or_last_line():
    assert extract_expression("Answer: 1 + 2 = 3\nmore\nAnswer: 4 * 6 = 24") == "4 * 6"
    assert extract_expression("thinking\n(4 * 6) = 24\n") == "(4 * 6)"


def test_solver_on_known_and_impossible_puzzles():
    assert check_answer([3, 3, 8, 8], solve([3, 3, 8, 8])).correct
    assert check_answer([1, 5, 5, 5], solve([1, 5, 5, 5])).correct
    assert solve([1, 1, 1, 1]) is None
    assert solve([24]) == "24"


def test_load_puzzles_errors(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("DATA_DIR", raising=False)
    with pytest.raises(MissingDataError, match="DATA_DIR"):
        load_puzzles()
    with pytest.raises(MissingDataError, match="not found"):
        load_puzzles(tmp_path / "24.csv")
    csv = tmp_path / "24.csv"
    csv.write_text("Rank,Puzzles\n1,1 1 4 6\n2,3 3 8 8\n")
    assert [p.numbers for p in load_puzzles(csv, ranks=(2, 2))] == [(3, 3, 8, 8)]
    with pytest.raises(ConfigError, match="selects no puzzle"):
        load_puzzles(csv, ranks=(901, 1000))
    with pytest.raises(ConfigError, match="first <= last"):
        load_puzzles(csv, ranks=(5, 1))


@pytest.mark.requires_data
def test_default_test_set_and_solver_on_all_1362_puzzles():
    root = require_data("game24/24.csv")
    hard = load_puzzles(root / "game24" / "24.csv")
    assert len(hard) == 100 and hard[0].rank == 901 and hard[0].text == "4 5 6 10"
    puzzles = load_puzzles(root / "game24" / "24.csv", ranks=(1, 1362))
    assert len(puzzles) == 1362
    start = time.perf_counter()
    unsolved = [
        p.rank for p in puzzles if not check_answer(p.numbers, solve(p.numbers) or "").correct
    ]
    assert unsolved == []
    assert time.perf_counter() - start < 30
