"""An on-disk response cache around any client: a rerun of the same requests costs nothing."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from effml.errors import OutputDirError
from llm.base import LLMClient, check_request

log = logging.getLogger(__name__)


def request_key(
    identity: dict,
    messages: list[dict],
    n: int,
    temperature: float,
    max_tokens: int,
    stop: list[str] | None,
    key: str | None,
) -> str:
    """The sha256 hex digest of the JSON of the whole request and the client's identity."""
    request = {
        "identity": identity,
        "messages": messages,
        "n": n,
        "temperature": float(temperature),
        "max_tokens": max_tokens,
        "stop": list(stop) if stop is not None else None,
        "key": key,
    }
    text = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CachedClient(LLMClient):
    """``inner`` with its answers stored under ``folder`` (one JSON file per request).

    The key is the sha256 of the JSON of ``inner.identity()``, the messages, ``n``,
    ``temperature``, ``max_tokens``, ``stop`` and ``key``; a hit makes no model call and
    counts in ``usage.cached_calls``. Entries are written atomically (a temporary file, then a
    rename), so a killed run never leaves half an entry; an unreadable entry is fetched again
    and overwritten. ``usage`` is the inner client's, so one object counts everything.

    Args:
        inner: the client that answers misses.
        folder: the cache folder (created when missing); entries go to
            ``folder/<key[:2]>/<key>.json``.
    """

    def __init__(self, inner: LLMClient, folder: Path | str) -> None:
        super().__init__()
        self.inner = inner
        self.folder = Path(folder)
        self.usage = inner.usage
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputDirError(
                f"llm.cache_dir={self.folder}: cannot be created ({err.strerror}); point it "
                "at a writable folder, e.g. llm.cache_dir=/tmp/effml_llm_cache, or "
                "llm.cache_dir=null to turn the cache off"
            ) from None

    def identity(self) -> dict:
        """The inner client's identity (the cache does not change answers)."""
        return self.inner.identity()

    def entry_path(self, digest: str) -> Path:
        """Where the entry of the request with this digest lives."""
        return self.folder / digest[:2] / f"{digest}.json"

    def _read(self, path: Path, n: int) -> list[str] | None:
        """The completions stored at ``path``, or None when missing or unreadable."""
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            log.warning("cache entry %s is unreadable (%s); fetching it again", path, err)
            return None
        completions = entry.get("completions") if isinstance(entry, dict) else None
        if (
            not isinstance(completions, list)
            or len(completions) != n
            or not all(isinstance(c, str) for c in completions)
        ):
            log.warning("cache entry %s is malformed; fetching it again", path)
            return None
        return completions

    def _write(self, path: Path, entry: dict) -> None:
        """Writes ``entry`` to ``path`` atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:8]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f, ensure_ascii=False, indent=1)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

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
        """The stored answers to this request, or the inner client's (then stored)."""
        check_request(messages, n, temperature, max_tokens, stop)
        identity = self.inner.identity()
        digest = request_key(identity, messages, n, temperature, max_tokens, stop, key)
        path = self.entry_path(digest)
        stored = self._read(path, n)
        if stored is not None:
            self.usage.add(cached_calls=1)
            return stored
        completions = self.inner.complete(
            messages, n=n, temperature=temperature, max_tokens=max_tokens, stop=stop, key=key
        )
        request = {
            "identity": identity,
            "messages": messages,
            "n": n,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "stop": stop,
            "key": key,
        }
        self._write(path, {"request": request, "completions": list(completions)})
        return completions
