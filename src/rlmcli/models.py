"""`rlm models`: what the configured models are, what they need, and whether they answer."""

from __future__ import annotations

import os
import time
from typing import Any

from rlmcli.config import Settings
from rlmcli.errors import redact


def _key_variable(model: str, settings: Settings) -> str | None:
    from rlmcli.engine.providers import catalog, uses_fast_path

    env = catalog.key_env(model, settings.api_base, settings.api_key_env)
    if env is not None or uses_fast_path(model, settings.transport) or catalog.is_loopback(settings.api_base) \
            or catalog.provider_of(model) in catalog.LOCAL_PROVIDERS:
        return env
    from rlmcli.engine.providers.litellm_provider import missing_keys

    missing = missing_keys(model)
    return missing[0] if missing else None


def describe(settings: Settings) -> list[dict[str, Any]]:
    """One row per configured model: role, provider, transport, key, window, prices."""
    from rlmcli.engine.providers import catalog, uses_fast_path

    roles: list[tuple[str, str]] = []
    if settings.model:
        roles.append(("root", settings.model))
        roles.append(("sub", settings.sub_model or settings.model))
    roles += [("allowed", m) for m in settings.sub_models or []]
    rows = []
    for role, model in roles:
        info = catalog.model_info(model)
        key = _key_variable(model, settings)
        price_in, price_out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
        rows.append({
            "role": role, "model": model, "provider": catalog.provider_of(model),
            "transport": "openai-compatible (httpx)" if uses_fast_path(model, settings.transport) else "litellm",
            "endpoint": redact(settings.api_base or catalog.OPENAI_COMPATIBLE.get(catalog.provider_of(model)) or "") or None,
            "key_variable": key, "key_set": bool(os.environ.get(key)) if key else None,
            "context_window": catalog.context_window(model),
            "usd_per_million_input": round(price_in * 1e6, 4) if isinstance(price_in, (int, float)) else None,
            "usd_per_million_output": round(price_out * 1e6, 4) if isinstance(price_out, (int, float)) else None,
            "vision": catalog.supports_vision(model),
        })
    return rows


def check(settings: Settings, model: str, timeout: float = 20.0) -> dict[str, Any]:
    """One tiny request: latency, or the classified error."""
    from rlmcli.ask import model_config
    from rlmcli.engine.budget import Budget, Limits
    from rlmcli.engine.gateway import Gateway, Origin, preflight
    from rlmcli.engine.providers.base import ProviderError

    config = model_config(settings)
    config.model, config.sub_model, config.cache, config.retries = model, None, False, 0
    config.request_timeout = min(config.request_timeout, timeout)
    started = time.monotonic()
    try:
        preflight(config)
        reply = Gateway(config, Budget(Limits(timeout=timeout + 5)), lambda e: None).complete(
            [{"role": "user", "content": "Reply with the word OK."}], model, Origin())
    except ProviderError as exc:
        return {"model": model, "ok": False, "error_kind": exc.kind, "error": str(exc),
                "seconds": round(time.monotonic() - started, 3)}
    return {"model": model, "ok": True, "seconds": round(time.monotonic() - started, 3), "reply": reply[:80]}
