"""A client for any OpenAI-compatible chat-completions server (vLLM, Ollama, llama.cpp server,
hosted APIs), with timeouts, retries with backoff, a rate limit and clear errors."""

from __future__ import annotations

import email.utils
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx

from effml.checks import check_int, check_range, with_defaults
from effml.errors import ConfigError
from llm.base import LLMClient, LLMError, LLMRequestError, check_request

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
MAX_BACKOFF_S = 60.0


class RateLimiter:
    """At most ``requests_per_minute`` starts per minute, spaced evenly, across threads."""

    def __init__(self, requests_per_minute: float | None) -> None:
        self.interval_s = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Blocks until this caller's slot comes."""
        if not self.interval_s:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval_s
        if start > now:
            time.sleep(start - now)


def server_message(response: httpx.Response) -> str:
    """The error message a server put in its reply (OpenAI's ``{"error": {"message"}}``,
    FastAPI's ``{"detail"}``), else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500].strip() or "(empty body)"
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return str(error)[:500]
    return str(body)[:500]


def retry_after_s(response: httpx.Response) -> float | None:
    """Seconds from the ``Retry-After`` header (a number or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAIClient(LLMClient):
    """POSTs to ``{base_url}/chat/completions``.

    Servers that ignore ``n`` (llama.cpp, some vLLM set-ups) get further requests until ``n``
    answers are collected. Timeouts, connection errors, 408/409/429 and 5xx are retried with
    exponential backoff (``backoff_s * 2**attempt``, or the server's ``Retry-After``); other
    client errors are not. The key comes from ``api_key`` or the environment variable
    ``api_key_env``; it is never logged nor part of ``identity()``.

    Args:
        base_url: the API root, e.g. ``http://localhost:8000/v1``.
        model: the served model's name, e.g. ``Qwen/Qwen2.5-Coder-7B-Instruct``.
        api_key: the key itself (prefer the environment variable).
        api_key_env: the environment variable that holds the key; servers without keys
            (vLLM, Ollama) need none.
        timeout_s: seconds per request.
        max_retries: retries after the first try.
        backoff_s: the first retry's wait; doubled each retry.
        requests_per_minute: a rate limit over all threads; null for none.

    Raises:
        LLMError: the server refuses the key (401/403) or does not know the model.
        LLMRequestError: a request still fails after its retries.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 120,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        requests_per_minute: float | None = None,
    ) -> None:
        super().__init__()
        OpenAIClient.check_config(
            {
                "base_url": base_url,
                "model": model,
                "api_key_env": api_key_env,
                "timeout_s": timeout_s,
                "max_retries": max_retries,
                "backoff_s": backoff_s,
                "requests_per_minute": requests_per_minute,
            }
        )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self._api_key = api_key or os.environ.get(api_key_env) or None
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.backoff_s = float(backoff_s)
        self.rate_limiter = RateLimiter(requests_per_minute)
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        self._http = httpx.Client(timeout=httpx.Timeout(self.timeout_s), headers=headers)

    def __repr__(self) -> str:
        return f"OpenAIClient(base_url={self.base_url!r}, model={self.model!r})"

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """A http(s) base URL, a model name, a positive timeout, retries >= 0, backoff >= 0,
        a positive rate limit or null."""
        cfg = with_defaults(cls, cfg)
        url = cfg.get("base_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(
                "base_url",
                url,
                "must be an http(s) URL of the API root",
                example="http://localhost:8000/v1",
                fix="or set OPENAI_BASE_URL",
            )
        if not isinstance(cfg.get("model"), str) or not cfg["model"].strip():
            raise ConfigError(
                "model",
                cfg.get("model"),
                "must name the served model",
                example="Qwen/Qwen2.5-Coder-7B-Instruct",
                fix="or set OPENAI_MODEL; GET <base_url>/models lists what the server serves",
            )
        if not isinstance(cfg.get("api_key_env"), str) or not cfg["api_key_env"]:
            raise ConfigError(
                "api_key_env",
                cfg.get("api_key_env"),
                "must name an env var",
                example="OPENAI_API_KEY",
            )
        check_range(cfg, "timeout_s", 0.0, low_open=True, example=120)
        check_int(cfg, "max_retries", minimum=0, example=4)
        check_range(cfg, "backoff_s", 0.0, example=1.0)
        check_range(cfg, "requests_per_minute", 0.0, low_open=True, example=60)

    def identity(self) -> dict:
        """Kind, base URL and model (never the key)."""
        return {"kind": "openai", "base_url": self.base_url, "model": self.model}

    def available_models(self) -> list[str] | None:
        """The ids from ``GET {base_url}/models``, or None when it does not answer."""
        try:
            response = self._http.get(f"{self.base_url}/models", timeout=min(self.timeout_s, 10))
            response.raise_for_status()
            return [str(m["id"]) for m in response.json()["data"]]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    def _key_error(self, response: httpx.Response) -> LLMError:
        where = (
            "the key given as llm.api_key"
            if self._api_key and not os.environ.get(self.api_key_env)
            else f"the key in ${self.api_key_env}"
            if self._api_key
            else f"no key (${self.api_key_env} is not set)"
        )
        return LLMError(
            f"{self.base_url} refused {where} (HTTP {response.status_code}: "
            f"{server_message(response)}); set it with `export {self.api_key_env}=<your key>` "
            f"(llm.api_key_env names the variable)"
        )

    def _model_error(self, response: httpx.Response) -> LLMError:
        models = self.available_models()
        listing = (
            f"the server serves: {', '.join(models) or '(none)'}"
            if models is not None
            else f"GET {self.base_url}/models did not answer"
        )
        return LLMError(
            f"llm.model={self.model}: {self.base_url} does not serve it (HTTP "
            f"{response.status_code}: {server_message(response)}); {listing}; "
            f"e.g. llm.model={models[0] if models else '<name>'}"
        )

    @staticmethod
    def _says_unknown_model(response: httpx.Response) -> bool:
        text = server_message(response).lower()
        return "model" in text and any(
            word in text for word in ("not exist", "not found", "does not exist", "unknown")
        )

    def _post(self, body: dict) -> dict:
        """The JSON reply to one chat-completions request, retried as the class says."""
        url = f"{self.base_url}/chat/completions"
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                log.info("retrying %s (attempt %d): %s", url, attempt + 1, last)
            self.rate_limiter.wait()
            delay = min(self.backoff_s * 2**attempt, MAX_BACKOFF_S)
            try:
                response = self._http.post(url, json=body)
            except httpx.TimeoutException:
                last = f"no answer within timeout_s={self.timeout_s:g} s"
            except httpx.TransportError as err:
                last = f"connection failed ({type(err).__name__}: {err})"
            else:
                status = response.status_code
                if status == 200:
                    try:
                        reply = response.json()
                        if isinstance(reply.get("choices"), list) and reply["choices"]:
                            return reply
                        last = f"HTTP 200 without choices: {response.text[:300]}"
                    except (ValueError, AttributeError):
                        last = f"HTTP 200 with a body that is not JSON: {response.text[:300]}"
                elif status in (401, 403):
                    raise self._key_error(response)
                elif status == 404 or (status == 400 and self._says_unknown_model(response)):
                    raise self._model_error(response)
                elif status in RETRY_STATUS:
                    last = f"HTTP {status}: {server_message(response)}"
                    delay = retry_after_s(response) or delay
                else:
                    raise LLMRequestError(
                        f"POST {url} (model {self.model}) was refused: HTTP {status}: "
                        f"{server_message(response)}"
                    )
            if attempt < self.max_retries:
                time.sleep(delay)
        raise LLMRequestError(
            f"POST {url} (model {self.model}) failed after {self.max_retries + 1} attempts; "
            f"last: {last}"
        )

    def complete(
        self,
        messages: list[dict],
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 512,
        stop: list[str] | None = None,
        *,
        key: str | None = None,
    ) -> list[str]:
        """``n`` completions from the server (``key`` is ignored)."""
        check_request(messages, n, temperature, max_tokens, stop)
        start = time.perf_counter()
        completions: list[str] = []
        prompt_tokens = completion_tokens = 0
        try:
            while len(completions) < n:
                body: dict[str, Any] = {
                    "model": self.model,
                    "messages": messages,
                    "n": n - len(completions),
                    "temperature": temperature,
                    "max_tokens": max_tokens,
                }
                if stop:
                    body["stop"] = list(stop)
                reply = self._post(body)
                for choice in reply["choices"][: n - len(completions)]:
                    message = choice.get("message") if isinstance(choice, dict) else None
                    content = message.get("content") if isinstance(message, dict) else None
                    completions.append(content if isinstance(content, str) else "")
                usage = reply.get("usage") or {}
                prompt_tokens += int(usage.get("prompt_tokens") or 0)
                completion_tokens += int(usage.get("completion_tokens") or 0)
        finally:
            self.usage.add(
                calls=1 if len(completions) == n else 0,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                wall_s=time.perf_counter() - start,
            )
        return completions

    def close(self) -> None:
        """Closes the HTTP connection pool."""
        self._http.close()
