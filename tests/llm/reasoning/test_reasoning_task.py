"""The reasoning task end to end on a scripted client: records, graphs, metrics, failures
recorded per problem, resume from the response cache, config checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import open_dict

from effml.errors import ConfigError
from llm.base import LLMClient, LLMRequestError
from llm.cache import CachedClient
from tasks import reason as reason_task
from tests.conftest import compose_cfg


class FakeClient(LLMClient):
    """Answers the polynomial IO prompt from a table of equation -> reply; ``fail`` maps an
    equation to the exception its request raises."""

    def __init__(self, replies: dict[str, str], fail: dict[str, BaseException] | None = None):
        super().__init__()
        self.replies, self.fail = replies, fail or {}
        self.requests: list[str] = []

    def identity(self) -> dict:
        return {"kind": "fake"}

    def complete(self, messages, n=1, temperature=0.0, max_tokens=512, stop=None, *, key=None):
        text = messages[-1]["content"]
        equation = text.split("equation ")[1].split(", each")[0]
        if equation in self.fail:
            raise self.fail[equation]
        self.requests.append(equation)
        self.usage.add(calls=1, prompt_tokens=7, completion_tokens=3 * n)
        return [self.replies.get(equation, "")] * n


def config(tmp_path: Path, limit: int = 3, experiment: str = "io_polynomial"):
    cfg = compose_cfg(
        [
            f"experiment={experiment}",
            f"paths.output_dir={tmp_path}",
            f"reason.task.limit={limit}",
            "llm.cache_dir=null",
        ]
    )
    return cfg


def problems(cfg) -> list:
    from llm.reasoning.adapters import load_problems

    return [a.problem for a in load_problems(cfg.reason.task)]


def test_task_end_to_end_records_graphs_and_metrics(tmp_path: Path, monkeypatch) -> None:
    cfg = config(tmp_path)
    first, second, third = problems(cfg)
    replies = {
        first.text: f"Answer: {first.answer_text}",
        second.text: "Answer: x = 0",
        third.text: "I cannot solve this",
    }
    client = FakeClient(replies)
    monkeypatch.setattr(reason_task, "build_client", lambda llm: client)
    reason_task.reason.check_config(cfg)
    reason_task.reason(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["reason/accuracy"] == pytest.approx(1 / 3)
    assert metrics["reason/llm_calls"] == 3 and metrics["reason/prompt_tokens"] == 21
    assert metrics["reason/full_set_llm_calls"] == pytest.approx(100.0)
    assert metrics["reason/completion_tokens"] == 9 and metrics["reason/wall_s"] >= 0
    record = json.loads((tmp_path / "records" / f"polynomial-{first.seed}.json").read_text())
    assert record["correct"] and record["exchanges"][0]["replies"] == [replies[first.text]]
    assert record["graph"]["thoughts"][1]["solved"] is True
    third_record = json.loads((tmp_path / "records" / f"polynomial-{third.seed}.json").read_text())
    assert not third_record["correct"] and third_record["reason"].startswith("malformed")
    assert (tmp_path / "graphs" / f"polynomial-{first.seed}.png").is_file()
    assert (tmp_path / "reason.png").is_file() and (tmp_path / "problems.csv").is_file()


def test_a_failing_server_is_recorded_per_problem_and_the_run_goes_on(
    tmp_path: Path, monkeypatch
) -> None:
    cfg = config(tmp_path)
    first, second, third = problems(cfg)
    client = FakeClient(
        {p.text: f"Answer: {p.answer_text}" for p in (first, third)},
        fail={second.text: LLMRequestError("HTTP 503: overloaded")},
    )
    monkeypatch.setattr(reason_task, "build_client", lambda llm: client)
    reason_task.reason(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["reason/accuracy"] == pytest.approx(2 / 3)
    assert metrics["reason/problem_errors"] == 1
    record = json.loads((tmp_path / "records" / f"polynomial-{second.seed}.json").read_text())
    assert "503" in record["error"] and not record["correct"]


def test_an_unexpected_error_is_recorded_too(tmp_path: Path, monkeypatch) -> None:
    cfg = config(tmp_path, limit=2)
    first, second = problems(cfg)
    client = FakeClient(
        {first.text: f"Answer: {first.answer_text}"},
        fail={second.text: RuntimeError("tokenizer crashed")},
    )
    monkeypatch.setattr(reason_task, "build_client", lambda llm: client)
    reason_task.reason(cfg)
    record = json.loads((tmp_path / "records" / f"polynomial-{second.seed}.json").read_text())
    assert record["error"] == "RuntimeError: tokenizer crashed"
    assert json.loads((tmp_path / "metrics.json").read_text())["reason/accuracy"] == 0.5


def test_an_interrupted_run_resumes_from_the_cache_without_repeating_calls(
    tmp_path: Path, monkeypatch
) -> None:
    cfg = config(tmp_path / "run", limit=3)
    first, second, third = problems(cfg)
    replies = {p.text: f"Answer: {p.answer_text}" for p in (first, second, third)}
    interrupted = FakeClient(replies, fail={third.text: KeyboardInterrupt()})
    monkeypatch.setattr(
        reason_task, "build_client", lambda llm: CachedClient(interrupted, tmp_path / "cache")
    )
    with pytest.raises(KeyboardInterrupt):
        reason_task.reason(cfg)
    assert interrupted.requests == [first.text, second.text]
    again = FakeClient(replies)
    cached = CachedClient(again, tmp_path / "cache")
    monkeypatch.setattr(reason_task, "build_client", lambda llm: cached)
    reason_task.reason(cfg)
    assert again.requests == [third.text]  # the done problems made no new call
    assert cached.usage.cached_calls == 2
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["reason/accuracy"] == 1.0 and metrics["llm/cached_calls"] == 2


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("reason.task.name=chess", "reason.task.name=chess"),
        ("reason.task.count=0", "reason.task.count=0"),
        ("reason.strategy.max_calls=0", "reason.strategy.max_calls=0"),
        ("reason.strategy.graph=[{op:teleport}]", "reason.strategy.graph\\[0\\].op=teleport"),
        ("reason.draw=-1", "reason.draw=-1"),
    ],
)
def test_bad_settings_fail_before_any_request(override: str, match: str, tmp_path) -> None:
    cfg = compose_cfg(["experiment=got_polynomial", f"paths.output_dir={tmp_path}", override])
    with pytest.raises(ConfigError, match=match):
        reason_task.reason.check_config(cfg)


def test_game24_ranks_are_checked(tmp_path: Path) -> None:
    cfg = compose_cfg(["experiment=tot_game24", f"paths.output_dir={tmp_path}"])
    with open_dict(cfg):
        cfg.reason.task.ranks = [10, 1]
    with pytest.raises(ConfigError, match="reason.task.ranks"):
        reason_task.reason.check_config(cfg)


def test_reason_report_compares_runs(tmp_path: Path, monkeypatch, capsys) -> None:
    from scripts.reason_report import main

    for experiment in ("io_polynomial", "cot_polynomial"):
        cfg = config(tmp_path / "multi" / experiment, limit=2, experiment=experiment)
        first, second = problems(cfg)
        client = FakeClient({first.text: f"Answer: {first.answer_text}"})
        monkeypatch.setattr(reason_task, "build_client", lambda llm, client=client: client)
        reason_task.reason(cfg)
    assert main([str(tmp_path / "multi")]) == 0
    table = (tmp_path / "multi" / "reason_compare.csv").read_text().splitlines()
    assert table[0].startswith("run,strategy,task,problems,accuracy")
    assert len(table) == 3 and (tmp_path / "multi" / "reason_compare.png").is_file()
    assert "| cot_polynomial | cot | polynomial | 2 | 0.5 |" in capsys.readouterr().out
