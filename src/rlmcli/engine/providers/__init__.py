"""Model providers behind one small interface (base.Provider). `provider_for` picks one:

* the OpenAI-compatible fast path (httpx) for `openai/...` and `openrouter/...`
  models and any `--api-base` server named with `openai/`;
* litellm for every other provider;
* tests pass a `ScriptedProvider` directly.
"""

from __future__ import annotations

import threading
from typing import Any

from rlmcli.engine.providers.base import Completion, Provider, ProviderError, Request

__all__ = ["Completion", "Provider", "ProviderError", "Request", "prewarm", "provider_for", "uses_fast_path"]

_instances: dict[str, Any] = {}
_lock = threading.Lock()


def uses_fast_path(model: str, transport: str = "auto") -> bool:
    from rlmcli.engine.providers.catalog import OPENAI_COMPATIBLE, provider_of

    if transport != "auto":
        return transport == "openai"
    return "/" in model and provider_of(model) in OPENAI_COMPATIBLE


def provider_for(model: str, transport: str = "auto") -> Provider:
    """The shared provider instance for a model (connection pools are per instance)."""
    name = "openai" if uses_fast_path(model, transport) else "litellm"
    with _lock:
        if name not in _instances:
            if name == "openai":
                from rlmcli.engine.providers.openai_compat import OpenAICompatProvider

                _instances[name] = OpenAICompatProvider()
            else:
                from rlmcli.engine.providers.litellm_provider import LiteLLMProvider

                _instances[name] = LiteLLMProvider()
        provider: Provider = _instances[name]
    return provider


def prewarm(models: list[str], transport: str = "auto") -> None:
    """Import httpx and open the fast path's client (0.15 s) on a background thread, while the
    caller starts its sandbox. litellm's much longer import has its own (litellm_provider.prewarm)."""
    if "openai" in _instances or not any(uses_fast_path(m, transport) for m in models):
        return

    def warm() -> None:
        from rlmcli.engine.providers.http_client import client

        provider_for("", "openai")
        client()

    threading.Thread(target=warm, name="rlm-http-import", daemon=True).start()
