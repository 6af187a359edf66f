"""The litellm gateway: retries, response cache, context-window checks, usage and cost.

litellm is imported lazily (2.4 s), with LITELLM_LOCAL_MODEL_COST_MAP so nothing is fetched.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rlmcli.engine.budget import Budget, CallRecord
from rlmcli.engine.events import BUDGET_WARNING, MODEL_CALL, Event
from rlmcli.errors import ExitStatus, RlmError


class ProviderError(RlmError):
    """The model provider failed after retries; its own message is kept."""

    status = ExitStatus.PROVIDER


@dataclass
class ModelConfig:
    model: str
    sub_model: str | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    timeout: float = 120.0  # seconds per call
    retries: int = 4
    retry_base: float = 1.0  # first backoff in seconds, doubled each time
    cache: bool = True
    temperature: float | None = None


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
            warnings.filterwarnings("ignore", message=r".*(ReadOnly|model_fields).*")
            import litellm as lib

            lib.suppress_debug_info = True
            lib.telemetry = False
            lib.drop_params = True
            for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx"):
                logging.getLogger(name).setLevel(logging.ERROR)
            _litellm = lib
    return _litellm


def prewarm() -> None:
    """Import litellm (2+ s) on a background thread while the caller ingests and starts sandboxes."""
    threading.Thread(target=litellm, name="litellm-import", daemon=True).start()


class ResponseCache:
    """Responses on disk, keyed by model, messages and parameters."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS responses(key TEXT PRIMARY KEY, value TEXT, created REAL)")
        self.lock = threading.Lock()

    @staticmethod
    def key(model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
        blob = json.dumps([model, messages, params], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.conn.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        with self.lock:
            self.conn.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", (key, json.dumps(value), time.time()))


def _retryable(exc: Exception) -> bool:
    lib = litellm()
    kinds = tuple(k for k in (getattr(lib, n, None) for n in (
        "RateLimitError", "InternalServerError", "ServiceUnavailableError", "Timeout", "APIConnectionError",
        "BadGatewayError")) if isinstance(k, type))
    if isinstance(exc, kinds):
        return True
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and (status == 429 or status >= 500):
        return True
    if isinstance(exc, getattr(lib, "APIError", ())) and "json" in str(exc).lower():
        return True  # a malformed body: often a proxy hiccup
    return isinstance(exc, (json.JSONDecodeError, TimeoutError, ConnectionError))


def _provider_message(exc: Exception) -> str:
    message = str(getattr(exc, "message", "") or exc).strip()
    message = message.replace("litellm.", "").splitlines()[0] if message else type(exc).__name__
    return message[:500]


class Gateway:
    """Every model call at every depth goes through here: one semaphore, one budget, one ledger."""

    def __init__(self, config: ModelConfig, budget: Budget, observer: Callable[[Event], None],
                 cache_path: Path | None = None) -> None:
        self.config = config
        self.budget = budget
        self.observer = observer
        self.semaphore = threading.BoundedSemaphore(max(1, budget.limits.concurrency))
        self.cache = ResponseCache(cache_path) if (config.cache and cache_path) else None

    @property
    def sub_model(self) -> str:
        return self.config.sub_model or self.config.model

    def _api_key(self) -> str | None:
        if self.config.api_key_env:
            key = os.environ.get(self.config.api_key_env)
            if not key:
                raise RlmError(f"--api-key-env {self.config.api_key_env}: that environment variable is not set")
            return key
        if self.config.api_base:
            return "sk-none"  # local OpenAI-compatible servers rarely check it; the client insists on one
        return None

    def context_window(self, model: str) -> int | None:
        try:
            info = litellm().get_model_info(model)
        except Exception:  # noqa: BLE001 - unknown models have no info
            return None
        window = info.get("max_input_tokens") or info.get("max_tokens")
        return int(window) if window else None

    def check_prompt(self, prompt: str, model: str) -> str | None:
        """A clear error for a prompt longer than the model's window, before anything is sent."""
        window = self.context_window(model)
        if window is None:
            return None
        from rlmcli.tokens import count_tokens

        tokens = count_tokens(prompt)
        if tokens > window * 0.95:
            return (f"ERROR: this prompt is {tokens:,} tokens but {model} accepts about {window:,}; "
                    "split the text into smaller pieces (for example with llm_batch over chunks).")
        return None

    def complete(self, messages: list[dict[str, Any]], model: str, depth: int,
                 on_delta: Callable[[str, bool], None] | None = None) -> str:
        """One completion. With `on_delta`, the reply is streamed: on_delta(text, reset) per chunk."""
        self.budget.check()
        params: dict[str, Any] = {}
        if self.config.temperature is not None:
            params["temperature"] = self.config.temperature
        key = ResponseCache.key(model, messages, params) if self.cache else ""
        if self.cache:
            hit = self.cache.get(key)
            if hit is not None:
                self._record(model, depth, hit.get("usage", {}), 0.0, 0.0, True)
                return str(hit.get("content", ""))
        started = time.monotonic()
        with self.semaphore:
            self.budget.check(reserve=True)  # after the wait: it may have used up the time budget
            try:
                response = self._call_with_retries(messages, model, params, on_delta)
            except BaseException:
                self.budget.release()
                raise
        latency = time.monotonic() - started
        content = response.choices[0].message.content or ""
        usage = getattr(response, "usage", None)
        usage_d = {
            "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
            "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
            "cached_tokens": int(getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", 0) or 0),
        }
        cost: float | None
        try:
            cost = float(litellm().completion_cost(completion_response=response, model=model))
        except Exception:  # noqa: BLE001 - no price known for this model
            cost = None
        self._record(model, depth, usage_d, latency, cost, False, reserved=True)
        if self.cache and content:
            self.cache.put(key, {"content": content, "usage": usage_d})
        return content

    def _call_with_retries(self, messages: list[dict[str, Any]], model: str, params: dict[str, Any],
                           on_delta: Callable[[str, bool], None] | None = None) -> Any:
        lib = litellm()
        attempts = self.config.retries + 1
        last: Exception | None = None
        for attempt in range(attempts):
            timeout = self.config.timeout
            remaining = self.budget.remaining_time()
            if remaining is not None:
                timeout = max(1.0, min(timeout, remaining))
            try:
                kwargs = dict(model=model, messages=messages, api_base=self.config.api_base, api_key=self._api_key(),
                              timeout=timeout, num_retries=0, **params)
                if on_delta is not None:
                    response = self._stream(lib, kwargs, messages, on_delta, reset=attempt > 0)
                else:
                    response = lib.completion(**kwargs)
                if not response.choices[0].message.content and attempt < attempts - 1:
                    last = ProviderError("the model returned an empty reply")
                    time.sleep(self._backoff(attempt))
                    continue
                return response
            except RlmError:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below
                last = exc
                if not _retryable(exc) or attempt == attempts - 1:
                    break
                time.sleep(self._backoff(attempt))
        if isinstance(last, ProviderError):
            raise last
        assert last is not None
        raise ProviderError(f"{model}: {_provider_message(last)}") from None

    @staticmethod
    def _stream(lib: Any, kwargs: dict[str, Any], messages: list[dict[str, Any]],
                on_delta: Callable[[str, bool], None], reset: bool) -> Any:
        """Stream the reply to on_delta, then rebuild a whole response (with usage) from the chunks."""
        chunks = []
        if reset:
            on_delta("", True)  # a retry starts the text again
        for chunk in lib.completion(stream=True, stream_options={"include_usage": True}, **kwargs):
            chunks.append(chunk)
            choices = getattr(chunk, "choices", None) or []
            delta = getattr(choices[0].delta, "content", None) if choices else None
            if delta:
                on_delta(delta, False)
        return lib.stream_chunk_builder(chunks, messages=messages)

    def _backoff(self, attempt: int) -> float:
        delay = self.config.retry_base * (2 ** attempt) * (0.8 + 0.4 * random.random())
        remaining = self.budget.remaining_time()
        return min(delay, 30.0, remaining if remaining is not None else 30.0)

    def _record(self, model: str, depth: int, usage: dict[str, Any], latency: float, cost: float | None,
                cache_hit: bool, reserved: bool = False) -> None:
        record = CallRecord(model=model, depth=depth, prompt_tokens=int(usage.get("prompt_tokens", 0)),
                            completion_tokens=int(usage.get("completion_tokens", 0)),
                            cached_tokens=int(usage.get("cached_tokens", 0)), latency=latency,
                            cost=0.0 if cache_hit else cost, cache_hit=cache_hit)
        self.budget.add(record, reserved)
        self.observer(Event(MODEL_CALL, depth, data={
            "model": model, "prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens,
            "cached_tokens": record.cached_tokens, "latency": round(latency, 3), "cost": record.cost,
            "cache_hit": cache_hit}))
        for limit, used, top in self.budget.new_warnings():
            self.observer(Event(BUDGET_WARNING, depth, data={"limit": limit, "used": round(used, 6), "max": top}))
