"""Every provider litellm knows (Anthropic, Gemini, Bedrock, Ollama's native API, ...).

litellm is imported on first use (2.4 s), with its bundled cost map so nothing is fetched.
Its exceptions are classified into ProviderError kinds; retries are the Gateway's, not litellm's.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from rlmcli.engine.providers import catalog
from rlmcli.engine.providers.base import Completion, Delta, ProviderError, Request, classify_status, retry_after_seconds

_litellm: Any = None
_import_lock = threading.Lock()


def litellm() -> Any:
    global _litellm
    with _import_lock:
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            os.environ.setdefault("LITELLM_LOG", "ERROR")
            import logging
            import warnings

            # Library housekeeping warnings (pydantic schema notes) are not the user's business.
            warnings.filterwarnings("ignore", module=r"(pydantic|litellm)(\..*)?$")
            warnings.filterwarnings("ignore", message=r".*(ReadOnly|model_fields|model_computed_fields).*")
            import litellm as lib

            lib.suppress_debug_info = True
            lib.telemetry = False
            lib.drop_params = True
            from rlmcli.engine.providers import http_client

            # OpenAI-protocol providers (openai, azure, openrouter...) send through our client, so
            # the request's timeout bounds the whole reply there too, not each read.
            lib.client_session = http_client.client()
            for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx"):
                logging.getLogger(name).setLevel(logging.ERROR)
            _litellm = lib
    return _litellm


def prewarm() -> None:
    """Import litellm on a background thread while the caller ingests and starts sandboxes."""
    threading.Thread(target=litellm, name="litellm-import", daemon=True).start()


def missing_keys(model: str) -> list[str]:
    """The environment variables litellm says this model's provider needs and are unset."""
    try:
        found = litellm().validate_environment(model=model)
    except Exception:  # noqa: BLE001 - an unknown provider: let the request say what is wrong
        return []
    return [k for k in found.get("missing_keys") or [] if isinstance(k, str)]


