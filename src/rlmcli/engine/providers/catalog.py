"""What we know about a model without importing litellm (2.4 s): context window, prices,
vision support, and the environment variable its provider reads the key from.

Prices and windows come from the JSON map litellm ships, read directly (litellm_files.py);
litellm is never imported here.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from typing import Any
from urllib.parse import urlsplit

# Providers whose key we know without asking litellm; local servers need none.
KEY_ENV = {
    "openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY",
    "groq": "GROQ_API_KEY", "mistral": "MISTRAL_API_KEY", "openrouter": "OPENROUTER_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY", "together_ai": "TOGETHERAI_API_KEY", "cohere": "COHERE_API_KEY",
    "xai": "XAI_API_KEY", "fireworks_ai": "FIREWORKS_AI_API_KEY", "perplexity": "PERPLEXITYAI_API_KEY",
}
LOCAL_PROVIDERS = {"ollama", "ollama_chat", "lm_studio", "llamafile", "hosted_vllm", "vllm", "llama_cpp",
                   "xinference", "triton"}
# OpenAI-compatible endpoints the fast path speaks to directly.
OPENAI_COMPATIBLE = {"openai": "https://api.openai.com/v1", "openrouter": "https://openrouter.ai/api/v1"}


def provider_of(model: str) -> str:
    """'openai/gpt-4o' -> 'openai'; a bare name ('gpt-4o') is OpenAI's, as litellm assumes."""
    head, slash, _ = model.partition("/")
    if slash:
        return head
    info = model_info(model)
    return str(info.get("litellm_provider") or "openai") if info else "openai"


def bare_name(model: str) -> str:
    head, slash, rest = model.partition("/")
    return rest if slash else model


def is_loopback(api_base: str | None) -> bool:
    if not api_base:
        return False
    host = urlsplit(api_base).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=1)
def _prices() -> dict[str, Any]:
    from rlmcli import litellm_files

    path = litellm_files.prices()
    if path is None:
        return {}
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data


def model_info(model: str) -> dict[str, Any]:
    """litellm's entry for a model ('openai/gpt-4o-mini' or 'gpt-4o-mini'), or {}."""
    prices = _prices()
    for key in (model, bare_name(model)):
        entry = prices.get(key)
        if isinstance(entry, dict) and key != "sample_spec":
            head = model.partition("/")[0] if "/" in model else None
            provider = entry.get("litellm_provider")
            if key == model or head is None or provider == head or str(provider).startswith(head):
                return entry
    return {}


ASSUMED_WINDOW = 128_000  # what a worst-case estimate takes for a model whose window is unknown


def context_window(model: str) -> int | None:
    info = model_info(model)
    window = info.get("max_input_tokens") or info.get("max_tokens")
    return int(window) if isinstance(window, (int, float)) and window > 0 else None


def supports_vision(model: str) -> bool | None:
    info = model_info(model)
    return bool(info["supports_vision"]) if "supports_vision" in info else None


_user_prices: dict[str, dict[str, float]] = {}  # the `prices` setting: model -> USD per million tokens


def set_prices(prices: dict[str, Any] | None) -> None:
    """Prices the user gave (`prices` in config), used before litellm's map: per million tokens."""
    _user_prices.clear()
    _user_prices.update({model: dict(price) for model, price in (prices or {}).items()})


def user_price(model: str) -> dict[str, float] | None:
    return _user_prices.get(model) or _user_prices.get(bare_name(model))


def unit_prices(model: str) -> tuple[float, float] | None:
    """(US dollars per prompt token, per completion token), or None when the price is unknown."""
    mine = user_price(model)
    if mine is not None:
        return float(mine["input"]) / 1e6, float(mine["output"]) / 1e6
    info = model_info(model)
    price_in, price_out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if not isinstance(price_in, (int, float)) or not isinstance(price_out, (int, float)):
        return None
    return float(price_in), float(price_out)


def priced(model: str) -> bool:
    return unit_prices(model) is not None


def cost(model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float | None:
    """US dollars for one call, as litellm computes it for plain chat; None when unpriced."""
    units = unit_prices(model)
    if units is None:
        return None
    price_in, price_out = units
    mine = user_price(model)
    if mine is not None:
        cached_price = mine["cached_input"] / 1e6 if "cached_input" in mine else None
    else:
        cached_price = model_info(model).get("cache_read_input_token_cost")
    cached = min(cached_tokens, prompt_tokens) if isinstance(cached_price, (int, float)) else 0
    total = (prompt_tokens - cached) * float(price_in) + completion_tokens * float(price_out)
    if cached and isinstance(cached_price, (int, float)):
        total += cached * float(cached_price)
    return total


def key_env(model: str, api_base: str | None, api_key_env: str | None) -> str | None:
    """The variable that must hold a key for this model, or None when none is needed or we do
    not know (litellm then checks: see litellm_provider.missing_keys)."""
    if api_key_env:
        return api_key_env
    provider = provider_of(model)
    if provider in LOCAL_PROVIDERS or is_loopback(api_base):
        return None
    if api_base and provider == "openai":
        return None  # a self-hosted OpenAI-compatible server: a key only when --api-key-env says so
    return KEY_ENV.get(provider)
