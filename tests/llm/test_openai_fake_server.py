"""The OpenAI-compatible client against a fake server on loopback: the protocol, servers that
ignore ``n``, retries, timeouts, rate limits and the errors a user must act on."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llm import LLMError, LLMRequestError
from llm.concurrency import map_bounded
from llm.openai_client import OpenAIClient

MODELS = ["fake-coder", "fake-chat"]
MESSAGES = [{"role": "user", "content": "Write a haiku"}]


class FakeServer(ThreadingHTTPServer):
    """Speaks ``/v1/chat/completions`` and ``/v1/models``.

    ``script`` is a list of actions, one consumed per chat request (then ``ok``): ``ok``,
    ``ignore_n`` (one choice whatever ``n``), ``sleep`` (answers after ``sleep_s``), an HTTP
    status (an error reply), or ``(status, headers)``. ``requests`` records each chat body and
    its arrival time.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.script: list = []
        self.requests: list[tuple[float, dict, dict]] = []
        self.sleep_s = 1.0
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def reply(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    def error(self, status: int, message: str, headers: dict | None = None) -> None:
        self.reply(status, {"error": {"message": message, "code": status}}, headers)

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self.reply(200, {"object": "list", "data": [{"id": m} for m in MODELS]})
        else:
            self.error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append((time.monotonic(), body, dict(self.headers)))
            action = self.server.script.pop(0) if self.server.script else "ok"
        if self.path != "/v1/chat/completions":
            return self.error(404, f"no route {self.path}")
        if body.get("model") not in MODELS:
            return self.error(404, f"The model `{body.get('model')}` does not exist.")
        headers = None
        if isinstance(action, tuple):
            action, headers = action
        if isinstance(action, int):
            return self.error(action, f"scripted error {action}", headers)
        if action == "sleep":
            time.sleep(self.server.sleep_s)
        n = 1 if action == "ignore_n" else body.get("n", 1)
        last = body["messages"][-1]["content"]
        choices = [
            {"index": i, "message": {"role": "assistant", "content": f"{last} #{i}"}}
            for i in range(n)
        ]
        usage = {"prompt_tokens": 7, "completion_tokens": 5 * n, "total_tokens": 7 + 5 * n}
        self.reply(200, {"object": "chat.completion", "choices": choices, "usage": usage})


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    thread = threading.Thread(target=fake.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    fake.shutdown()
    fake.server_close()


def client_for(server: FakeServer, **kwargs) -> OpenAIClient:
    options = {"model": "fake-coder", "timeout_s": 5.0, "max_retries": 3, "backoff_s": 0.01}
    return OpenAIClient(server.base_url, **{**options, **kwargs})


def test_answers_with_usage_and_sends_the_request(server: FakeServer) -> None:
    client = client_for(server, api_key="sk-test-secret")
    answers = client.complete(MESSAGES, n=3, temperature=0.5, max_tokens=32, stop=["```"])
    assert answers == ["Write a haiku #0", "Write a haiku #1", "Write a haiku #2"]
    ((_, body, headers),) = server.requests
    assert body == {
        "model": "fake-coder",
        "messages": MESSAGES,
        "n": 3,
        "temperature": 0.5,
        "max_tokens": 32,
        "stop": ["```"],
    }
    assert headers["Authorization"] == "Bearer sk-test-secret"
    usage = client.usage.as_dict()
    assert (usage["calls"], usage["prompt_tokens"], usage["completion_tokens"]) == (1, 7, 15)
    assert "sk-test" not in json.dumps(client.identity()) + repr(client)


def test_key_comes_from_the_environment(server: FakeServer, monkeypatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-from-env")
    client_for(server, api_key_env="MY_KEY").complete(MESSAGES)
    assert server.requests[0][2]["Authorization"] == "Bearer sk-from-env"


def test_a_server_that_ignores_n_gets_more_requests(server: FakeServer) -> None:
    server.script = ["ignore_n", "ignore_n", "ignore_n"]
    client = client_for(server)
    assert client.complete(MESSAGES, n=3) == ["Write a haiku #0"] * 3
    assert [body["n"] for _, body, _ in server.requests] == [3, 2, 1]
    assert client.usage.calls == 1 and client.usage.prompt_tokens == 21


def test_server_errors_are_retried(server: FakeServer) -> None:
    server.script = [500, 503]
    client = client_for(server)
    assert client.complete(MESSAGES) == ["Write a haiku #0"]
    assert len(server.requests) == 3


def test_retries_run_out(server: FakeServer) -> None:
    server.script = [500] * 10
    with pytest.raises(LLMRequestError, match="after 3 attempts; last: HTTP 500: scripted error"):
        client_for(server, max_retries=2).complete(MESSAGES)
    assert len(server.requests) == 3


def test_a_timeout_is_retried_then_reported(server: FakeServer) -> None:
    server.sleep_s = 1.0
    server.script = ["sleep", "ok"]
    client = client_for(server, timeout_s=0.2)
    assert client.complete(MESSAGES) == ["Write a haiku #0"]
    server.script = ["sleep", "sleep"]
    with pytest.raises(LLMRequestError, match=r"no answer within timeout_s=0.2 s"):
        client_for(server, timeout_s=0.2, max_retries=1).complete(MESSAGES)


def test_a_refused_connection_is_retried_then_reported() -> None:
    client = OpenAIClient("http://127.0.0.1:9/v1", "m", max_retries=1, backoff_s=0.01)
    with pytest.raises(LLMRequestError, match="connection failed"):
        client.complete(MESSAGES)


def test_429_waits_for_retry_after(server: FakeServer) -> None:
    server.script = [(429, {"Retry-After": "0.3"})]
    assert client_for(server).complete(MESSAGES) == ["Write a haiku #0"]
    (first, *_), (second, *_) = server.requests
    assert second - first >= 0.29


def test_a_refused_key_names_the_variable(server: FakeServer, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.script = [401]
    with pytest.raises(LLMError, match=r"no key \(\$OPENAI_API_KEY is not set\).*export OPENAI"):
        client_for(server).complete(MESSAGES)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    server.script = [403]
    with pytest.raises(LLMError, match=r"refused the key in \$OPENAI_API_KEY") as err:
        client_for(server).complete(MESSAGES)
    assert "sk-wrong" not in str(err.value)
    assert len(server.requests) == 2  # never retried


def test_an_unknown_model_lists_the_served_ones(server: FakeServer) -> None:
    with pytest.raises(LLMError, match="llm.model=gpt-9: .*serves: fake-coder, fake-chat"):
        client_for(server, model="gpt-9").complete(MESSAGES)
    assert len(server.requests) == 1


def test_a_bad_request_is_not_retried(server: FakeServer) -> None:
    server.script = [400]
    with pytest.raises(LLMRequestError, match="was refused: HTTP 400: scripted error 400"):
        client_for(server).complete(MESSAGES)
    assert len(server.requests) == 1


def test_the_rate_limit_spaces_parallel_requests(server: FakeServer) -> None:
    client = client_for(server, requests_per_minute=600)  # one every 0.1 s
    start = time.monotonic()
    answers = map_bounded(
        lambda i: client.complete([{"role": "user", "content": str(i)}]), range(5), 4, "rate"
    )
    assert time.monotonic() - start >= 0.4  # the 5th request's slot is 0.4 s after the 1st
    assert answers == [[f"{i} #0"] for i in range(5)]
    times = sorted(t for t, _, _ in server.requests)
    assert times[-1] - times[0] >= 0.2  # arrivals jitter on a loaded machine; unlimited: ~0
    assert client.usage.calls == 5


def test_retry_after_reads_seconds_and_dates() -> None:
    import email.utils

    import httpx

    from llm.openai_client import retry_after_s

    def after(value: str | None) -> float | None:
        return retry_after_s(httpx.Response(429, headers={"Retry-After": value} if value else {}))

    assert after("2.5") == 2.5
    assert after(None) is None and after("soon") is None
    in_3s = email.utils.formatdate(time.time() + 3, usegmt=True)
    assert 1.0 < after(in_3s) <= 3.0
