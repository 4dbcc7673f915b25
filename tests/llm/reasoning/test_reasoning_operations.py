"""The operation vocabulary, the controller and the thought-graph drawings, on a scripted
client (no model)."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest

from effml.errors import ConfigError
from llm.base import LLMClient
from llm.reasoning import graph_draw
from llm.reasoning.adapters import Game24Adapter, PolynomialAdapter
from llm.reasoning.controller import check_graph, run_graph, solve
from llm.reasoning.game24 import Puzzle
from llm.reasoning.operations import (
    Aggregate,
    Context,
    Generate,
    GroundTruth,
    Improve,
    KeepBestN,
    KeepValid,
    Score,
    Validate,
    Vote,
    keep_best,
)
from llm.reasoning.polynomial import generate as generate_polynomial


class ScriptedClient(LLMClient):
    """Answers with ``script(prompt_text, n)``; records every request."""

    def __init__(self, script: Callable[[str, int], list[str]]) -> None:
        super().__init__()
        self.script = script
        self.requests: list[tuple[str, int]] = []

    def identity(self) -> dict:
        return {"kind": "scripted"}

    def complete(self, messages, n=1, temperature=0.0, max_tokens=512, stop=None, *, key=None):
        text = messages[-1]["content"]
        self.requests.append((text, n))
        self.usage.add(calls=1, prompt_tokens=10, completion_tokens=5 * n)
        return self.script(text, n)


PUZZLE = Puzzle(901, (4, 5, 6, 10))


def context(script: Callable[[str, int], list[str]], adapter=None, max_calls: int = 50):
    adapter = adapter or Game24Adapter(PUZZLE)
    ctx = Context(ScriptedClient(script), adapter, max_calls, max_tokens=32)
    state, text = adapter.root()
    return ctx, ctx.graph.add(state, text, "root", [], "input")


def test_generate_parses_proposals_into_children() -> None:
    reply = "10 - 4 = 6 (left: 5 6 6)\n5 * 6 = 30 (left: 4 10 30)\nnonsense\n4 + 5 = 9"
    ctx, root = context(lambda text, n: [reply] * n)
    children = Generate("propose", k=1)([root], ctx)
    assert [c.state["numbers"] for c in children] == [
        ["5", "6", "6"],
        ["4", "10", "30"],
        ["6", "10", "9"],
    ]
    assert all(c.parents == [root.id] for c in children)
    assert ctx.graph.operations[-1]["outputs"] == [c.id for c in children]
    assert ctx.exchanges[0]["prompt"] == "propose" and ctx.calls == 1


def test_generate_makes_nothing_of_an_empty_reply() -> None:
    ctx, root = context(lambda text, n: [""] * n)
    assert Generate("io", k=2)([root], ctx) == []
    assert ctx.exchanges[0]["replies"] == ["", ""]


def test_score_sums_the_mapped_labels_and_shares_requests_of_equal_states() -> None:
    ctx, root = context(lambda text, n: ["... sure", "likely", "impossible"][:n])
    a = ctx.graph.add({"numbers": ["4", "6"], "steps": []}, "a", "thought", [0], "t")
    b = ctx.graph.add({"numbers": ["4", "6"], "steps": []}, "b", "thought", [0], "t")
    Score("value", samples=3)([a, b], ctx)
    assert a.score == b.score == pytest.approx(20 + 1 + 0.001)
    assert ctx.calls == 1


def test_unparsed_value_replies_score_zero() -> None:
    ctx, root = context(lambda text, n: ["I do not know"] * n)
    assert Score("value", samples=3)([root], ctx)[0].score == 0.0


def test_keep_best_n_is_tot_greedy_selection() -> None:
    ctx, _ = context(lambda text, n: [])
    scores = [1.0, 20.001, 3.0, 60.0, 0.003, 21.0, 20.001]
    thoughts = [ctx.graph.add({}, str(s), "thought", [], "t") for s in scores]
    for t, s in zip(thoughts, scores, strict=True):
        t.score = s
    kept = KeepBestN(5)(thoughts, ctx)
    assert [t.score for t in kept] == [60.0, 21.0, 20.001, 20.001, 3.0]
    assert [t.id for t in kept[2:4]] == [thoughts[1].id, thoughts[6].id]  # ties keep order
    assert keep_best(thoughts, 0) == []


def test_validate_checks_step_arithmetic_exactly_and_keep_valid_filters() -> None:
    ctx, _ = context(lambda text, n: [])
    good = ctx.graph.add(
        {"numbers": ["5", "6", "6"], "steps": ["10 - 4 = 6 (left: 5 6 6)"]},
        "good",
        "thought",
        [],
        "t",
    )
    wrong = ctx.graph.add(
        {"numbers": ["5", "6", "7"], "steps": ["10 - 4 = 7 (left: 5 6 7)"]},
        "wrong",
        "thought",
        [],
        "t",
    )
    reused = ctx.graph.add(
        {"numbers": ["6", "10", "16"], "steps": ["8 + 8 = 16"]}, "reused", "thought", [], "t"
    )
    Validate("step")([good, wrong, reused], ctx)
    assert (good.valid, wrong.valid, reused.valid) == (True, False, False)
    assert "wrong arithmetic" in wrong.reason and "not available" in reused.reason
    assert KeepValid()([good, wrong, reused], ctx) == [good]
    with pytest.raises(ConfigError, match="checker"):
        Validate("magic")


def test_ground_truth_marks_answers_without_filtering() -> None:
    ctx, _ = context(lambda text, n: [])
    right = ctx.graph.add({"answer": "(10 - 6) * 5 + 4"}, "r", "answer", [], "t")
    wrong = ctx.graph.add({"answer": "4 + 5 + 6 + 10"}, "w", "answer", [], "t")
    out = GroundTruth()([wrong, right], ctx)
    assert out == [wrong, right] and (wrong.solved, right.solved) == (False, True)
    assert ctx.calls == 0 and wrong.valid is None  # scoring only
    Validate("step")([wrong, right], ctx)
    assert wrong.valid and right.valid  # answers have no steps to check
    Validate("oracle")([wrong, right], ctx)  # a strategy guided by the ground truth
    assert (wrong.valid, right.valid) == (False, True) and "not 24" in wrong.reason


def test_vote_aggregate_and_improve() -> None:
    def script(text: str, n: int) -> list[str]:
        if "Candidates" in text:
            return ["Best: 2", "best 2", "Best: 1", "Best: 9"][:n]
        if "Partial results" in text:
            return ["Answer: (10 - 6) * 5 + 4"] * n
        assert "A check found: evaluates to 25" in text
        return ["Answer: 4 * (10 - 6) + 5 + 6"]

    ctx, _ = context(script)
    a = ctx.graph.add({"answer": "4 + 5 + 6 + 10"}, "4 + 5 + 6 + 10", "answer", [], "t")
    b = ctx.graph.add({"answer": "(10 - 6) * 5 + 4"}, "(10 - 6) * 5 + 4", "answer", [], "t")
    Vote(samples=4)([a, b], ctx)
    assert (a.score, b.score) == (1.0, 2.0)
    merged = Aggregate()([a, b], ctx)
    assert len(merged) == 1 and merged[0].parents == [a.id, b.id]
    a.valid, a.reason = False, "evaluates to 25, not 24"
    improved = Improve()([a, b], ctx)
    assert improved[1] is b and improved[0].parents == [a.id]


def test_controller_stops_at_the_budget_and_keeps_what_was_made() -> None:
    graph = [
        {"op": "generate", "prompt": "io", "k": 1},
        {"op": "ground_truth"},
        {"op": "generate", "prompt": "io", "k": 1},
        {"op": "generate", "prompt": "io"},
    ]
    client = ScriptedClient(lambda text, n: ["Answer: (10 - 6) * 5 + 4"] * n)
    record = solve(Game24Adapter(PUZZLE), graph, client, max_calls=2)
    assert record["calls"] == 2 and len(client.requests) == 2
    assert record["stopped"] == "max_calls=2 reached"
    assert record["correct"] and record["answer"] == "(10 - 6) * 5 + 4"
    assert record["prompt_tokens"] == 20 and record["completion_tokens"] == 10


def test_controller_runs_a_dag_of_named_steps() -> None:
    replies = iter(["Answer: x = 1, 2, 3", "Answer: x = 1, 2, 4"])
    problem = generate_polynomial(5, degree=3)
    adapter = PolynomialAdapter(problem)
    graph = [
        {"op": "generate", "prompt": "io", "id": "first"},
        {"op": "generate", "prompt": "cot", "inputs": ["root"], "id": "second"},
        {"op": "aggregate", "inputs": ["first", "second"]},
    ]
    check_graph(graph, "polynomial")
    ctx, root = context(lambda text, n: [next(replies, "Answer: x = 0")], adapter)
    out = run_graph(graph, [root], ctx)
    first, second = ctx.graph.thoughts[1], ctx.graph.thoughts[2]
    assert first.parents == [root.id] and second.parents == [root.id]
    assert out[0].parents == [first.id, second.id]


@pytest.mark.parametrize(
    ("graph", "match"),
    [
        ([{"op": "teleport"}], "op=teleport"),
        ([{"op": "keep_best_n", "k": 3}], "does not take"),
        ([{"op": "aggregate", "inputs": ["nowhere"]}], "names no earlier step"),
        ([{"repeat": 0, "ops": [{"op": "keep_valid"}]}], "repeat=0"),
        ([], "non-empty list"),
        ([{"op": "got", "inspectors": ["exact", "judge"]}], "not an inspector of polynomial"),
    ],
)
def test_check_graph_names_the_bad_step(graph: list, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_graph(graph, "polynomial")


def record_graph() -> dict:
    client = ScriptedClient(
        lambda text, n: ["4 * 6 = 24 (left: 5 10 24)"] * n if "Suggest" in text else ["likely"] * n
    )
    graph = [{"op": "generate", "prompt": "propose"}, {"op": "score", "samples": 2}]
    return solve(Game24Adapter(PUZZLE), graph, client, max_calls=10)["graph"]


def test_thought_graph_json_and_dot() -> None:
    graph = record_graph()
    assert [t["kind"] for t in graph["thoughts"]] == ["root", "thought"]
    assert graph["thoughts"][1]["score"] == 2.0
    assert [op["op"] for op in graph["operations"]] == ["generate", "score"]
    dot = graph_draw.to_dot(graph, "title")
    assert "n0 -> n1;" in dot and "v=2" in dot and dot.startswith("digraph")


@pytest.mark.parametrize("graphviz", [True, False])
def test_draw_writes_dot_and_png(graphviz: bool, tmp_path: Path, monkeypatch) -> None:
    if graphviz and graph_draw.shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed")
    if not graphviz:
        monkeypatch.setattr(graph_draw.shutil, "which", lambda name: None)
    out = graph_draw.draw(record_graph(), tmp_path / "g", "t")
    assert out.suffix == ".png" and out.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "g.dot").is_file()


def test_depths_follow_the_deepest_parent() -> None:
    graph = {
        "thoughts": [
            {"id": 0, "parents": []},
            {"id": 1, "parents": [0]},
            {"id": 2, "parents": [0, 1]},
        ]
    }
    assert graph_draw.depths(graph) == {0: 0, 1: 1, 2: 2}


def test_parsed_numbers_are_exact() -> None:
    ctx, root = context(lambda text, n: ["10 / 4 = 5/2 (left: 5/2 5 6)"])
    (child,) = Generate("propose")([root], ctx)
    assert child.state["numbers"] == ["5/2", "5", "6"]
    assert Fraction(child.state["numbers"][0]) == Fraction(5, 2)
