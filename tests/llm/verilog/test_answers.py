"""Reference and replay clients, and the pass@k estimator."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from llm.base import LLMError
from llm.verilog.answers import ReferenceClient, ReplayClient
from llm.verilog.scoring import aggregate, pass_at_k

DATA = os.environ.get("DATA_DIR")
needs_data = pytest.mark.skipif(
    not DATA or not (Path(DATA) / "verilog" / "rtllm-v1.1").is_dir(),
    reason="DATA_DIR unset or without verilog/rtllm-v1.1 (set DATA_DIR=../shared/data)",
)
ASK = [{"role": "user", "content": "Write the design."}]


def test_pass_at_k_hand_values() -> None:
    assert pass_at_k(5, 0, 1) == 0.0
    assert pass_at_k(5, 1, 1) == pytest.approx(0.2)
    assert pass_at_k(5, 2, 5) == 1.0
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)  # 1 - C(7,5)/C(10,5)
    assert pass_at_k(200, 13, 10) == pytest.approx(1 - math.comb(187, 10) / math.comb(200, 10))
    with pytest.raises(ValueError, match="k must be <= n"):
        pass_at_k(3, 1, 5)


def test_aggregate() -> None:
    records = [
        {"problem": "a", "compiled": True, "passed": True},
        {"problem": "a", "compiled": True, "passed": False},
        {"problem": "b", "compiled": False, "passed": False},
        {"problem": "b", "compiled": True, "passed": False},
    ]
    out = aggregate(records, ks=(1, 2, 5))
    assert out["problems"] == 2 and out["samples"] == 4 and out["syntax_rate"] == 0.75
    assert out["functional_pass@1"] == pytest.approx(0.25)
    assert out["functional_pass@2"] == pytest.approx(0.5)
    assert "functional_pass@5" not in out  # 2 samples per problem


@needs_data
def test_replay_counts_and_limits() -> None:
    gpt4 = ReplayClient("gpt4")
    assert len(gpt4._files) == 29 and all(all(f) for f in gpt4._files.values())
    answers = gpt4.complete(ASK, n=5, key="adder_8bit")
    assert len(answers) == 5 and all("module adder_8bit" in a for a in answers)
    assert gpt4.complete(ASK, n=2, key="adder_8bit") == answers[:2]
    assert gpt4.usage.calls == 2
    with pytest.raises(LLMError, match="5 first answers"):
        gpt4.complete(ASK, n=6, key="adder_8bit")
    with pytest.raises(LLMError, match="no refinement replies"):
        gpt4.complete(
            ASK + [{"role": "assistant", "content": "x"}, {"role": "user", "content": "fix it"}],
            key="adder_8bit",
        )
    with pytest.raises(LLMError, match="adder_8bit"):
        gpt4.complete(ASK, key="adder_8bt")
    # GPT-3.5's archive spells calendar as calender.v: no answer by exact name (an empty
    # reply, a failed sample, as the benchmark's scripts count it), matched with closest
    gpt35 = ReplayClient("gpt35")
    assert gpt35.complete(ASK, n=5, key="calendar") == [""] * 5
    assert all(ReplayClient("gpt35", names="closest")._files["calendar"])
    with pytest.raises(LLMError, match="llm.names=wrong"):
        ReplayClient("gpt35", names="wrong")
    with pytest.raises(LLMError, match="gpt4, gpt35"):
        ReplayClient("gpt5")


@needs_data
def test_reference_client() -> None:
    client = ReferenceClient("rtllm_v1.1")
    (reply,) = client.complete(ASK, key="accu")
    assert reply.startswith("```verilog\n") and reply.endswith("\n```")
    assert "module accu(" in reply and "verified_accu" not in reply
    assert client.identity()["kind"] == "reference"
    with pytest.raises(LLMError, match="key="):
        client.complete(ASK)


@needs_data
@pytest.mark.slow
def test_replay_figures() -> None:
    """RTLLM v1.1's archived answers through the harness (about a minute on two cores)."""
    import importlib.util

    root = Path(__file__).resolve().parents[3]
    spec = importlib.util.spec_from_file_location(
        "verilog_harness_check", root / "scripts" / "verilog_harness_check.py"
    )
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    gpt4 = check.replay("gpt4", None, 2, 5.0)
    assert gpt4["syntax_rate"] == pytest.approx(0.807, abs=0.02)
    assert gpt4["functional_pass@1"] == pytest.approx(0.434, abs=0.02)
    gpt35 = check.replay("gpt35", None, 2, 5.0)
    # 64.1%: calender.v left unmatched by exact names (matched, its 5 answers compile: 98/145)
    assert gpt35["syntax_rate"] == pytest.approx(93 / 145, abs=0.005)
    assert gpt35["functional_pass@1"] == pytest.approx(0.255, abs=0.02)
