"""The one interface every language-model client follows, and its call accounting.

A client answers OpenAI-style chat messages (``{"role": "system" | "user" | "assistant",
"content": str}``) with ``n`` completions. ``identity()`` says what makes its answers differ
(kind, model, path, sampling settings), so a cache can key on it; ``usage`` counts calls and
tokens, thread-safely.
"""

from __future__ import annotations

import abc
import dataclasses
import threading
from collections.abc import Sequence

from effml.errors import UserError


class LLMError(UserError):
    """A client that cannot work as configured: a refused key, an unknown model, a missing
    model file, a malformed request. The message says what is wrong and the fix."""


class LLMRequestError(RuntimeError):
    """One request that failed after its retries (status and the server's message); the caller
    records it against the problem and goes on."""


@dataclasses.dataclass
class Usage:
    """Calls and tokens of a client; ``add`` may be called from several threads at once.

    Attributes:
        calls: ``complete`` calls answered by the model itself.
        cached_calls: ``complete`` calls answered from the response cache (no model call).
        prompt_tokens: prompt tokens sent (each HTTP request or generation counts its prompt).
        completion_tokens: tokens generated.
        wall_s: seconds spent inside model calls, summed over threads.
    """

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_s: float = 0.0
    _lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, repr=False, compare=False
    )

    def add(
        self,
        calls: int = 0,
        cached_calls: int = 0,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        wall_s: float = 0.0,
    ) -> None:
        """Adds to the counters atomically."""
        with self._lock:
            self.calls += calls
            self.cached_calls += cached_calls
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.wall_s += wall_s

    def as_dict(self) -> dict[str, float]:
        """The counters as a flat dict (``calls``, ``cached_calls``, ... ``wall_s``)."""
        with self._lock:
            return {
                "calls": self.calls,
                "cached_calls": self.cached_calls,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "wall_s": self.wall_s,
            }


ROLES = ("system", "user", "assistant")


def check_request(
    messages: Sequence[dict],
    n: int,
    temperature: float,
    max_tokens: int,
    stop: Sequence[str] | None,
) -> None:
    """Raises LLMError, naming the bad value, unless the request is well formed."""
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise LLMError(
            f"messages={messages!r}: must be a non-empty list of "
            '{"role": ..., "content": ...} dicts, e.g. [{"role": "user", "content": "Hi"}]'
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise LLMError(
                f"messages[{i}]={message!r}: needs a role in {list(ROLES)} and a content string"
            )
        if not isinstance(message.get("content"), str):
            raise LLMError(f"messages[{i}].content={message.get('content')!r}: must be a string")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise LLMError(f"n={n!r}: must be an integer >= 1 (completions per request), e.g. n=5")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise LLMError(f"temperature={temperature!r}: must be a number in [0, 2], e.g. 0.8")
    if not 0.0 <= temperature <= 2.0:
        raise LLMError(f"temperature={temperature!r}: must be in [0, 2] (0 is greedy), e.g. 0.8")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise LLMError(f"max_tokens={max_tokens!r}: must be an integer >= 1, e.g. 512")
    if stop is not None and (
        isinstance(stop, str) or not all(isinstance(s, str) and s for s in stop)
    ):
        raise LLMError(f"stop={stop!r}: must be null or a list of non-empty strings")


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string."""
    if not stop:
        return text
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]


class LLMClient(abc.ABC):
    """A language model that completes chat messages.

    Subclasses call ``super().__init__()`` (it creates ``usage``) and implement ``complete``
    and ``identity``.
    """

    def __init__(self) -> None:
        self.usage = Usage()

    @abc.abstractmethod
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
        """``n`` completions of the chat ``messages``.

        Args:
            messages: OpenAI-style ``{"role": ..., "content": ...}`` dicts.
            n: how many completions.
            temperature: sampling temperature; 0 is greedy.
            max_tokens: most tokens per completion.
            stop: strings that end a completion (not included in it).
            key: the problem id; only clients that serve archived or reference answers use it.

        Returns:
            ``n`` completion strings.

        Raises:
            LLMError: the client cannot work as configured (key, model, file).
            LLMRequestError: this request failed after its retries.
        """

    @abc.abstractmethod
    def identity(self) -> dict:
        """What makes this client's answers differ (kind, model, path, settings); never a
        secret. JSON-serialisable; the response cache keys on it."""
