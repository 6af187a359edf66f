"""Every model call at every depth goes through one Gateway: budget, concurrency, cache,
retries, usage and events. Providers (engine/providers) make single attempts; the policy is here,
so the fast path and litellm retry, account and fail the same way.
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from rlmcli.engine import events as ev
from rlmcli.engine.budget import Budget, BudgetExceeded, CallRecord, Reservation
from rlmcli.engine.cache import ResponseCache
from rlmcli.engine.providers.base import ERROR_KINDS, Completion, Provider, ProviderError, Request
from rlmcli.errors import redact
from rlmcli.records import Limit

CONNECTION_GIVE_UP = 2.0  # seconds of refused connections before the run fails
MAX_RETRY_DELAY = 60.0
TRACE_TEXT = 20_000  # characters of each prompt and reply kept in the trace


@dataclass
class ModelConfig:
    model: str
    sub_model: str | None = None
    sub_models: list[str] = field(default_factory=list)  # more models model code may name
    vision_model: str | None = None  # for look(); None: the sub-model when it reads images
    api_base: str | None = None
    api_key_env: str | None = None
    request_timeout: float = 120.0
    retries: int = 4
    retry_base: float = 1.0
    cache: bool = True
    refresh: bool = False  # skip cached replies, store fresh ones
    temperature: float | None = None
    transport: str = "auto"

    @property
    def allowed_models(self) -> list[str]:
        vision = [self.vision_model] if self.vision_model else []
        return list(dict.fromkeys([self.model, self.sub_model or self.model, *self.sub_models, *vision]))


@dataclass
class Origin:
    """Who is calling: stamped onto the events a call produces."""

    run_id: str = ""
    parent_id: int | None = None
    depth: int = 0


def api_key(config: ModelConfig, model: str) -> str | None:
    """The key to send, or None for the provider's own default lookup. Missing keys were caught by
    `preflight`, before any request."""
    from rlmcli.engine.providers import catalog

    if config.api_key_env:
        return os.environ.get(config.api_key_env) or None
    env = catalog.key_env(model, config.api_base, None)
    if env:
        return os.environ.get(env) or None
    if config.api_base:
        return "sk-none"  # local OpenAI-compatible servers rarely check it; clients insist on one
    return None


def preflight(config: ModelConfig) -> None:
    """Before any request: every model has its key, or we say which variable to set (exit 4)."""
    from rlmcli.engine.providers import catalog, uses_fast_path

    for model in config.allowed_models:
        if config.api_key_env:
            if not os.environ.get(config.api_key_env):
                raise ProviderError(f"--api-key-env {config.api_key_env}: that environment variable is not set",
                                    "missing_key")
            continue
        needed = catalog.key_env(model, config.api_base, None)
        if needed is None and not uses_fast_path(model, config.transport) and not catalog.is_loopback(config.api_base) \
                and catalog.provider_of(model) not in catalog.LOCAL_PROVIDERS:
            from rlmcli.engine.providers.litellm_provider import missing_keys

            missing = missing_keys(model)
            needed = missing[0] if missing else None
            if needed is None:
                continue
        if needed and not os.environ.get(needed):
            raise ProviderError(f"{model} needs an API key: set {needed} (export {needed}=...), or name another "
                                "variable with --api-key-env", "missing_key")


class Gateway:
    """One per run tree (child runs share it): one budget, one ledger, one request bound."""

    def __init__(self, config: ModelConfig, budget: Budget, observer: ev.Observer,
                 provider: Provider | None = None, cache: ResponseCache | None = None,
                 slots: AbstractContextManager[Any] | None = None) -> None:
        self.config = config
        self.budget = budget
        self.observer = observer
        self.provider = provider  # None: chosen per model (fast path or litellm)
        self.cache = cache if config.cache else None
        self.slots = slots or threading.BoundedSemaphore(max(1, budget.limits.concurrency))
        self._call_ids = iter(range(1, 1 << 62))
        self._id_lock = threading.Lock()
        if provider is None:
            from rlmcli.engine.providers import prewarm

            prewarm(config.allowed_models, config.transport)  # overlaps the sandbox's start

    @property
    def sub_model(self) -> str:
        return self.config.sub_model or self.config.model

    def new_call_id(self) -> int:
        with self._id_lock:
            return next(self._call_ids)

    def provider_for(self, model: str) -> Provider:
        if self.provider is not None:
            return self.provider
        from rlmcli.engine.providers import provider_for

        return provider_for(model, self.config.transport)

    def allowed(self, requested: object) -> str:
        """The model model code asked for, if the user allowed it (root, sub, sub_models). The
        refusal names it only in part: model code chooses its length."""
        if requested is None or requested == "":
            return self.sub_model
        if isinstance(requested, str) and requested in self.config.allowed_models:
            return requested
        shown = repr(requested)
        shown = shown if len(shown) <= 80 else f"{shown[:60]}… ({len(shown):,} characters)"
        raise PermissionError(f"model {shown} is not allowed; allowed: {', '.join(self.config.allowed_models)} "
                              "(the user can add more with sub_models in the config file)")

    def vision_model(self) -> str:
        """The model look() uses: --vision-model, else the sub-model when it is known to read images."""
        if self.config.vision_model:
            return self.config.vision_model
        from rlmcli.engine.providers import catalog

        if catalog.supports_vision(self.sub_model):
            return self.sub_model
        raise PermissionError(f"look() needs a model that reads images: {self.sub_model} is not known to; pass "
                              "--vision-model (for example openai/gpt-4o-mini)")

    def context_window(self, model: str) -> int | None:
        return self.provider_for(model).context_window(model)

    def check_prompt(self, prompt: str, model: str) -> str | None:
        """Why a prompt cannot be sent (longer than the model's window), in words for the model; None if it can."""
        window = self.context_window(model)
        if window is None:
            return None
        if len(prompt) < window:  # a token is at least one character: no need to count
            return None
        from rlmcli.tokens import count_tokens

        tokens = count_tokens(prompt)
        if tokens > window * 0.95:
            return (f"this prompt is {tokens:,} tokens but {model} accepts about {window:,}; "
                    "split the text into smaller pieces (for example with llm_batch over chunks).")
        return None

    # ---- one completion -----------------------------------------------------------------------
    def complete(self, messages: list[dict[str, Any]], model: str, origin: Origin,
                 on_delta: Callable[[str, bool], None] | None = None, call_id: int | None = None,
                 reply_cap: int | None = None) -> str:
        """One completion's text. With `on_delta`, the reply streams: on_delta(text, reset).
        `reply_cap` lowers max_output_tokens for this call (used while a token or cost limit is set)."""
        self.budget.check()
        params: dict[str, Any] = {}
        if self.config.temperature is not None:
            params["temperature"] = self.config.temperature
        key = ResponseCache.key(model, self.config.api_base, messages, params) if self.cache else ""
        if self.cache is not None and not self.config.refresh:
            hit = self.cache.get(key)
            if hit is not None and isinstance(hit.get("content"), str):
                raw = hit.get("usage")
                usage: dict[str, Any] = raw if isinstance(raw, dict) else {}
                done = Completion(hit["content"], int(usage.get("prompt_tokens", 0)),
                                  int(usage.get("completion_tokens", 0)), int(usage.get("cached_tokens", 0)), 0.0)
                self._record(model, origin, call_id, done, 0.0, True, 0, messages)
                return done.text
        started = time.monotonic()
        with self.slots:
            reservation = self._reserve(messages, model, reply_cap)  # after the wait: it may have used up the time budget
            send = dict(params)
            if reservation.cap is not None:
                send[self._cap_param(model)] = reservation.cap
            try:
                completion, retries = self._with_retries(messages, model, send, origin, call_id, on_delta)
            except BaseException:
                self.budget.release(reservation)
                raise
        completion.text = _valid_text(completion.text)
        self._record(model, origin, call_id, completion, time.monotonic() - started, False, retries, messages,
                     reservation=reservation)
        if self.cache is not None and completion.text:
            self.cache.put(key, {"content": completion.text, "usage": {
                "prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
                "cached_tokens": completion.cached_tokens}})
        return completion.text

    def _reserve(self, messages: list[dict[str, Any]], model: str, reply_cap: int | None = None) -> Reservation:
        """Book the request's worst case with the budget; counting the prompt only when a token or
        cost limit needs it."""
        from rlmcli.engine.providers import catalog

        limits, shared = self.budget.limits, self.budget.shared
        prices = catalog.unit_prices(model)
        by_cost = prices is not None and (limits.max_cost is not None
                                          or (shared is not None and shared.max_cost is not None))
        if limits.max_tokens is None and not by_cost:
            return self.budget.reserve()
        return self.budget.reserve(prompt_tokens(messages), prices, reply_cap)

    def _cap_param(self, model: str) -> str:
        """OpenAI's own API wants max_completion_tokens (its reasoning models refuse max_tokens);
        other OpenAI-compatible servers and litellm take max_tokens."""
        from rlmcli.engine.providers import catalog, uses_fast_path

        if self.provider is None and not self.config.api_base and catalog.provider_of(model) == "openai" \
                and uses_fast_path(model, self.config.transport):
            return "max_completion_tokens"
        return "max_tokens"

    def _with_retries(self, messages: list[dict[str, Any]], model: str, params: dict[str, Any], origin: Origin,
                      call_id: int | None, on_delta: Callable[[str, bool], None] | None) -> tuple[Completion, int]:
        provider = self.provider_for(model)
        refused_since: float | None = None
        refusals = 0  # in a row
        attempt = 0
        while True:
            remaining = self.budget.remaining_time()
            timeout = self.config.request_timeout if remaining is None else min(self.config.request_timeout, remaining)
            if timeout <= 0:
                self.budget.check()
            request = Request(model, messages, timeout, self.config.api_base, api_key(self.config, model), params)
            if on_delta is not None and attempt > 0:
                on_delta("", True)  # a retry starts the streamed text over
            delta = (lambda text: on_delta(text, False)) if on_delta is not None else None
            try:
                return self._attempt(provider, request, delta), attempt
            except ProviderError as exc:
                # Each attempt is judged on its own failure: only refusals in a row share the short
                # window (nothing listens); any other failure, a reset included, gets the backoff.
                now = time.monotonic()
                if exc.kind == "connection":
                    refused_since = refused_since or now
                    delay = 0.2 * 2 ** min(refusals, 4)
                    refusals += 1
                    give_up = now - refused_since + delay > CONNECTION_GIVE_UP
                else:
                    refused_since, refusals = None, 0
                    delay = exc.retry_after if exc.retry_after is not None else self._backoff(attempt)
                    give_up = False
                delay = min(delay, MAX_RETRY_DELAY)
                give_up = give_up or not exc.retryable or attempt >= self.config.retries
                left = self.budget.remaining_time()
                if not give_up and left is not None and delay >= left:
                    self.budget.hit(Limit.TIMEOUT)
                    raise BudgetExceeded(Limit.TIMEOUT, f"{self.budget.limits.timeout:g} s; the last request failed: "
                                         f"{exc.short}") from None
                if give_up:
                    failure = self._failure(exc, model, attempt)
                    self.observer(ev.ModelError(origin.run_id, origin.parent_id, origin.depth, call_id=call_id,
                                                model=model, error_kind=exc.kind, message=str(failure)))
                    raise failure from None
                attempt += 1
                self.observer(ev.ModelRetry(origin.run_id, origin.parent_id, origin.depth, call_id=call_id,
                                            model=model, attempt=attempt, attempts=self.config.retries,
                                            delay=round(delay, 3), reason=exc.short))
                time.sleep(delay)

    @staticmethod
    def _attempt(provider: Provider, request: Request, on_delta: Callable[[str], None] | None) -> Completion:
        """One provider.complete, in this thread: the providers bound it by the request's timeout
        with their HTTP client's own deadlines (engine/providers/http_client.py)."""
        try:
            return provider.complete(request, on_delta)
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - a provider's own bug: one classified line, not a traceback
            raise ProviderError(f"{type(exc).__name__}: {exc}", "error") from None

    def _failure(self, exc: ProviderError, model: str, retries: int) -> ProviderError:
        """One line naming provider, model, endpoint and status, and what to do."""
        from rlmcli.engine.providers import catalog

        endpoint = self.config.api_base or catalog.OPENAI_COMPATIBLE.get(catalog.provider_of(model), "")
        where = f"{model} at {endpoint}" if endpoint else model
        status = f"HTTP {exc.status_code}" if exc.status_code else exc.kind.replace("_", " ")
        tried = f" (after {retries} retries)" if retries else ""
        hint = ERROR_KINDS.get(exc.kind, (False, ""))[1]
        message = str(exc)
        text = f"{where}: {status}{tried}: {message}"
        if hint and hint.lower() not in message.lower():
            text += f" — {hint}"
        return ProviderError(redact(text), exc.kind, exc.status_code, exc.retry_after, exc.retryable)

    def _backoff(self, attempt: int) -> float:
        return float(self.config.retry_base * (2 ** attempt) * (0.8 + 0.4 * random.random()))

    def _record(self, model: str, origin: Origin, call_id: int | None, done: Completion, latency: float,
                cache_hit: bool, retries: int, messages: list[dict[str, Any]],
                reservation: Reservation | None = None) -> None:
        from rlmcli.engine.providers import catalog

        cost = (0.0 if catalog.priced(model) else None) if cache_hit else done.cost  # unknown stays unknown
        record = CallRecord(model=model, depth=origin.depth, prompt_tokens=done.prompt_tokens,
                            completion_tokens=done.completion_tokens, cached_tokens=done.cached_tokens,
                            latency=latency, cost=cost, cache_hit=cache_hit, retries=retries)
        self.budget.add(record, reservation)
        last = messages[-1].get("content", "") if messages else ""
        prompt = last if isinstance(last, str) else _describe_parts(last)
        self.observer(ev.ModelCall(origin.run_id, origin.parent_id, origin.depth, call_id=call_id, model=model,
                                   prompt_tokens=record.prompt_tokens, completion_tokens=record.completion_tokens,
                                   cached_tokens=record.cached_tokens, latency=round(latency, 3), cost=record.cost,
                                   cache_hit=cache_hit, retries=retries, prompt=_bounded(prompt),
                                   reply=_bounded(done.text)))
        for limit, used, top in self.budget.new_warnings():
            self.observer(ev.BudgetWarning(origin.run_id, origin.parent_id, origin.depth, limit=limit,
                                           used=round(used, 6), max=top))


IMAGE_TOKENS = 2_000  # a page image's worst case in a prompt (a 1024-px image is ~800-1,100 tokens)
MESSAGE_TOKENS = 4  # the chat format's tokens around each message


@functools.lru_cache(maxsize=512)
def _text_tokens(text: str) -> int:
    from rlmcli.tokens import count_tokens

    return count_tokens(text)


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """An upper estimate of a conversation's prompt tokens (tiktoken's count, 5 % over, plus the
    chat format's overhead); messages already counted come from a cache."""
    total = 3
    for message in messages:
        content = message.get("content", "")
        if isinstance(content, str):
            total += _text_tokens(content) + MESSAGE_TOKENS
        else:
            for part in content if isinstance(content, list) else []:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    total += IMAGE_TOKENS
                elif isinstance(part, dict):
                    total += _text_tokens(str(part.get("text", "")))
            total += MESSAGE_TOKENS
    return int(total * 1.05) + 16


def _describe_parts(parts: Any) -> str:
    """A multi-part message for the trace: its text, and images as their size (not their bytes)."""
    out = []
    for part in parts if isinstance(parts, list) else []:
        if isinstance(part, dict) and part.get("type") == "text":
            out.append(str(part.get("text", "")))
        elif isinstance(part, dict) and part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            out.append(f"[image: {len(url) * 3 // 4 // 1024:,} KB]")
    return "\n".join(out)


def _valid_text(text: str) -> str:
    """A reply as valid Unicode: a provider's JSON may carry lone surrogates (`\\ud800`), which
    no terminal, trace or pipe can write; they become U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _bounded(text: str, limit: int = TRACE_TEXT) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n… [{len(text) - limit:,} characters not kept in the trace] …\n{text[-half:]}"
