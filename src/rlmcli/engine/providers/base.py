"""The provider interface: what the engine needs from a model endpoint, and nothing more.

A provider makes one attempt at one completion and either returns a `Completion` or raises a
classified `ProviderError`. Retries, the cache, budgets and events live in the Gateway, so every
transport (litellm, the OpenAI-compatible fast path, the scripted test provider) behaves alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rlmcli.errors import ExitStatus, RlmError

# kind: (retryable, what the user should do)
ERROR_KINDS: dict[str, tuple[bool, str]] = {
    "auth": (False, "check the API key (--api-key-env names the variable that holds it)"),
    "not_found": (False, "check the model name and --api-base"),
    "bad_request": (False, "the provider refused the request"),
    "context_length": (False, "the prompt is longer than the model's context window"),
    "rate_limit": (True, "the provider is rate-limiting: lower --concurrency or wait"),
    "server": (True, "the provider had a server error"),
    "connection": (True, "nothing answered at that address: is the server running?"),
    "reset": (True, "the server or a proxy dropped the connection mid-request"),
    "incomplete": (True, "the reply ended before it was complete (no finish_reason, no [DONE]); it was not cached"),
    "dns": (False, "the host name does not resolve: check --api-base"),
    "tls": (False, "the TLS handshake failed: check --api-base (http vs https)"),
    "timeout": (True, "the provider did not answer in time (--timeout)"),
    "malformed": (True, "the provider sent a body that is not valid JSON"),
    "empty": (True, "the model returned an empty reply"),
    "missing_key": (False, "set the API key"),
    "error": (False, ""),
}


class ProviderError(RlmError):
    """A classified failure of one request. `kind` is a key of ERROR_KINDS."""

    status = ExitStatus.PROVIDER

    def __init__(self, message: str, kind: str = "error", status_code: int | None = None,
                 retry_after: float | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.kind = kind if kind in ERROR_KINDS else "error"
        self.status_code = status_code
        self.retry_after = retry_after
        self.retryable = ERROR_KINDS[self.kind][0] if retryable is None else retryable

    @property
    def short(self) -> str:
        """What a retry line shows: '429', 'timeout', 'connection refused', 'connection reset'."""
        if self.status_code:
            return str(self.status_code)
        return {"connection": "connection refused", "reset": "connection reset", "incomplete": "reply cut short",
                "malformed": "malformed body"}.get(self.kind, self.kind)


@dataclass
class Request:
    model: str  # as the user wrote it: openai/gpt-4o-mini
    messages: list[dict[str, Any]]
    timeout: float  # seconds for the whole request, connect to last byte
    api_base: str | None = None
    api_key: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # temperature, ...


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: float | None = None  # None: no price known


Delta = Callable[[str], None]


class Provider(Protocol):
    name: str

    def complete(self, request: Request, on_delta: Delta | None = None) -> Completion:
        """One attempt. Streams text pieces to `on_delta` when given; raises ProviderError."""
        ...

    def context_window(self, model: str) -> int | None: ...


def classify_status(status: int, message: str) -> str:
    lowered = message.lower()
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limit"
    if status in (400, 413, 422):
        context_words = ("context length", "context_length", "maximum context", "too many tokens", "too long",
                         "context window", "reduce the length")
        return "context_length" if any(w in lowered for w in context_words) else "bad_request"
    if status >= 500:
        return "server"
    return "error"


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import time
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