class LiteLLMProvider:
    name = "litellm"

    def context_window(self, model: str) -> int | None:
        window = catalog.context_window(model)
        if window is not None:
            return window
        try:
            info = litellm().get_model_info(model)
        except Exception:  # noqa: BLE001 - unknown models have no info
            return None
        value = info.get("max_input_tokens") or info.get("max_tokens")
        return int(value) if value else None

    def complete(self, request: Request, on_delta: Delta | None = None) -> Completion:
        lib = litellm()
        kwargs: dict[str, Any] = dict(model=request.model, messages=request.messages, api_base=request.api_base,
                                      api_key=request.api_key, timeout=request.timeout, num_retries=0,
                                      **request.params)
        deadline = time.monotonic() + request.timeout
        try:
            if on_delta is not None:
                response = self._stream(lib, kwargs, request, on_delta, deadline)
            else:
                response = lib.completion(**kwargs)
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified here
            if time.monotonic() >= deadline:  # our client shut the connection at the deadline
                raise ProviderError(f"no complete reply within {request.timeout:g} s", "timeout") from None
            raise classify(exc) from None
        choices = getattr(response, "choices", None) or []
        text = (choices[0].message.content or "") if choices else ""
        usage = getattr(response, "usage", None)
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        cached = int(getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", 0) or 0)
        cost: float | None = catalog.cost(request.model, prompt, completion, cached)
        if catalog.user_price(request.model) is None:  # the user's `prices` win over litellm's
            try:
                cost = float(lib.completion_cost(completion_response=response, model=request.model))
            except Exception:  # noqa: BLE001 - no price known for this model
                pass
        return Completion(text=text, prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached,
                          cost=cost)

    @staticmethod
    def _stream(lib: Any, kwargs: dict[str, Any], request: Request, on_delta: Delta, deadline: float) -> Any:
        """Stream to on_delta, then rebuild a whole response (with usage) from the chunks."""
        chunks = []
        stream = lib.completion(stream=True, stream_options={"include_usage": True}, **kwargs)
        for chunk in stream:
            if time.monotonic() > deadline:  # an endless stream
                raise ProviderError(f"no complete reply within {request.timeout:g} s", "timeout")
            chunks.append(chunk)
            choices = getattr(chunk, "choices", None) or []
            delta = getattr(choices[0].delta, "content", None) if choices else None
            if delta:
                on_delta(delta)
        if _cut_short(stream, request.model):
            raise ProviderError("the stream ended with no finish_reason and no [DONE]", "incomplete")
        return lib.stream_chunk_builder(chunks, messages=request.messages)


def _cut_short(stream: Any, model: str) -> bool:
    """An OpenAI-protocol stream that ended without the server ever sending a finish_reason. litellm
    ends such a stream with a finish_reason of its own ("stop"), and raises only when some chunk
    came first, so its wrapper's record of what the server sent is what tells."""
    if catalog.provider_of(model) not in catalog.OPENAI_COMPATIBLE:
        return False  # other providers' streams end in their own ways: litellm judges those
    sent = (getattr(stream, "received_finish_reason", "unknown"), getattr(stream, "intermittent_finish_reason", None))
    return sent == (None, None) and not getattr(stream, "received_any_finish_reason", False)


def _message(exc: Exception) -> str:
    message = str(getattr(exc, "message", "") or exc).strip()
    message = message.replace("litellm.", "").splitlines()[0] if message else type(exc).__name__
    return message[:500]


def classify(exc: Exception) -> ProviderError:
    """A litellm (or httpx/openai) exception as a classified ProviderError."""
    from rlmcli.engine.providers.http_client import network_kind

    lib = litellm()
    message = _message(exc)
    network = network_kind(exc)
    if network is None and "stream ended before a finish_reason" in message.lower():
        network = "incomplete"  # litellm's own check of a cut stream (MidStreamFallbackError)
    if network is not None:
        words = {"connection": "connection refused", "reset": f"connection reset: {message}",
                 "incomplete": f"the reply was cut short: {message}"}
        return ProviderError(words.get(network, f"{network} failed: {message}"), network)
    status = getattr(exc, "status_code", None)
    headers: Any = getattr(getattr(exc, "response", None), "headers", None) or getattr(exc, "litellm_response_headers", None)
    retry_after = None
    if headers is not None:
        try:
            retry_after = retry_after_seconds(headers.get("retry-after") or headers.get("Retry-After"))
        except Exception:  # noqa: BLE001
            retry_after = None

    def isinst(*names: str) -> bool:
        kinds = tuple(k for k in (getattr(lib, n, None) for n in names) if isinstance(k, type))
        return bool(kinds) and isinstance(exc, kinds)

    lowered = message.lower()
    if isinst("ContextWindowExceededError"):
        kind = "context_length"
    elif isinst("AuthenticationError", "PermissionDeniedError"):
        kind = "auth"
    elif isinst("NotFoundError"):
        kind = "not_found"
    elif isinst("RateLimitError"):
        kind = "rate_limit"
    elif isinst("Timeout") or isinstance(exc, TimeoutError):
        kind = "timeout"
    elif isinst("APIConnectionError") or isinstance(exc, ConnectionError):
        if any(w in lowered for w in ("name or service not known", "nodename nor servname", "getaddrinfo",
                                      "temporary failure in name resolution")):
            kind = "dns"
        elif "ssl" in lowered or "certificate" in lowered:
            kind = "tls"
        elif "json" in lowered or "expecting value" in lowered:
            kind = "malformed"
        else:
            kind = "connection"
    elif isinstance(exc, json.JSONDecodeError) or ("json" in lowered and isinst("APIError")):
        kind = "malformed"
    elif isinstance(status, int):
        kind = classify_status(status, message)
    elif isinst("BadRequestError"):
        kind = "bad_request"
    elif isinst("InternalServerError", "ServiceUnavailableError", "BadGatewayError"):
        kind = "server"
    else:
        kind = "error"
    if kind == "bad_request" and classify_status(400, message) == "context_length":
        kind = "context_length"
    return ProviderError(message, kind, status_code=status if isinstance(status, int) else None,
                         retry_after=retry_after)
