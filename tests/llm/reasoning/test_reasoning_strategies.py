"""The strategies: ToT's selection, GoT's acceptance rule and loops, the configs, and every
strategy end to end on the exact-solver harness client."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from llm.base import LLMClient
from llm.reasoning import strategies
from llm.reasoning.adapters import Game24Adapter, PolynomialAdapter, SequenceAdapter
from llm.reasoning.controller import solve
from llm.reasoning.game24 import Puzzle
from llm.reasoning.got import accepted, divide
from llm.reasoning.oracle import SolverClient
from llm.reasoning.polynomial import generate as generate_polynomial
from llm.reasoning.sequence import generate as generate_sequence

CONF = Path(__file__).resolve().parents[3] / "conf"
PUZZLE = Puzzle(901, (4, 5, 6, 10))


class ScriptedClient(LLMClient):
    """Answers with ``script(prompt_text, n)``; records every request."""

    def __init__(self, script: Callable[[str, int], list[str]]) -> None:
        super().__init__()
        self.script = script
        self.requests: list[str] = []

    def identity(self) -> dict:
        return {"kind": "scripted"}

    def complete(self, messages, n=1, temperature=0.0, max_tokens=512, stop=None, *, key=None):
        self.requests.append(messages[-1]["content"])
        self.usage.add(calls=1)
        return self.script(messages[-1]["content"], n)


def test_tot_keeps_the_five_best_valued_states_each_step() -> None:
    """Six proposals; values sum three samples of 20/1/0.001; the lowest-valued one is dropped
    (6 - 4 = 2: 0.003)."""
    proposals = (
        "10 - 4 = 6 (left: 5 6 6)\n10 - 5 = 5 (left: 4 5 6)\n"
        "6 - 4 = 2 (left: 2 5 10)\n5 + 6 = 11 (left: 4 10 11)\n"
        "4 * 5 = 20 (left: 6 10 20)\n10 + 6 = 16 (left: 4 5 16)"
    )
    values = {
        "5 6 6": ["sure", "sure", "likely"],
        "4 5 6": ["sure", "likely", "likely"],
        "2 5 10": ["impossible"] * 3,
        "4 10 11": ["likely", "impossible", "impossible"],
        "6 10 20": ["sure", "sure", "sure"],
        "4 5 16": ["likely"] * 3,
    }

    def script(text: str, n: int) -> list[str]:
        numbers = text.split("\n")[0].removeprefix("Numbers: ")
        if "Suggest" in text:
            return [proposals if numbers == "4 5 6 10" else ""] * n
        return values.get(numbers, ["impossible"] * 3)[:n]

    client = ScriptedClient(script)
    record = solve(Game24Adapter(PUZZLE), strategies.tot(steps=1), client, max_calls=50)
    scored = {t["text"]: t["score"] for t in record["graph"]["thoughts"] if t["score"] is not None}
    assert scored["4 * 5 = 20 (left: 6 10 20)"] == pytest.approx(60.0)
    assert scored["10 - 4 = 6 (left: 5 6 6)"] == pytest.approx(41.0)
    assert scored["6 - 4 = 2 (left: 2 5 10)"] == pytest.approx(0.003)
    keep = record["graph"]["operations"][2]
    assert keep["op"] == "keep_best_n" and len(keep["outputs"]) == 5
    order = [record["graph"]["thoughts"][i]["text"].split(" (")[0] for i in keep["outputs"]]
    assert order == ["4 * 5 = 20", "10 - 4 = 6", "10 - 5 = 5", "10 + 6 = 16", "5 + 6 = 11"]
    assert sum("Steps:" in r for r in client.requests) == 5  # step four: one answer per path


def test_acceptance_needs_every_inspector() -> None:
    assert accepted([True, True, True])
    assert not accepted([True, False, True]) and not accepted([False]) and not accepted([])


def got24_script(judge: str, rederive: Callable[[str], str]) -> Callable[[str, int], list[str]]:
    def script(text: str, n: int) -> list[str]:
        if text.startswith("Known numbers: 4 5 6 10"):
            return ["10 - 6 = 4\n5 * 4 = 20"]
        if text.startswith("Known numbers: 4 5 4"):
            return ["5 * 4 = 20"]
        if text.startswith("Known numbers: 4 20"):
            return ["4 + 20 = 24"]
        if text.startswith("Numbers:"):
            return [judge] * n
        if text.startswith("Compute"):
            return [rederive(text)]
        return ["no idea"]

    return script


def exact(text: str) -> str:
    return {"10 - 6": "4", "5 * 4": "20", "4 + 20": "24"}[text[8:].split(".")[0]]


def test_got24_accepts_when_all_inspectors_agree() -> None:
    client = ScriptedClient(got24_script("sure", exact))
    record = solve(Game24Adapter(PUZZLE), strategies.got("game24"), client, max_calls=40)
    assert record["correct"] and record["answer"] == "((10 - 6) + (5 * 4))"
    crossroads = [t for t in record["graph"]["thoughts"] if t["kind"] == "crossroad"]
    assert [c["state"]["inspectors"] for c in crossroads] == [
        {"exact": True, "judge": True, "rederive": True}
    ] * 3
    assert all(len(c["parents"]) == 2 for c in crossroads)  # AND of two conditions


def test_got24_one_disagreeing_inspector_blocks_acceptance() -> None:
    client = ScriptedClient(got24_script("sure", lambda text: "7"))  # the re-derivation is off
    record = solve(Game24Adapter(PUZZLE), strategies.got("game24"), client, max_calls=40)
    assert not record["correct"] and record["answer"] is None
    crossroads = [t for t in record["graph"]["thoughts"] if t["kind"] == "crossroad"]
    assert crossroads and all(not c["valid"] for c in crossroads)
    assert not any(
        t["kind"] == "condition" and t["parents"] and t["op"] == "got" and "=" in t["text"]
        for t in record["graph"]["thoughts"]
    )


def test_got24_chain_stops_at_the_first_disagreement() -> None:
    client = ScriptedClient(got24_script("impossible", exact))
    record = solve(Game24Adapter(PUZZLE), strategies.got("game24", max_rounds=1), client, 40)
    crossroads = [t for t in record["graph"]["thoughts"] if t["kind"] == "crossroad"]
    assert crossroads[0]["state"]["inspectors"] == {"exact": True, "judge": False}
    assert not any(r.startswith("Compute") for r in client.requests)


def test_got24_wrong_arithmetic_is_rejected_by_code_before_any_model_inspector() -> None:
    script = got24_script("sure", exact)
    client = ScriptedClient(lambda text, n: ["10 - 6 = 5"] if "Known" in text else script(text, n))
    record = solve(Game24Adapter(PUZZLE), strategies.got("game24", max_rounds=2), client, 40)
    crossroads = [t for t in record["graph"]["thoughts"] if t["kind"] == "crossroad"]
    assert crossroads[0]["state"]["inspectors"] == {"exact": False}
    assert all(r.startswith("Known") for r in client.requests)


def test_got_polynomial_divides_out_accepted_roots() -> None:
    problem = generate_polynomial(3, degree=3)
    roots = list(problem.roots)

    def script(text: str, n: int) -> list[str]:
        if text.startswith("Equation"):
            return ["x = 100\n" + "\n".join(f"x = {r}" for r in roots)]
        return ["0"]

    record = solve(
        PolynomialAdapter(problem),
        strategies.got("polynomial"),
        ScriptedClient(script),
        max_calls=40,
    )
    assert record["correct"], record["reason"]
    assert divide([1, -3, 2], 1) == [1, -2] and divide([1, 0, 1], 1) is None


def test_got_sequence_rejects_a_formula_off_the_terms() -> None:
    problem = generate_sequence(11)
    replies = iter(["Answer: a_n = n", f"Answer: a_n = {problem.closed_form}"])

    def script(text: str, n: int) -> list[str]:
        if text.startswith("Compute"):
            return [str(problem.terms(4)[3])]
        return [next(replies)]

    record = solve(SequenceAdapter(problem), strategies.got("sequence"), ScriptedClient(script), 40)
    crossroads = [t for t in record["graph"]["thoughts"] if t["kind"] == "crossroad"]
    assert crossroads[0]["state"]["inspectors"] == {"exact": False}
    assert crossroads[1]["valid"] and record["correct"]


@pytest.mark.parametrize(
    ("name", "built"),
    [
        ("io", strategies.io()),
        ("cot", strategies.cot()),
        ("tot", strategies.tot()),
        ("got_game24", strategies.got("game24")),
        ("got_polynomial", strategies.got("polynomial")),
        ("got_sequence", strategies.got("sequence")),
    ],
)
def test_strategy_configs_equal_the_python_builders(name: str, built: list) -> None:
    config = yaml.safe_load((CONF / "reason" / "strategy" / f"{name}.yaml").read_text())
    assert config["graph"] == built


TASKS = {
    "game24": ({"name": "game24", "ranks": [901, 902]}, None),
    "polynomial": ({"name": "polynomial", "seed": 0, "count": 3}, None),
    "sequence": ({"name": "sequence", "seed": 0, "count": 3}, None),
}


@pytest.mark.parametrize(
    ("task", "graph"),
    [
        ("polynomial", strategies.io()),
        ("polynomial", strategies.cot()),
        ("polynomial", strategies.got("polynomial")),
        ("sequence", strategies.io()),
        ("sequence", strategies.cot()),
        ("sequence", strategies.got("sequence")),
    ],
)
def test_every_strategy_solves_with_the_exact_solver_harness(task: str, graph: list) -> None:
    from llm.reasoning.adapters import load_problems

    settings = TASKS[task][0]
    client = SolverClient(settings)
    for adapter in load_problems(settings):
        assert solve(adapter, graph, client, max_calls=60)["correct"]


@pytest.mark.parametrize(
    "graph", [strategies.io(), strategies.cot(), strategies.tot(), strategies.got("game24")]
)
def test_every_game24_strategy_solves_with_the_exact_solver_harness(graph, tmp_path) -> None:
    csv = tmp_path / "24.csv"
    csv.write_text("Rank,Puzzles\n1,4 5 6 10\n2,1 2 4 7\n3,3 3 8 8\n")
    settings = {"name": "game24", "path": str(csv), "ranks": [1, 3]}
    from llm.reasoning.adapters import load_problems

    client = SolverClient(settings)
    for adapter in load_problems(settings):
        record = solve(adapter, graph, client, max_calls=60)
        assert record["correct"], (adapter.problem_text, record["reason"])
