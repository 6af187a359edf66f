"""The OpenAI-compatible fast path: chat completions over httpx (engine/providers/http_client.py).

OpenAI, OpenRouter, vLLM, llama.cpp's server, Ollama's /v1, LM Studio and every `--api-base`
server speak this wire protocol. Speaking it directly (httpx and its client: 60 ms) instead of through
litellm (2.4 s) is what lets `rlm ask` reach the model in well under a second. The request's
timeout bounds the whole exchange, so a server that never answers, drips a byte at a time or
streams for ever ends as a timeout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rlmcli.engine.providers import catalog, http_client
from rlmcli.engine.providers.base import Completion, Delta, ProviderError, Request, classify_status, retry_after_seconds

if TYPE_CHECKING:
    import httpx

MAX_BODY = 32 << 20  # a reply larger than this is not a chat completion
MAX_ERROR_BODY = 64 << 10


class OpenAICompatProvider:
    name = "openai-compatible"

    def context_window(self, model: str) -> int | None:
        return catalog.context_window(model)

    def complete(self, request: Request, on_delta: Delta | None = None) -> Completion:
        base = request.api_base or catalog.OPENAI_COMPATIBLE.get(catalog.provider_of(request.model),
                                                                 catalog.OPENAI_COMPATIBLE["openai"])
        body: dict[str, Any] = {"model": catalog.bare_name(request.model), "messages": request.messages,
                                **request.params}
        if on_delta is not None:
            body.update(stream=True, stream_options={"include_usage": True})
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if request.api_key:
            headers["Authorization"] = f"Bearer {request.api_key}"
        content = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
        with http_client.post(base.rstrip("/") + "/chat/completions", headers, content, request.timeout) as response:
            return self._read(response, request, on_delta)

    def _read(self, response: httpx.Response, request: Request, on_delta: Delta | None) -> Completion:
        if response.status_code != 200:
            raw = _bounded(response, MAX_ERROR_BODY, request.timeout, cut=True)
            message = _error_message(raw) or f"HTTP {response.status_code} {response.reason_phrase}"
            raise ProviderError(message, classify_status(response.status_code, message), status_code=response.status_code,
                                retry_after=retry_after_seconds(response.headers.get("Retry-After")))
        if on_delta is not None and "event-stream" in response.headers.get("Content-Type", ""):
            return _read_stream(response, request, on_delta)
        raw = _bounded(response, MAX_BODY, request.timeout)
        try:
            data = json.loads(raw)
            text = data["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise ProviderError(f"the reply is not a chat completion ({raw[:120]!r})", "malformed") from None
        if on_delta is not None and text:
            on_delta(text)  # a server that ignored stream=True: one piece
        return _completion(request.model, text, data.get("usage"))


def _bounded(response: httpx.Response, limit: int, seconds: float, cut: bool = False) -> bytes:
    """The whole body; with `cut`, its first `limit` bytes (an error page needs no more)."""
    parts, size = [], 0
    for chunk in http_client.chunks(response, MAX_BODY if cut else limit, seconds, partial=cut):
        parts.append(chunk)
        size += len(chunk)
        if cut and size >= limit:
            break
    return b"".join(parts)


def _sse_data(response: httpx.Response, seconds: float) -> Iterator[bytes]:
    """The data of each server-sent event, as bytes. Lines are split here rather than by a line
    iterator so that one endless line is bounded by MAX_BODY too."""
    pending: list[bytes] = []
    for chunk in http_client.chunks(response, MAX_BODY, seconds):
        if b"\n" not in chunk:
            pending.append(chunk)
            continue
        *lines, last = b"".join([*pending, chunk]).split(b"\n")
        pending = [last]
        for line in lines:
            line = line.strip()
            if line.startswith(b"data:"):
                yield line[5:].strip()


def _read_stream(response: httpx.Response, request: Request, on_delta: Delta) -> Completion:
    """Text pieces to on_delta as they come; usage from the chunk that carries it."""
    pieces: list[str] = []
    usage: Any = None
    finished = False  # a finish_reason or [DONE] seen: a stream that just stops is not a reply
    for data in _sse_data(response, request.timeout):
        if data == b"[DONE]":
            finished = True
            break
        try:
            event = json.loads(data)
        except ValueError:
            raise ProviderError(f"a streamed chunk is not JSON ({data[:80]!r})", "malformed") from None
        if not isinstance(event, dict):
            continue
        if event.get("error"):
            raise ProviderError(_error_message(data) or "the stream reported an error", "server")
        if event.get("usage"):
            usage = event["usage"]
        for choice in event.get("choices") or []:
            choice = choice if isinstance(choice, dict) else {}
            finished = finished or bool(choice.get("finish_reason"))
            piece = (choice.get("delta") or {}).get("content")
            if isinstance(piece, str) and piece:
                pieces.append(piece)
                on_delta(piece)
    text = "".join(pieces)
    if not finished:
        raise ProviderError(f"the stream ended after {len(text):,} characters with no finish_reason and no [DONE]",
                            "incomplete")
    return _completion(request.model, text, usage)


def _completion(model: str, text: str, usage: Any) -> Completion:
    usage = usage if isinstance(usage, dict) else {}

    def number(value: Any) -> int:
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0

    prompt, completion = number(usage.get("prompt_tokens")), number(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = number(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return Completion(text=text, prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached,
                      cost=catalog.cost(model, prompt, completion, cached))


def _error_message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace").strip()
        return " ".join(text.split())[:300]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)[:500]
    if isinstance(error, str):
        return error[:500]
    return str(data)[:300]
